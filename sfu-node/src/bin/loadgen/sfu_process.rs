//! One sfu-node process for the load generators (`bench/sfu`, `bench/soak`): started on
//! loopback with free ports (optionally pinned with `taskset`), its addresses read from the
//! line it prints first, killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::Context;

pub struct SfuProcess {
    pub name: String,
    pub child: Child,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

impl Drop for SfuProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `binary` for `room` with token key `key` and the caller's `args`; the SFU's log
/// level is `SFU_LOG` (default `warn`).
pub fn start(
    name: &str,
    binary: &Path,
    cpus: Option<&str>,
    room: &str,
    key: &str,
    args: &[String],
) -> anyhow::Result<SfuProcess> {
    let mut command = match cpus {
        Some(cpus) => {
            // taskset execs the SFU, so the child's pid is the SFU's.
            let mut c = Command::new("taskset");
            c.args(["-c", cpus]).arg(binary);
            c
        }
        None => Command::new(binary),
    };
    let mut child = command
        .args(["--room", room, "--token-key", key])
        .args(["--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .args(["--udp-bind", "127.0.0.1", "--udp-port", "0"])
        .args(["--drain-grace-seconds", "1"])
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("SFU_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let v: serde_json::Value =
        serde_json::from_str(&line).with_context(|| format!("{name}'s address line"))?;
    let addr =
        |k: &str| -> anyhow::Result<SocketAddr> { Ok(v[k].as_str().context("address")?.parse()?) };
    Ok(SfuProcess {
        name: name.to_owned(),
        http: addr("http")?,
        admin: addr("admin")?,
        child,
    })
}
