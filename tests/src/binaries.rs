//! Finds the control-plane executables: the Kubernetes binaries built (once, cached outside
//! the repository) by `tests/k8s/build.sh`, and an etcd server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, IoContext, Result};

/// Set to a directory holding kube-apiserver, kube-controller-manager, kube-scheduler and
/// kubectl to skip `tests/k8s/build.sh`.
pub const K8S_BIN_DIR_ENV: &str = "ROUNDTABLE_K8S_BIN_DIR";
/// Set to the etcd executable to use instead of the one on `PATH`.
pub const ETCD_ENV: &str = "ROUNDTABLE_ETCD";

const BUILD_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/k8s/build.sh");
const ETCD_FALLBACK: &str = "/usr/bin/etcd";

/// Absolute paths of the executables a test control plane runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kube_scheduler: PathBuf,
    pub kubectl: PathBuf,
}

impl Binaries {
    /// Locates every binary, building the Kubernetes ones first if they are not cached yet
    /// (the build takes minutes once; afterwards the script returns at once).
    pub fn locate() -> Result<Self> {
        let k8s = match std::env::var_os(K8S_BIN_DIR_ENV) {
            Some(dir) => PathBuf::from(dir),
            None => build_kubernetes()?,
        };
        let in_k8s = |name: &'static str| -> Result<PathBuf> {
            let path = k8s.join(name);
            if is_executable(&path) {
                Ok(path)
            } else {
                Err(Error::MissingBinary {
                    what: name,
                    detail: format!("no executable at {}", path.display()),
                })
            }
        };
        Ok(Self {
            etcd: locate_etcd()?,
            kube_apiserver: in_k8s("kube-apiserver")?,
            kube_controller_manager: in_k8s("kube-controller-manager")?,
            kube_scheduler: in_k8s("kube-scheduler")?,
            kubectl: in_k8s("kubectl")?,
        })
    }
}

/// Runs the idempotent build script and returns the directory it prints on its last line.
fn build_kubernetes() -> Result<PathBuf> {
    let command = format!("bash {BUILD_SCRIPT}");
    let output = Command::new("bash")
        .arg(BUILD_SCRIPT)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context(|| format!("running {command}"))?;
    if !output.status.success() {
        return Err(Error::MissingBinary {
            what: "Kubernetes control plane",
            detail: format!("`{command}` failed with {}", output.status),
        });
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(dir) => Ok(PathBuf::from(dir.trim())),
        None => Err(Error::Command {
            command,
            detail: "printed no bin directory".into(),
        }),
    }
}

fn locate_etcd() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(ETCD_ENV) {
        let path = PathBuf::from(path);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(Error::MissingBinary {
                what: "etcd",
                detail: format!("{ETCD_ENV}={} is not an executable", path.display()),
            })
        };
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("etcd"));
    on_path
        .chain([PathBuf::from(ETCD_FALLBACK)])
        .find(|p| is_executable(p))
        .ok_or_else(|| Error::MissingBinary {
            what: "etcd",
            detail: format!(
                "not on PATH nor at {ETCD_FALLBACK}; install it (Debian: `apt-get install \
                 etcd-server`) or set {ETCD_ENV}"
            ),
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
