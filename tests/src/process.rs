//! Child processes that cannot outlive the test process.
//!
//! Rust never drops statics, so a server kept in a process-wide static would leak when the
//! test binary exits. Each server therefore runs under a small `sh` watchdog whose stdin is a
//! pipe held by the test process: when the test process exits for any reason (even SIGKILL)
//! the kernel closes the pipe, the watchdog reads EOF and terminates the server (SIGTERM, then
//! SIGKILL after a grace period). The watchdog exits with the server's status, so the test
//! process can still notice a server that died on its own.
//!
//! Servers stop in dependency order: a server that needs another one (kube-apiserver needs
//! etcd) is spawned with a copy of the other's lifeline as its watchdog's stdout, so the other
//! sees EOF only after both the test process and the dependent's watchdog are gone. Without
//! this, kube-apiserver hangs in its shutdown hooks when etcd dies first.

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::{IoContext, Result};

/// `$1` is the log file, the rest is the command. A background job of a non-interactive shell
/// gets /dev/null as stdin, so the lifeline is kept on fd 3 for the reader.
const WATCHDOG: &str = r#"
log=$1; shift
exec 3<&0
"$@" </dev/null 3<&- >>"$log" 2>&1 &
child=$!
{ cat <&3; kill -TERM "$child"; sleep 10; kill -KILL "$child"; } >/dev/null 2>&1 &
reader=$!
exec 3<&-
wait "$child"
status=$?
kill "$reader" 2>/dev/null
exit "$status"
"#;

/// Removes a directory once the test process is gone. Retries because the servers writing
/// into it are being stopped at the same moment.
const JANITOR: &str = r#"
cat >/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do
  rm -rf "$1" 2>/dev/null
  [ -e "$1" ] || exit 0
  sleep 1
done
"#;

/// A server process supervised by a watchdog; see the module docs.
#[derive(Debug)]
pub(crate) struct Supervised {
    pub(crate) name: &'static str,
    pub(crate) log: PathBuf,
    /// The watchdog; its piped stdin is the lifeline and is never written to.
    watchdog: Mutex<Child>,
}

impl Supervised {
    /// Spawns `program` under a watchdog. `needs` is a server that must keep running until
    /// this one has stopped.
    pub(crate) fn spawn<I, S>(
        name: &'static str,
        program: &Path,
        args: I,
        log: &Path,
        needs: Option<&Supervised>,
    ) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        // Create the log up front so a tail can always be read.
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .context(|| format!("creating {}", log.display()))?;
        let stdout = match needs {
            Some(server) => server.lifeline()?,
            None => Stdio::null(),
        };
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg(format!("{name}-watchdog"))
            .arg(log)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .context(|| format!("starting {name} ({})", program.display()))?;
        Ok(Self {
            name,
            log: log.to_owned(),
            watchdog: Mutex::new(watchdog),
        })
    }

    /// A copy of the write end of this server's lifeline.
    fn lifeline(&self) -> Result<Stdio> {
        use std::os::fd::AsFd;
        let watchdog = self.watchdog.lock().unwrap_or_else(|e| e.into_inner());
        let pipe = watchdog.stdin.as_ref().ok_or_else(|| crate::Error::Io {
            context: format!("sharing the lifeline of {}", self.name),
            source: std::io::ErrorKind::BrokenPipe.into(),
        })?;
        let fd = pipe
            .as_fd()
            .try_clone_to_owned()
            .context(|| format!("duplicating the lifeline of {}", self.name))?;
        Ok(Stdio::from(fd))
    }

    /// The watchdog's process id (the server is its child).
    pub(crate) fn pid(&self) -> u32 {
        self.watchdog.lock().unwrap_or_else(|e| e.into_inner()).id()
    }

    /// The server's exit status if it has exited.
    pub(crate) fn exit_status(&self) -> Option<ExitStatus> {
        let mut watchdog = self.watchdog.lock().unwrap_or_else(|e| e.into_inner());
        watchdog.try_wait().ok().flatten()
    }

    /// Last lines of the server's log, for error messages.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

