//! Starting each control-plane component on free loopback ports, retrying when a port was
//! taken between choosing and binding it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::Client;

use crate::error::{Error, IoContext, Result};
use crate::process::{NotStarted, Supervised, free_loopback_port};

const PORT_ATTEMPTS: usize = 5;
/// Generous: the first start after a build pages in a 100 MB binary on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(120);
pub(crate) const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Spawns with fresh ports until the component starts or fails for another reason.
async fn with_free_ports<T, F, Fut>(what: &'static str, ports: usize, mut attempt: F) -> Result<T>
where
    F: FnMut(usize, Vec<u16>) -> Fut,
    Fut: Future<Output = Result<Result<T, NotStarted>>>,
{
    for n in 1..=PORT_ATTEMPTS {
        let ports = (0..ports)
            .map(|_| free_loopback_port())
            .collect::<Result<Vec<_>>>()?;
        match attempt(n, ports).await? {
            Ok(t) => return Ok(t),
            Err(NotStarted::PortInUse) => {
                crate::cluster::say(format_args!("roundtable-e2e: {what}: port taken, retrying"))
            }
            Err(NotStarted::Failed(e)) => return Err(e),
        }
    }
    Err(Error::Command {
        command: what.into(),
        detail: format!("ports were taken {PORT_ATTEMPTS} times in a row"),
    })
}

#[derive(Debug)]
pub(crate) struct Etcd {
    pub(crate) process: Supervised,
    pub(crate) url: String,
}

pub(crate) async fn start_etcd(bin: &Path, dir: &Path) -> Result<Etcd> {
    with_free_ports("etcd", 2, |n, ports| async move {
        let (client, peer) = (ports[0], ports[1]);
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let data = dir.join(format!("etcd-{n}"));
        let args = [
            "--name=e2e".to_string(),
            format!("--data-dir={}", data.display()),
            format!("--listen-client-urls={url}"),
            format!("--advertise-client-urls={url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=e2e={peer_url}"),
            "--initial-cluster-state=new".into(),
            // Test data is thrown away with the process; skip fsync.
            "--unsafe-no-fsync".into(),
            // A lone member still waits one election timeout before leading; keep it short.
            "--heartbeat-interval=10".into(),
            "--election-timeout=100".into(),
        ];
        let log = dir.join(format!("etcd-{n}.log"));
        let process = Supervised::spawn("etcd", bin, &args, &log, None)?;
        let health = format!("127.0.0.1:{client}");
        let ready = process
            .wait_ready(START_TIMEOUT, "ready to serve client requests", || {
                etcd_health(health.clone())
            })
            .await;
        Ok(ready.map(|()| Etcd { process, url }))
    })
    .await
}

/// `GET /health` over plain HTTP/1.0; etcd answers `{"health":"true",...}`.
async fn etcd_health(addr: String) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("connecting to etcd at {addr}: {e}"))?;
    stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    if response.contains(r#""health":"true""#) {
        Ok(())
    } else {
        Err(format!("etcd /health: {response}"))
    }
}

/// Files the API server is started with.
#[derive(Debug)]
pub(crate) struct ApiServerFiles<'a> {
    pub(crate) pki: &'a crate::pki::Pki,
    pub(crate) token_file: &'a Path,
    pub(crate) etcd: &'a Supervised,
    pub(crate) etcd_url: &'a str,
    pub(crate) etcd_prefix: &'a str,
}

#[derive(Debug)]
pub(crate) struct ApiServer {
    pub(crate) process: Supervised,
    pub(crate) url: String,
}

