//! The `roundtable operator` command as a process of its own against the shared test cluster,
//! for tests that kill or stop it: a SIGKILL is a crash the process gets no chance to clean
//! up after (its leader Lease stays held until it expires), which an operator running inside
//! the test process cannot be made to suffer.
//!
//! The process runs under the same watchdog as the control plane (see `process`), so it dies
//! with the test process; its output goes to a log file in the cluster's folder.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use roundtable_operator::OperatorConfig;

use crate::Cluster;
use crate::error::{Error, Result};
use crate::process::{Supervised, log_tail, program_pid};

/// The name of the operator's leader Lease (`roundtable operator` uses this one).
pub const LEASE: &str = "roundtable-operator";

/// One `roundtable operator` replica watching one namespace, with its Lease there.
#[derive(Debug)]
pub struct OperatorProcess {
    pub identity: String,
    pid: u32,
    server: Supervised,
}

impl OperatorProcess {
    /// Starts a replica named `identity` for `namespace` with `config`'s images, host ports
    /// and intervals (the `roundtable` binary of this workspace, prebuilt or built now).
    pub async fn start(
        cluster: &Cluster,
        namespace: &str,
        identity: &str,
        config: &OperatorConfig,
    ) -> Result<Self> {
        let program = crate::node_agent::workspace_binary("roundtable", "roundtable").await?;
        let log = cluster
            .dir()
            .join(format!("operator-{namespace}-{identity}.log"));
        let mut args: Vec<String> = vec![
            format!("KUBECONFIG={}", cluster.admin_kubeconfig().display()),
            format!(
                "RUST_LOG={}",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info,kube=warn".into())
            ),
            program.display().to_string(),
            "operator".into(),
        ];
        let flags = [
            ("--admin-addr", "127.0.0.1:0".to_string()),
            ("--identity", identity.to_string()),
            ("--watch-namespace", namespace.to_string()),
            ("--lease-namespace", namespace.to_string()),
            ("--sfu-image", config.sfu_image.clone()),
            ("--recorder-image", config.recorder_image.clone()),
            (
                "--host-ports",
                format!("{}-{}", config.host_ports.start(), config.host_ports.end()),
            ),
            ("--warm-up-seconds", config.warm_up.as_secs().to_string()),
            (
                "--drain-grace-seconds",
                config.drain_grace_seconds.to_string(),
            ),
            (
                "--room-idle-seconds",
                config.room_idle.as_secs().to_string(),
            ),
            (
                "--stats-interval-seconds",
                config.stats_interval.as_secs().max(1).to_string(),
            ),
        ];
        for (flag, value) in flags {
            args.push(flag.into());
            args.push(value);
        }
        let server = Supervised::spawn("roundtable-operator", Path::new("env"), &args, &log, None)?;
        let pid = program_pid(&server, &program).await?;
        Ok(OperatorProcess {
            identity: identity.to_string(),
            pid,
            server,
        })
    }

    /// The operator's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` (`KILL`, `TERM`, …) to the operator's process, as `kill -s` would.
    pub async fn signal(&self, signal: &str) -> Result<()> {
        crate::process::signal(self.pid, signal).await
    }

    /// Waits up to `limit` for the process to exit; its exit status.
    pub async fn exited(&self, limit: Duration) -> Option<ExitStatus> {
        crate::poll(limit, async || self.server.exit_status()).await
    }

    /// SIGTERM, as a Deployment's rolling update or a drained node sends it, and the wait
    /// (up to 30 s) for the process to exit.
    pub async fn stop(self) -> Result<ExitStatus> {
        if let Some(status) = self.server.exit_status() {
            return Ok(status);
        }
        // It may exit between the look and the signal: the wait below tells.
        let _ = self.signal("TERM").await;
        self.exited(Duration::from_secs(30))
            .await
            .ok_or_else(|| Error::Command {
                command: format!("roundtable operator ({})", self.identity),
                detail: format!(
                    "did not exit within 30 s of SIGTERM; log tail:\n{}",
                    self.log_tail(40)
                ),
            })
    }

    /// The last `lines` lines of the replica's output.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log(), lines)
    }

    /// The replica's log file.
    pub fn log(&self) -> PathBuf {
        self.server.log.clone()
    }
}

/// Who holds the operator's leader Lease in `namespace` now (`None`: nobody, or no Lease).
pub async fn lease_holder(client: &Client, namespace: &str) -> Option<String> {
    let lease = Api::<Lease>::namespaced(client.clone(), namespace)
        .get_opt(LEASE)
        .await
        .ok()??;
    lease
        .spec?
        .holder_identity
        .filter(|holder| !holder.is_empty())
}

/// Waits up to `limit` for a replica other than `not` to hold the Lease; who, and when the
/// test saw it.
pub async fn new_leader(
    client: &Client,
    namespace: &str,
    not: Option<&str>,
    limit: Duration,
) -> Option<(String, Instant)> {
    crate::poll(limit, async || {
        lease_holder(client, namespace)
            .await
            .filter(|holder| Some(holder.as_str()) != not)
            .map(|holder| (holder, Instant::now()))
    })
    .await
}