pub(crate) fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Holds the lifeline of a janitor that deletes `dir` after the test process exits.
#[derive(Debug)]
pub(crate) struct Janitor {
    _child: Child,
}

impl Janitor {
    pub(crate) fn spawn(dir: &Path) -> Result<Self> {
        let child = Command::new("sh")
            .arg("-c")
            .arg(JANITOR)
            .arg("roundtable-e2e-janitor")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(|| "starting the temp-dir janitor".to_string())?;
        Ok(Self { _child: child })
    }
}

/// Why a server did not come up.
#[derive(Debug)]
pub(crate) enum NotStarted {
    /// Another process took one of the ports between choosing and binding it; retry.
    PortInUse,
    Failed(crate::Error),
}

impl Supervised {
    /// Polls `probe` until it succeeds, the server exits, or `timeout` passes. A probe only
    /// counts once the server's log shows `marker`, which proves that *this* process bound
    /// its port (another process could have taken it in the meantime).
    pub(crate) async fn wait_ready<F, Fut>(
        &self,
        timeout: std::time::Duration,
        marker: &str,
        mut probe: F,
    ) -> Result<(), NotStarted>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let started = std::time::Instant::now();
        let mut last_error;
        loop {
            if let Some(status) = self.exit_status() {
                let log_tail = self.log_tail(40);
                if log_tail.contains("address already in use") {
                    return Err(NotStarted::PortInUse);
                }
                return Err(NotStarted::Failed(crate::Error::Exited {
                    what: self.name,
                    status: status.to_string(),
                    log: self.log.clone(),
                    log_tail,
                }));
            }
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains(marker) {
                match probe().await {
                    Ok(()) => return Ok(()),
                    Err(e) => last_error = e,
                }
            } else {
                last_error = format!("log does not show {marker:?} yet");
            }
            if started.elapsed() > timeout {
                return Err(NotStarted::Failed(crate::Error::NotReady {
                    what: self.name,
                    waited_secs: timeout.as_secs(),
                    last_error,
                    log: self.log.clone(),
                    log_tail: self.log_tail(40),
                }));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// A loopback port that was free a moment ago. The caller retries on `NotStarted::PortInUse`.
pub(crate) fn free_loopback_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .context(|| "binding 127.0.0.1:0 to find a free port".to_string())?;
    Ok(listener
        .local_addr()
        .context(|| "reading a bound port".to_string())?
        .port())
}

/// The process id of `program` started by the watchdog of `server` (through `env`, which
/// replaces itself with the program): the watchdog's child whose command line starts with
/// the program's path.
pub(crate) async fn program_pid(server: &Supervised, program: &Path) -> Result<u32> {
    let watchdog = server.pid();
    let wanted = program.as_os_str().as_encoded_bytes().to_vec();
    let found = crate::poll(Duration::from_secs(10), async || {
        let children =
            std::fs::read_to_string(format!("/proc/{watchdog}/task/{watchdog}/children")).ok()?;
        children
            .split_whitespace()
            .filter_map(|pid| pid.parse::<u32>().ok())
            .find(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).next() == Some(&wanted[..]))
            })
    })
    .await;
    found.ok_or_else(|| crate::Error::Command {
        command: program.display().to_string(),
        detail: format!(
            "its process did not appear under the watchdog {watchdog}; log tail:\n{}",
            server.log_tail(40)
        ),
    })
}

/// Sends `signal` (`KILL`, `TERM`, …) to process `pid`, as `kill -s` would.
pub(crate) async fn signal(pid: u32, signal: &str) -> Result<()> {
    let status = tokio::process::Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .await
        .map_err(|e| crate::Error::Command {
            command: format!("kill -s {signal} {pid}"),
            detail: e.to_string(),
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(crate::Error::Command {
            command: format!("kill -s {signal} {pid}"),
            detail: format!("exited with {status}"),
        })
    }
}
