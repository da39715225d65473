//! A container's environment and argv as the kubelet computes them: `envFrom`, then `env`
//! (plain values, downward-API `fieldRef`s, ConfigMap and Secret keys), then `$(VAR)`
//! expansion of `command` and `args`.
//!
//! Resolution is a pure function of the pod and the ConfigMaps and Secrets it names; the
//! caller fetches those first (see [`References`]).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, Pod};

/// Names of the ConfigMaps and Secrets a container's environment reads.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct References {
    pub(crate) config_maps: BTreeSet<String>,
    pub(crate) secrets: BTreeSet<String>,
}

/// The data of the referenced objects that exist (Secret values decoded to UTF-8).
#[derive(Debug, Default)]
pub(crate) struct Sources {
    pub(crate) config_maps: BTreeMap<String, BTreeMap<String, String>>,
    pub(crate) secrets: BTreeMap<String, BTreeMap<String, String>>,
}

pub(crate) fn references(container: &Container) -> References {
    let mut refs = References::default();
    for from in container.env_from.iter().flatten() {
        if let Some(cm) = &from.config_map_ref {
            refs.config_maps.insert(cm.name.clone());
        }
        if let Some(secret) = &from.secret_ref {
            refs.secrets.insert(secret.name.clone());
        }
    }
    for var in container.env.iter().flatten() {
        let Some(source) = &var.value_from else {
            continue;
        };
        if let Some(cm) = &source.config_map_key_ref {
            refs.config_maps.insert(cm.name.clone());
        }
        if let Some(secret) = &source.secret_key_ref {
            refs.secrets.insert(secret.name.clone());
        }
    }
    refs
}

/// The container's environment in definition order (a later duplicate replaces an earlier
/// one in place), with `base` (the image's variables) first. Errors read like the kubelet's
/// `CreateContainerConfigError` messages.
pub(crate) fn resolve(
    pod: &Pod,
    container: &Container,
    base: &[(String, String)],
    sources: &Sources,
) -> Result<Vec<(String, String)>, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut env = Env::default();
    for (name, value) in base {
        env.set(name, value.clone());
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        let data = if let Some(cm) = &from.config_map_ref {
            let data = sources.config_maps.get(&cm.name);
            if data.is_none() && cm.optional != Some(true) {
                return Err(format!("configmap \"{}\" not found", cm.name));
            }
            data
        } else if let Some(secret) = &from.secret_ref {
            let data = sources.secrets.get(&secret.name);
            if data.is_none() && secret.optional != Some(true) {
                return Err(format!("secret \"{}\" not found", secret.name));
            }
            data
        } else {
            continue;
        };
        for (key, value) in data.into_iter().flatten() {
            env.set(&format!("{prefix}{key}"), value.clone());
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => expand(var.value.as_deref().unwrap_or_default(), &|name| {
                env.get(name)
            }),
            Some(source) => {
                if let Some(field) = &source.field_ref {
                    field_value(pod, &field.field_path)?
                } else if let Some(key) = &source.config_map_key_ref {
                    match sources.config_maps.get(&key.name) {
                        None if key.optional == Some(true) => continue,
                        None => return Err(format!("configmap \"{}\" not found", key.name)),
                        Some(data) => match data.get(&key.key) {
                            Some(value) => value.clone(),
                            None if key.optional == Some(true) => continue,
                            None => {
                                return Err(format!(
                                    "couldn't find key {} in ConfigMap {namespace}/{}",
                                    key.key, key.name
                                ));
                            }
                        },
                    }
                } else if let Some(key) = &source.secret_key_ref {
                    match sources.secrets.get(&key.name) {
                        None if key.optional == Some(true) => continue,
                        None => return Err(format!("secret \"{}\" not found", key.name)),
                        Some(data) => match data.get(&key.key) {
                            Some(value) => value.clone(),
                            None if key.optional == Some(true) => continue,
                            None => {
                                return Err(format!(
                                    "couldn't find key {} in Secret {namespace}/{}",
                                    key.key, key.name
                                ));
                            }
                        },
                    }
                } else {
                    return Err(format!(
                        "env {}: only fieldRef, configMapKeyRef and secretKeyRef are supported by \
                         the test node agent",
                        var.name
                    ));
                }
            }
        };
        env.set(&var.name, value);
    }
    Ok(env.vars)
}

/// `command` and `args` with `$(VAR)` expanded against the resolved environment.
pub(crate) fn expand_all(items: Option<&Vec<String>>, env: &[(String, String)]) -> Vec<String> {
    let lookup = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    items
        .into_iter()
        .flatten()
        .map(|item| expand(item, &lookup))
        .collect()
}

#[derive(Default)]
struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    fn set(&mut self, name: &str, value: String) {
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name.to_owned(), value)),
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

