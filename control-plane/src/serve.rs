//! Serving the control plane: plain HTTP behind a TLS-terminating Ingress, or HTTPS itself
//! given a certificate and key (PEM), and the self-signed certificates of `roundtable up --lan`.
//!
//! Browsers give camera and microphone only to secure pages: `https://`, or `http://` on
//! loopback. Anything a second machine opens must therefore be HTTPS.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;

/// A certificate chain and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What went wrong setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    #[error("{0} holds no PEM private key")]
    NoKey(PathBuf),
    #[error("the certificate and key do not make a TLS server: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A rustls server for `files` (HTTP/1.1 and HTTP/2; WebSockets upgrade over HTTP/1.1).
pub fn tls_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(files.cert.clone()));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::NoKey(files.key.clone()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `app` on `listener` until `shutdown` resolves: HTTPS with `tls`, else plain HTTP.
/// Handlers see the peer address (`ConnectInfo<SocketAddr>`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let Some(tls) = tls else {
        return axum::serve(listener, service)
            .with_graceful_shutdown(shutdown)
            .await;
    };
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    axum_server::from_tcp_rustls(
        listener.into_std()?,
        axum_server::tls_rustls::RustlsConfig::from_config(tls),
    )
    .handle(handle)
    .serve(service)
    .await
}

/// The local certificate authority of `roundtable up --lan` and a server certificate it signed
/// for this machine's names and addresses. The authority is made once and kept in `dir`, so a
/// person trusts it once; the server certificate is made again on each start (addresses change).
#[derive(Debug, Clone)]
pub struct LocalCertificates {
    /// The authority to trust (PEM): import it into the browser or the system store.
    pub ca: PathBuf,
    pub server: TlsFiles,
}

/// Makes (or reuses) the local authority in `dir` and signs a server certificate for `ips`
/// and `names`.
pub fn local_certificates(
    dir: &Path,
    ips: &[IpAddr],
    names: &[String],
) -> Result<LocalCertificates, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
        KeyUsagePurpose, SanType,
    };
    let write = |path: PathBuf, text: &str| {
        std::fs::write(&path, text).map_err(|source| TlsError::Write {
            path: path.clone(),
            source,
        })?;
        Ok::<_, TlsError>(path)
    };
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let ca_cert = dir.join("local-ca.pem");
    let ca_key = dir.join("local-ca.key");
    let mut ca_params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Roundtable local CA");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_pair = match std::fs::read_to_string(&ca_key) {
        Ok(pem) if ca_cert.exists() => KeyPair::from_pem(&pem)?,
        _ => {
            let pair = KeyPair::generate()?;
            let cert = ca_params.clone().self_signed(&pair)?;
            write(ca_key.clone(), &pair.serialize_pem())?;
            write(ca_cert.clone(), &cert.pem())?;
            pair
        }
    };
    let issuer = Issuer::new(ca_params, ca_pair);

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Roundtable local mode");
    params.distinguished_name = dn;
    params.subject_alt_names = ips
        .iter()
        .map(|ip| SanType::IpAddress(*ip))
        .chain(
            names
                .iter()
                .filter_map(|n| n.clone().try_into().ok().map(SanType::DnsName)),
        )
        .collect();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let pair = KeyPair::generate()?;
    let cert = params.signed_by(&pair, &issuer)?;
    let server = TlsFiles {
        cert: write(dir.join("server.pem"), &cert.pem())?,
        key: write(dir.join("server.key"), &pair.serialize_pem())?,
    };
    Ok(LocalCertificates {
        ca: ca_cert,
        server,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_certificates_make_a_tls_server_and_keep_the_authority() {
        let dir = tempfile::tempdir().unwrap();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let first = local_certificates(dir.path(), &[ip], &["laptop.local".into()]).unwrap();
        tls_config(&first.server).unwrap();
        let ca = std::fs::read(&first.ca).unwrap();
        let again = local_certificates(dir.path(), &[ip], &[]).unwrap();
        assert_eq!(
            std::fs::read(&again.ca).unwrap(),
            ca,
            "the authority is trusted once"
        );
    }
}
