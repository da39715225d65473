//! Volumes, as far as a node agent without mount namespaces can give them.
//!
//! A `persistentVolumeClaim` volume is a local folder per claim,
//! `<agent dir>/volumes/<namespace>/<claim>`, shared by every pod that mounts the claim (as a
//! ReadWriteMany volume would be) and kept after the pods are gone; an `emptyDir` is a folder
//! per pod. Since a process cannot see a folder at another path, environment values and
//! arguments that name a path under a mount's `mountPath` are rewritten to the folder: a
//! program that takes its paths from its configuration works unchanged; one that hard-codes
//! a path does not. Other volume kinds make the container fail to start with a message.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

/// The local folder of a PersistentVolumeClaim.
pub(crate) fn claim_dir(agent_dir: &Path, namespace: &str, claim: &str) -> PathBuf {
    agent_dir.join("volumes").join(namespace).join(claim)
}

/// `(mountPath, local folder)` of each of `container`'s mounts, folders created.
pub(crate) fn mounts(
    agent_dir: &Path,
    pod: &Pod,
    pod_dir: &str,
    container: &Container,
) -> Result<Vec<(String, PathBuf)>, String> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = volumes
            .iter()
            .find(|v| v.name == mount.name)
            .ok_or_else(|| format!("volumeMount {:?} names no volume of the pod", mount.name))?;
        let base = if let Some(pvc) = &volume.persistent_volume_claim {
            claim_dir(agent_dir, &namespace, &pvc.claim_name)
        } else if volume.empty_dir.is_some() {
            agent_dir
                .join("pods")
                .join(pod_dir)
                .join("volumes")
                .join(&volume.name)
        } else {
            return Err(format!(
                "volume {:?}: only persistentVolumeClaim and emptyDir volumes are supported by \
                 the test node agent",
                volume.name
            ));
        };
        let local = match mount.sub_path.as_deref() {
            Some(sub) if !sub.is_empty() => base.join(sub),
            _ => base,
        };
        std::fs::create_dir_all(&local).map_err(|e| format!("{}: {e}", local.display()))?;
        out.push((mount.mount_path.trim_end_matches('/').to_string(), local));
    }
    // Longest mount path first, so nested mounts win.
    out.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    Ok(out)
}

/// `value` with a leading mounted path replaced by its local folder.
pub(crate) fn translate(value: &str, mounts: &[(String, PathBuf)]) -> String {
    for (path, local) in mounts {
        if let Some(rest) = value.strip_prefix(path.as_str())
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return format!("{}{rest}", local.display());
        }
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_a_mount_point_to_the_local_folder() {
        let mounts = vec![
            ("/recordings/deep".to_string(), PathBuf::from("/agent/b")),
            ("/recordings".to_string(), PathBuf::from("/agent/a")),
        ];
        assert_eq!(translate("/recordings", &mounts), "/agent/a");
        assert_eq!(translate("/recordings/panel", &mounts), "/agent/a/panel");
        assert_eq!(translate("/recordings/deep/x", &mounts), "/agent/b/x");
        assert_eq!(translate("/recordingsX", &mounts), "/recordingsX");
        assert_eq!(translate("10.0.0.1:9091", &mounts), "10.0.0.1:9091");
    }
}