/// The kubelet's expansion: `$(NAME)` becomes the variable's value when it is defined and
/// stays as written otherwise; `$$` is an escaped `$`; any other `$` is literal.
pub(crate) fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(open) = after.strip_prefix('(') {
            match open.find(')') {
                Some(close) => {
                    let name = &open[..close];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &open[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = open;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A downward-API field of the pod, as `fieldRef.fieldPath` names it.
pub(crate) fn field_value(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let status = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| -> Option<String> {
        let key = path
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let value = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()),
        "status.podIPs" => status.and_then(|s| s.pod_ips.as_ref()).map(|ips| {
            let ips: Vec<&str> = ips.iter().map(|ip| ip.ip.as_str()).collect();
            ips.join(",")
        }),
        "status.hostIPs" => status.and_then(|s| s.host_ips.as_ref()).map(|ips| {
            let ips: Vec<&str> = ips.iter().map(|ip| ip.ip.as_str()).collect();
            ips.join(",")
        }),
        _ => {
            return keyed("metadata.labels", meta.labels.as_ref())
                .or_else(|| keyed("metadata.annotations", meta.annotations.as_ref()))
                .ok_or_else(|| format!("unsupported fieldRef.fieldPath {path:?}"));
        }
    };
    Ok(value.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "IP" => Some("127.0.1.2".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expansion_follows_the_kubelet() {
        assert_eq!(expand("--bind=$(IP):80", &lookup), "--bind=127.0.1.2:80");
        assert_eq!(expand("$(MISSING)", &lookup), "$(MISSING)");
        assert_eq!(expand("$$(IP)", &lookup), "$(IP)");
        assert_eq!(expand("a$(EMPTY)b", &lookup), "ab");
        assert_eq!(expand("$HOME $ $(", &lookup), "$HOME $ $(");
        assert_eq!(expand("$(IP)$(IP)", &lookup), "127.0.1.2127.0.1.2");
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": "p", "namespace": "ns", "uid": "u-1",
                          "labels": { "app": "sfu" }, "annotations": { "a": "b" } },
            "spec": { "nodeName": "n1", "containers": [{
                "name": "main",
                "envFrom": [{ "configMapRef": { "name": "defaults" }, "prefix": "CM_" }],
                "env": [
                    { "name": "IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
                    { "name": "LISTEN", "value": "$(IP):4000" },
                    { "name": "APP", "valueFrom": { "fieldRef": { "fieldPath": "metadata.labels['app']" } } },
                    { "name": "TOKEN", "valueFrom": { "secretKeyRef": { "name": "s", "key": "token" } } },
                    { "name": "MODE", "valueFrom": { "configMapKeyRef": { "name": "defaults", "key": "mode" } } },
                    { "name": "OPT", "valueFrom": { "secretKeyRef": { "name": "gone", "key": "k", "optional": true } } },
                    { "name": "IMAGE_VAR", "value": "override" },
                ],
            }]},
            "status": { "podIP": "127.0.1.2", "hostIP": "127.0.1.2" },
        }))
        .unwrap()
    }

    #[test]
    fn environment_resolves_fields_keys_and_earlier_variables() {
        let pod = pod();
        let container = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            references(container),
            References {
                config_maps: ["defaults".to_owned()].into(),
                secrets: ["gone".to_owned(), "s".to_owned()].into(),
            }
        );
        let sources = Sources {
            config_maps: [("defaults".into(), [("mode".into(), "fast".into())].into())].into(),
            secrets: [("s".into(), [("token".into(), "t0k".into())].into())].into(),
        };
        let base = [("IMAGE_VAR".to_owned(), "image".to_owned())];
        let env = resolve(&pod, container, &base, &sources).unwrap();
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("IP"), Some("127.0.1.2"));
        assert_eq!(get("LISTEN"), Some("127.0.1.2:4000"));
        assert_eq!(get("APP"), Some("sfu"));
        assert_eq!(get("TOKEN"), Some("t0k"));
        assert_eq!(get("MODE"), Some("fast"));
        assert_eq!(get("CM_mode"), Some("fast"));
        assert_eq!(get("OPT"), None);
        assert_eq!(get("IMAGE_VAR"), Some("override"));
        assert_eq!(env[0].0, "IMAGE_VAR", "a redefinition keeps its place");

        let args = vec!["--listen=$(LISTEN)".to_owned(), "$(NOPE)".to_owned()];
        assert_eq!(
            expand_all(Some(&args), &env),
            ["--listen=127.0.1.2:4000", "$(NOPE)"]
        );
    }

    #[test]
    fn missing_sources_read_like_the_kubelet() {
        let pod = pod();
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let err = resolve(&pod, container, &[], &Sources::default()).unwrap_err();
        assert_eq!(err, "configmap \"defaults\" not found");
        let sources = Sources {
            config_maps: [("defaults".into(), [("mode".into(), "fast".into())].into())].into(),
            secrets: [("s".into(), BTreeMap::new())].into(),
        };
        let err = resolve(&pod, container, &[], &sources).unwrap_err();
        assert_eq!(err, "couldn't find key token in Secret ns/s");
    }

    #[test]
    fn downward_api_fields() {
        let pod = pod();
        assert_eq!(field_value(&pod, "metadata.namespace").unwrap(), "ns");
        assert_eq!(field_value(&pod, "spec.nodeName").unwrap(), "n1");
        assert_eq!(field_value(&pod, "status.hostIP").unwrap(), "127.0.1.2");
        assert_eq!(field_value(&pod, "metadata.annotations['a']").unwrap(), "b");
        assert_eq!(field_value(&pod, "metadata.labels['none']").unwrap(), "");
        assert!(field_value(&pod, "spec.bogus").is_err());
    }
}
