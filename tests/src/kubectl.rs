//! Running the built kubectl as the admin user against the shared cluster.

use std::ffi::OsStr;
use std::process::{ExitStatus, Stdio};

use crate::cluster::Cluster;
use crate::error::{Error, IoContext, Result};

/// What one kubectl invocation printed and how it exited.
#[derive(Debug, Clone)]
pub struct KubectlOutput {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl KubectlOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The stdout of a successful run, or an error carrying the command and its stderr.
    pub fn ok(self) -> Result<String> {
        if self.success() {
            Ok(self.stdout)
        } else {
            Err(Error::Command {
                command: self.command,
                detail: format!("{}: {}", self.status, self.stderr.trim()),
            })
        }
    }
}

impl Cluster {
    /// Runs `kubectl <args>` with the admin kubeconfig and a discovery cache private to this
    /// cluster. A non-zero exit is not an error here; see [`KubectlOutput::ok`].
    pub async fn kubectl<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<KubectlOutput> {
        self.kubectl_with_stdin(args, None).await
    }

    /// Like [`Cluster::kubectl`], feeding `stdin` to the command (for `apply -f -`).
    pub async fn kubectl_with_stdin<S: AsRef<OsStr>>(
        &self,
        args: &[S],
        stdin: Option<&str>,
    ) -> Result<KubectlOutput> {
        let mut cmd = tokio::process::Command::new(&self.binaries().kubectl);
        cmd.arg(format!(
            "--kubeconfig={}",
            self.admin_kubeconfig().display()
        ))
        .arg(format!(
            "--cache-dir={}",
            self.dir().join("kubectl-cache").display()
        ))
        .args(args);
        run_captured(cmd, command_line("kubectl", args), stdin).await
    }
}

/// `program arg arg …`, for error messages.
pub(crate) fn command_line<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    std::iter::once(program.to_string())
        .chain(
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned()),
        )
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` (program, arguments and environment already set), feeding it `stdin`, and
/// captures what it printed; `command` names it in errors.
pub(crate) async fn run_captured(
    mut cmd: tokio::process::Command,
    command: String,
    stdin: Option<&str>,
) -> Result<KubectlOutput> {
    use tokio::io::AsyncWriteExt;

    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context(|| format!("running {command}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .await
            .context(|| format!("writing stdin of {command}"))?;
    }
    let output = child
        .wait_with_output()
        .await
        .context(|| format!("waiting for {command}"))?;
    Ok(KubectlOutput {
        command,
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}
