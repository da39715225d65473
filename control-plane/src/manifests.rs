//! Reading the same manifests a cluster would get: LiveEvents, Sessions, Stages, Rooms and the
//! Secrets they refer to, from YAML files (several documents per file) in files or folders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use roundtable_crds::{LiveEvent, Room, Session, Stage};
use serde::Deserialize;

/// Everything read from the manifests.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    pub events: Vec<LiveEvent>,
    pub sessions: Vec<Session>,
    pub stages: Vec<Stage>,
    pub rooms: Vec<Room>,
    /// `namespace/name` → key → value.
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: document {index}: {message}")]
    Parse {
        path: PathBuf,
        index: usize,
        message: String,
    },
}

#[derive(Deserialize)]
struct Head {
    #[serde(default, rename = "apiVersion")]
    api_version: String,
    #[serde(default)]
    kind: String,
}

/// The YAML files named by `paths` (files, or folders read one level deep), sorted.
pub fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ManifestError> {
    let mut found = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| ManifestError::Read {
                path: path.clone(),
                source,
            })?;
            for entry in entries.flatten() {
                let p = entry.path();
                let yaml = p.extension().is_some_and(|e| e == "yaml" || e == "yml");
                if yaml && p.is_file() {
                    found.push(p);
                }
            }
        } else {
            found.push(path.clone());
        }
    }
    found.sort();
    Ok(found)
}

/// What changed on disk is noticed by this: each file's path, length and modification time.
pub fn fingerprint(files: &[PathBuf]) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    files
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).ok();
            (
                p.clone(),
                meta.as_ref().map_or(0, |m| m.len()),
                meta.and_then(|m| m.modified().ok()),
            )
        })
        .collect()
}

/// Reads and parses every file.
pub fn load(files: &[PathBuf]) -> Result<Manifests, ManifestError> {
    let mut manifests = Manifests::default();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.clone(),
            source,
        })?;
        parse_into(&mut manifests, path, &text)?;
    }
    Ok(manifests)
}

fn namespaced<K: Resource>(mut object: K) -> K {
    let meta = object.meta_mut();
    if meta.namespace.is_none() {
        meta.namespace = Some("default".into());
    }
    object
}

/// Adds the documents of one file; other kinds (a Namespace, a HorizontalPodAutoscaler) are
/// skipped as a cluster-only concern.
pub fn parse_into(manifests: &mut Manifests, path: &Path, text: &str) -> Result<(), ManifestError> {
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(document).map_err(|e| ManifestError::Parse {
            path: path.to_path_buf(),
            index,
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let error = |message: String| ManifestError::Parse {
            path: path.to_path_buf(),
            index,
            message,
        };
        let head: Head = serde_yaml::from_value(value.clone()).map_err(|e| error(e.to_string()))?;
        let ours = head.api_version.starts_with("roundtable.dev/");
        match (ours, head.kind.as_str()) {
            (true, "LiveEvent") => manifests.events.push(namespaced(
                serde_yaml::from_value(value).map_err(|e| error(e.to_string()))?,
            )),
            (true, "Session") => manifests.sessions.push(namespaced(
                serde_yaml::from_value(value).map_err(|e| error(e.to_string()))?,
            )),
            (true, "Stage") => manifests.stages.push(namespaced(
                serde_yaml::from_value(value).map_err(|e| error(e.to_string()))?,
            )),
            (true, "Room") => manifests.rooms.push(namespaced(
                serde_yaml::from_value(value).map_err(|e| error(e.to_string()))?,
            )),
            (false, "Secret") if head.api_version == "v1" => {
                let secret: Secret =
                    namespaced(serde_yaml::from_value(value).map_err(|e| error(e.to_string()))?);
                let key = format!(
                    "{}/{}",
                    secret.metadata.namespace.as_deref().unwrap_or_default(),
                    secret.metadata.name.as_deref().unwrap_or_default()
                );
                let mut data: BTreeMap<String, String> = secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect();
                data.extend(secret.string_data.unwrap_or_default());
                manifests.secrets.insert(key, data);
            }
            (true, other) => {
                return Err(error(format!("unknown roundtable.dev kind {other:?}")));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_examples_read_as_the_cluster_would_get_them() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let manifests = load(&files(&[examples]).unwrap()).unwrap();
        assert!(!manifests.events.is_empty());
        assert!(manifests.sessions.len() >= 3);
        assert!(!manifests.stages.is_empty());
        assert!(manifests.rooms.len() >= 3);
        assert!(
            manifests
                .sessions
                .iter()
                .all(|s| s.metadata.namespace.is_some())
        );
        let locked = manifests
            .rooms
            .iter()
            .find(|r| r.spec.passcode.is_some())
            .expect("an example room with a passcode");
        let selector = locked.spec.passcode.as_ref().unwrap();
        let ns = locked.metadata.namespace.as_deref().unwrap();
        assert!(
            manifests.secrets[&format!("{ns}/{}", selector.name)].contains_key(&selector.key),
            "the passcode Secret is read from stringData or data"
        );
    }

    #[test]
    fn a_bad_document_names_its_file_and_place() {
        let mut m = Manifests::default();
        let text = "apiVersion: roundtable.dev/v1alpha1\nkind: Session\nmetadata: {name: a}\n---\n\
                    apiVersion: roundtable.dev/v1alpha1\nkind: Sesion\nmetadata: {name: b}\n";
        let error = parse_into(&mut m, Path::new("x.yaml"), text).unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("x.yaml: document "), "{message}");
    }
}
