//! Keys and certificates of a test control plane, made with the `openssl` command: a CA, the
//! API server's serving certificate (for 127.0.0.1 and localhost) signed by it, and the
//! service-account token signing key. ECDSA P-256 throughout, because it is fast to generate.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, IoContext, Result};

#[derive(Debug, Clone)]
pub(crate) struct Pki {
    pub(crate) ca_cert: PathBuf,
    pub(crate) ca_key: PathBuf,
    /// The CA certificate in DER, as `kube::Config::root_cert` wants it.
    pub(crate) ca_der: Vec<u8>,
    pub(crate) serving_cert: PathBuf,
    pub(crate) serving_key: PathBuf,
    pub(crate) service_account_key: PathBuf,
}

const SERVING_EXTENSIONS: &str = "\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, IP:10.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local
";

impl Pki {
    pub(crate) fn generate(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        let p = |name: &str| dir.join(name);
        let pki = Pki {
            ca_cert: p("ca.crt"),
            ca_key: p("ca.key"),
            ca_der: Vec::new(),
            serving_cert: p("apiserver.crt"),
            serving_key: p("apiserver.key"),
            service_account_key: p("service-account.key"),
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];

        let mut ca = vec![
            "req",
            "-x509",
            "-days",
            "7",
            "-subj",
            "/CN=roundtable-e2e-ca",
        ];
        ca.extend(ec);
        openssl(&ca, &[("-keyout", &pki.ca_key), ("-out", &pki.ca_cert)])?;

        let csr = p("apiserver.csr");
        let mut req = vec!["req", "-subj", "/CN=kube-apiserver"];
        req.extend(ec);
        openssl(&req, &[("-keyout", &pki.serving_key), ("-out", &csr)])?;

        let ext = p("apiserver.ext");
        std::fs::write(&ext, SERVING_EXTENSIONS)
            .context(|| format!("writing {}", ext.display()))?;
        openssl(
            &["x509", "-req", "-days", "7", "-set_serial", "2"],
            &[
                ("-in", &csr),
                ("-CA", &pki.ca_cert),
                ("-CAkey", &pki.ca_key),
                ("-extfile", &ext),
                ("-out", &pki.serving_cert),
            ],
        )?;

        openssl(
            &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
            &[("-out", &pki.service_account_key)],
        )?;

        let der = p("ca.der");
        openssl(
            &["x509", "-outform", "DER"],
            &[("-in", &pki.ca_cert), ("-out", &der)],
        )?;
        let ca_der = std::fs::read(&der).context(|| format!("reading {}", der.display()))?;
        Ok(Pki { ca_der, ..pki })
    }
}

impl Pki {
    /// A client certificate for `/CN=<common_name>/O=<organization>` signed by the CA, as
    /// `(cert, key)` in `dir` (for the kubelet: `system:node:<name>` in `system:nodes`).
    pub(crate) fn client_cert(
        &self,
        dir: &Path,
        file_stem: &str,
        common_name: &str,
        organization: &str,
    ) -> Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        let (cert, key, csr, ext) = (
            dir.join(format!("{file_stem}.crt")),
            dir.join(format!("{file_stem}.key")),
            dir.join(format!("{file_stem}.csr")),
            dir.join(format!("{file_stem}.ext")),
        );
        let subject = format!("/CN={common_name}/O={organization}");
        openssl(
            &[
                "req",
                "-subj",
                &subject,
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
            ],
            &[("-keyout", &key), ("-out", &csr)],
        )?;
        std::fs::write(
            &ext,
            "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\n",
        )
        .context(|| format!("writing {}", ext.display()))?;
        openssl(
            &["x509", "-req", "-days", "7", "-set_serial", "3"],
            &[
                ("-in", &csr),
                ("-CA", &self.ca_cert),
                ("-CAkey", &self.ca_key),
                ("-extfile", &ext),
                ("-out", &cert),
            ],
        )?;
        Ok((cert, key))
    }
}

impl Pki {
    /// A serving certificate for `dns_name` signed by the CA, as `(cert, key)` in `dir`.
    pub(crate) fn serving_cert(&self, dir: &Path, dns_name: &str) -> Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        let (cert, key, csr, ext) = (
            dir.join(format!("{dns_name}.crt")),
            dir.join(format!("{dns_name}.key")),
            dir.join(format!("{dns_name}.csr")),
            dir.join(format!("{dns_name}.ext")),
        );
        let subject = format!("/CN={dns_name}");
        let mut req = vec!["req", "-subj", &subject];
        req.extend([
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ]);
        openssl(&req, &[("-keyout", &key), ("-out", &csr)])?;
        std::fs::write(
            &ext,
            format!(
                "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\nsubjectAltName = DNS:{dns_name}\n"
            ),
        )
        .context(|| format!("writing {}", ext.display()))?;
        openssl(
            &["x509", "-req", "-days", "7", "-set_serial", "4"],
            &[
                ("-in", &csr),
                ("-CA", &self.ca_cert),
                ("-CAkey", &self.ca_key),
                ("-extfile", &ext),
                ("-out", &cert),
            ],
        )?;
        Ok((cert, key))
    }
}

fn openssl(args: &[&str], files: &[(&str, &Path)]) -> Result<()> {
    let mut cmd = Command::new("openssl");
    cmd.args(args);
    for (flag, path) in files {
        cmd.arg(flag).arg(path);
    }
    let command = format!("openssl {}", args.join(" "));
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::MissingBinary {
            what: "openssl",
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command,
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
