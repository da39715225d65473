//! A container's process: started under the crate's watchdog (`crate::process`), so it dies
//! with the test process however that ends, and stopped with SIGTERM then SIGKILL.
//!
//! The watchdog's child is a tiny `sh` that records its pid, changes to the container's
//! directory and `exec`s `env -i <environment> <argv>`: the pid it records is therefore the
//! program's own, and the program sees only the container's environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};
use crate::process::Supervised;

const WRAPPER: &str = r#"echo $$ >"$1" && cd "$2" && shift 2 && exec "$@""#;
/// How long a freshly spawned wrapper may take to record its pid.
const PID_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a process may take to die after SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct Process {
    supervised: Supervised,
    pid: u32,
}

impl Process {
    /// Starts `argv` in `dir` with exactly `env`, appending its output to `log`.
    pub(crate) async fn spawn(
        argv: &[OsString],
        env: &[(String, String)],
        dir: &Path,
        log: &Path,
    ) -> Result<Self> {
        for dir in [dir].into_iter().chain(log.parent()) {
            std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        }
        let pidfile: PathBuf = dir.join(".pid");
        let _ = std::fs::remove_file(&pidfile);
        let mut args: Vec<OsString> = vec![
            "-c".into(),
            WRAPPER.into(),
            "container".into(),
            pidfile.clone().into(),
            dir.into(),
            "env".into(),
            "-i".into(),
        ];
        args.extend(env.iter().map(|(k, v)| OsString::from(format!("{k}={v}"))));
        args.extend(argv.iter().cloned());
        let supervised = Supervised::spawn("container", Path::new("sh"), &args, log, None)?;
        let begun = Instant::now();
        let pid = loop {
            let recorded = std::fs::read_to_string(&pidfile).unwrap_or_default();
            if let Ok(pid) = recorded.trim().parse::<u32>() {
                break pid;
            }
            if supervised.exit_status().is_some() || begun.elapsed() > PID_TIMEOUT {
                return Err(Error::Command {
                    command: format!("{argv:?}"),
                    detail: format!(
                        "the container wrapper did not start:\n{}",
                        supervised.log_tail(20)
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        Ok(Self { supervised, pid })
    }

    /// The exit code once the process has ended (128 + n when killed by signal n, as
    /// container runtimes report it).
    pub(crate) fn exit_code(&self) -> Option<i32> {
        self.supervised
            .exit_status()
            .map(|status| status.code().unwrap_or(128 + 9))
    }

    /// Sends `signal` (`TERM`, `KILL`) unless the process has already ended.
    pub(crate) async fn signal(&self, signal: &str) {
        if self.exit_code().is_some() {
            return;
        }
        let _ = tokio::process::Command::new("kill")
            .args(["-s", signal, &self.pid.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await;
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL. Returns the exit code (`None` only if
    /// the process survived SIGKILL for [`KILL_TIMEOUT`]).
    pub(crate) async fn stop(&self, grace: Duration) -> Option<i32> {
        self.signal("TERM").await;
        if let Some(code) = self.wait_exit(grace).await {
            return Some(code);
        }
        self.signal("KILL").await;
        self.wait_exit(KILL_TIMEOUT).await
    }

    async fn wait_exit(&self, timeout: Duration) -> Option<i32> {
        let begun = Instant::now();
        loop {
            if let Some(code) = self.exit_code() {
                return Some(code);
            }
            if begun.elapsed() >= timeout {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Last lines of the container's log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        self.supervised.log_tail(lines)
    }
}