/// Starts kube-apiserver; `client_for(url)` builds the admin client used to poll `/readyz`.
pub(crate) async fn start_apiserver(
    bin: &Path,
    dir: &Path,
    files: &ApiServerFiles<'_>,
    client_for: impl Fn(&str) -> Result<Client>,
) -> Result<ApiServer> {
    let client_for = &client_for;
    with_free_ports("kube-apiserver", 1, |n, ports| async move {
        let port = ports[0];
        let url = format!("https://127.0.0.1:{port}");
        let pki = files.pki;
        let path = |p: &Path| p.display().to_string();
        let args = [
            format!("--etcd-servers={}", files.etcd_url),
            format!("--etcd-prefix={}", files.etcd_prefix),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", path(&dir.join("apiserver-certs"))),
            format!("--tls-cert-file={}", path(&pki.serving_cert)),
            format!("--tls-private-key-file={}", path(&pki.serving_key)),
            format!("--client-ca-file={}", path(&pki.ca_cert)),
            format!("--token-auth-file={}", path(files.token_file)),
            "--authorization-mode=Node,RBAC".into(),
            // Lets a test keep its namespace's pods on its own nodes (a namespace annotation,
            // see `stack.rs`) while other tests of the binary run beside it.
            "--enable-admission-plugins=PodNodeSelector".into(),
            format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
            format!(
                "--service-account-key-file={}",
                path(&pki.service_account_key)
            ),
            format!(
                "--service-account-signing-key-file={}",
                path(&pki.service_account_key)
            ),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
        ];
        let log = dir.join(format!("kube-apiserver-{n}.log"));
        let process = Supervised::spawn("kube-apiserver", bin, &args, &log, Some(files.etcd))?;
        let client = client_for(&url)?;
        let marker = format!("Serving securely on 127.0.0.1:{port}");
        let ready = process
            .wait_ready(START_TIMEOUT, &marker, || readyz(&client, "/readyz"))
            .await;
        Ok(ready.map(|()| ApiServer { process, url }))
    })
    .await
}

async fn readyz(client: &Client, path: &str) -> Result<(), String> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    match client.request_text(request).await {
        Ok(body) if body.trim() == "ok" => Ok(()),
        Ok(body) => Err(format!("{path}: {body}")),
        Err(e) => Err(format!("{path}: {e}")),
    }
}

/// A kube-controller-manager or kube-scheduler.
#[derive(Debug)]
pub(crate) struct Component {
    pub(crate) process: Supervised,
}

/// Starts kube-controller-manager or kube-scheduler with `kubeconfig`, serving `/healthz` on
/// a free loopback port (self-signed, so the probe does not verify the certificate).
pub(crate) async fn start_component(
    what: &'static str,
    bin: &Path,
    dir: &Path,
    kubeconfig: &Path,
    extra: &[String],
    apiserver: &Supervised,
) -> Result<Component> {
    with_free_ports(what, 1, |n, ports| async move {
        let port = ports[0];
        let kubeconfig = kubeconfig.display();
        let cert_dir: PathBuf = dir.join(format!("{what}-certs-{n}"));
        let mut args = vec![
            format!("--kubeconfig={kubeconfig}"),
            format!("--authentication-kubeconfig={kubeconfig}"),
            format!("--authorization-kubeconfig={kubeconfig}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", cert_dir.display()),
            "--leader-elect=false".into(),
            "--profiling=false".into(),
        ];
        args.extend(extra.iter().cloned());
        let log = dir.join(format!("{what}-{n}.log"));
        std::fs::create_dir_all(&cert_dir)
            .context(|| format!("creating {}", cert_dir.display()))?;
        let process = Supervised::spawn(what, bin, &args, &log, Some(apiserver))?;
        let mut config = kube::Config::new(
            format!("https://127.0.0.1:{port}")
                .parse()
                .map_err(|e: http::uri::InvalidUri| Error::Serialize(e.to_string()))?,
        );
        config.accept_invalid_certs = true;
        let client = Client::try_from(config)?;
        let marker = format!("Serving securely on 127.0.0.1:{port}");
        let ready = process
            .wait_ready(START_TIMEOUT, &marker, || readyz(&client, "/healthz"))
            .await;
        Ok(ready.map(|()| Component { process }))
    })
    .await
}
