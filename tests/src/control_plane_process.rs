//! The `roundtable api` command as a process of its own against the shared test cluster, for
//! tests that kill it and start it again: a restart as a Deployment's rolling update or a
//! crashed container gives one, with the same SQLite file (the chart's persistent volume), the
//! same join-token key and registration key, on the same address (the Service's).
//!
//! It runs under the same watchdog as the other servers (see `process`), so it dies with the
//! test process; its output goes to a log file in the cluster's folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Cluster;
use crate::error::{Error, IoContext, Result};
use crate::process::{Supervised, log_tail, program_pid, signal};
use crate::stack::{ControlPlane, JOIN_KEY, REGISTRATION_KEY};

/// One `roundtable api` replica reading one namespace, with its files in a folder of its own.
#[derive(Debug)]
pub struct ControlPlaneProcess {
    /// The public address, kept across restarts.
    pub listen: SocketAddr,
    namespace: String,
    dir: PathBuf,
    kubeconfig: PathBuf,
    starts: u32,
    pid: u32,
    server: Supervised,
}

impl ControlPlaneProcess {
    /// Starts the control plane for `namespace` on a free loopback port, with the test
    /// stack's join-token and registration keys and a fresh SQLite database.
    pub async fn start(cluster: &Cluster, namespace: &str) -> Result<Self> {
        let dir = cluster.dir().join(format!("control-plane-{namespace}"));
        std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        for (file, key) in [
            ("join.key", JOIN_KEY.as_bytes()),
            ("registration.key", REGISTRATION_KEY),
        ] {
            std::fs::write(dir.join(file), key).context(|| format!("writing {file}"))?;
        }
        let listen = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context(|| "picking the control plane's port".to_string())?;
        let kubeconfig = cluster.admin_kubeconfig().to_owned();
        let (pid, server) = Self::spawn(&dir, &kubeconfig, namespace, listen, 1).await?;
        let process = ControlPlaneProcess {
            listen,
            namespace: namespace.to_string(),
            dir,
            kubeconfig,
            starts: 1,
            pid,
            server,
        };
        process.ready(Duration::from_secs(30)).await?;
        Ok(process)
    }

    async fn spawn(
        dir: &Path,
        kubeconfig: &Path,
        namespace: &str,
        listen: SocketAddr,
        start: u32,
    ) -> Result<(u32, Supervised)> {
        let program = crate::node_agent::workspace_binary("roundtable", "roundtable").await?;
        let log = dir.join(format!("api-{start}.log"));
        let file = |name: &str| dir.join(name).display().to_string();
        let args: Vec<String> = vec![
            format!("KUBECONFIG={}", kubeconfig.display()),
            format!(
                "RUST_LOG={}",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info,kube=warn".into())
            ),
            program.display().to_string(),
            "api".into(),
            format!("--listen={listen}"),
            "--admin-addr=127.0.0.1:0".into(),
            format!("--public-url=http://{listen}"),
            format!("--token-key-file={}", file("join.key")),
            format!("--registration-key-file={}", file("registration.key")),
            format!("--database={}", file("roundtable.db")),
            format!("--watch-namespace={namespace}"),
        ];
        let server = Supervised::spawn("roundtable-api", Path::new("env"), &args, &log, None)?;
        let pid = program_pid(&server, &program).await?;
        Ok((pid, server))
    }

    /// A client of this control plane's API (for sign-ins and joins).
    pub fn client(&self) -> ControlPlane {
        ControlPlane {
            base: format!("http://{}", self.listen),
            namespace: self.namespace.clone(),
            // No request of a test waits on the control plane for long: a hung one fails.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
        }
    }

    /// Waits up to `limit` until the control plane answers on its public address.
    pub async fn ready(&self, limit: Duration) -> Result<()> {
        let url = format!("http://{}/api/me", self.listen);
        let http = reqwest::Client::new();
        // Each probe is bounded: a process that accepts connections but never answers (its
        // listener is bound before it serves) must fail this wait, not hang it.
        let probe = async || {
            http.get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .ok()
                .map(|_| ())
        };
        crate::poll(limit, probe)
            .await
            .ok_or_else(|| Error::Command {
                command: "roundtable api".into(),
                detail: format!(
                    "not answering on {} within {limit:?}; log tail:\n{}",
                    self.listen,
                    self.log_tail(40)
                ),
            })
    }

    /// Sends `signal` (`KILL`, `TERM`, …) to the control plane's process and waits up to 30 s
    /// for it to exit.
    pub async fn stop_with(&self, signal_name: &str) -> Result<()> {
        signal(self.pid, signal_name).await?;
        crate::poll(Duration::from_secs(30), async || self.server.exit_status())
            .await
            .map(|_| ())
            .ok_or_else(|| Error::Command {
                command: format!("kill -s {signal_name} roundtable api"),
                detail: "still running 30 s later".into(),
            })
    }

    /// Starts it again with the same address, keys and database, and waits until it answers.
    pub async fn restart(&mut self) -> Result<()> {
        self.starts += 1;
        let (pid, server) = Self::spawn(
            &self.dir,
            &self.kubeconfig,
            &self.namespace,
            self.listen,
            self.starts,
        )
        .await?;
        (self.pid, self.server) = (pid, server);
        self.ready(Duration::from_secs(30)).await
    }

    /// The last `lines` lines of the current run's output.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.server.log, lines)
    }
}
