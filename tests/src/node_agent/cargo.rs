//! Building a binary of this workspace for an image to run.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::error::{Error, IoContext, Result};

/// A directory of this workspace's binaries, already built (see [`workspace_binary`]).
pub const PREBUILT_ENV: &str = "ROUNDTABLE_PREBUILT_BINARIES";

/// A cold build of the media server on a small machine takes minutes.
const BUILD_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// Builds `bin` of workspace package `package` with the profile and target directory of the
/// running test, and returns the executable's path, e.g. to map the `sfu-node` image:
/// `ImageMap::new().map("sfu-node", workspace_binary("sfu-node", "sfu-node").await?)`.
/// Cargo is idle while tests run, so this only waits for other builds.
/// With `ROUNDTABLE_PREBUILT_BINARIES` set to a directory holding `bin` (scripts/test-all sets
/// it to the release directory its one build of the workspace filled), that file is used
/// instead: `cargo build -p <package>` alone resolves other features than the workspace's test
/// build and would rebuild most dependencies.
pub async fn workspace_binary(package: &str, bin: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(PREBUILT_ENV) {
        let prebuilt = Path::new(&dir).join(bin);
        if prebuilt.is_file() {
            return Ok(prebuilt);
        }
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = tokio::process::Command::new(cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--package", package, "--bin", bin])
        .arg("--message-format=json-render-diagnostics");
    if let Some(profile) = test_profile() {
        command.args(["--profile", &profile]);
    }
    let describe = format!("cargo build --package {package} --bin {bin}");
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context(|| format!("running {describe}"))?;
    let output = tokio::time::timeout(BUILD_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| Error::Command {
            command: describe.clone(),
            detail: format!("did not finish within {}s", BUILD_TIMEOUT.as_secs()),
        })?
        .context(|| format!("waiting for {describe}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(Error::Command {
            command: describe,
            detail: format!("{}\n{stderr}", output.status),
        });
    }
    executable(&stdout, bin).ok_or_else(|| Error::Command {
        command: describe,
        detail: format!("cargo reported no executable named {bin}"),
    })
}

/// The cargo profile of the running test executable (`<target>/<profile dir>/deps/<exe>`),
/// or `None` for the default `dev` profile.
fn test_profile() -> Option<String> {
    // Test binaries live in `target/<profile>/deps/`, other binaries in `target/<profile>/`.
    let exe = std::env::current_exe().ok()?;
    let mut parent = exe.parent()?;
    if parent.file_name()? == "deps" {
        parent = parent.parent()?;
    }
    let dir = parent.file_name()?.to_str()?.to_owned();
    match dir.as_str() {
        "debug" => None,
        "release" => Some("release".into()),
        _ => Some(dir),
    }
}

/// The `executable` of the `compiler-artifact` message for `bin` in cargo's JSON output.
fn executable(messages: &str, bin: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bin)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::executable;

    #[test]
    fn finds_the_binary_among_cargo_messages() {
        let messages = [
            r#"{"reason":"compiler-artifact","target":{"name":"sfu_node"},"executable":null}"#,
            r#"{"reason":"compiler-artifact","target":{"name":"sfu-node"},"executable":"/t/debug/sfu-node"}"#,
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .join("\n");
        assert_eq!(
            executable(&messages, "sfu-node"),
            Some("/t/debug/sfu-node".into())
        );
        assert_eq!(executable(&messages, "sfu-bench"), None);
    }
}
