//! Volumes, as far as a node agent without mount namespaces can give them.
//!
//! A `persistentVolumeClaim` volume is a local folder per claim,
//! `<agent dir>/volumes/<namespace>/<claim>`, shared by every pod that mounts the claim (as a
//! ReadWriteMany volume would be) and kept after the pods are gone; an `emptyDir` is a folder
//! per pod. Since a process cannot see a folder at another path, environment values and
//! arguments that name a path under a mount's `mountPath` are rewritten to the folder: a
//! program that takes its paths from its configuration works unchanged; one that hard-codes
//! a path does not. A `secret` volume is a folder per pod holding the Secret's keys (or its
//! `items`) as files, as the kubelet projects them. A `projected` volume (the ServiceAccount
//! token) is an empty folder: tests hand a process its credentials as a kubeconfig. Other
//! volume kinds make the container fail to start with a message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

/// The local folder of a PersistentVolumeClaim.
pub(crate) fn claim_dir(agent_dir: &Path, namespace: &str, claim: &str) -> PathBuf {
    agent_dir.join("volumes").join(namespace).join(claim)
}

/// The Secrets that `container`'s `secret` volumes project: Secret name → key → bytes.
pub(crate) type SecretData = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// The names of the Secrets that `container` mounts as volumes.
pub(crate) fn secret_names(pod: &Pod, container: &Container) -> Vec<String> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| volumes?.iter().find(|v| v.name == m.name))
        .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
        .collect()
}

/// `(mountPath, local folder)` of each of `container`'s mounts, folders created and Secret
/// volumes written from `secrets`.
pub(crate) fn mounts(
    agent_dir: &Path,
    pod: &Pod,
    pod_dir: &str,
    container: &Container,
    secrets: &SecretData,
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
        } else if volume.projected.is_some() {
            // The ServiceAccount token volume (`kube-api-access-*`): not projected here; tests
            // give a process its credentials as a kubeconfig instead.
            agent_dir
                .join("pods")
                .join(pod_dir)
                .join("volumes")
                .join(&volume.name)
        } else if let Some(source) = &volume.secret {
            let dir = agent_dir
                .join("pods")
                .join(pod_dir)
                .join("volumes")
                .join(&volume.name);
            let name = source.secret_name.clone().unwrap_or_default();
            let data = secrets
                .get(&name)
                .ok_or_else(|| format!("secret {name:?} not found (volume {:?})", volume.name))?;
            let items: Vec<(String, String)> = match &source.items {
                Some(items) => items
                    .iter()
                    .map(|i| (i.key.clone(), i.path.clone()))
                    .collect(),
                None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
            };
            for (key, path) in items {
                let value = data
                    .get(&key)
                    .ok_or_else(|| format!("secret {name:?} has no key {key:?}"))?;
                let file = dir.join(&path);
                if let Some(parent) = file.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("{}: {e}", parent.display()))?;
                }
                std::fs::write(&file, value).map_err(|e| format!("{}: {e}", file.display()))?;
            }
            dir
        } else {
            return Err(format!(
                "volume {:?}: only persistentVolumeClaim, emptyDir, secret and projected \
                 volumes are supported by the test node agent",
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
