//! Registering Nodes and keeping them alive: the Node object with its capacity and Ready
//! condition, and a Lease per node in `kube-node-lease` renewed like the kubelet's, so the
//! node lifecycle controller of kube-controller-manager never marks them unreachable.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use crate::error::Result;

use super::FIELD_MANAGER;

const STARTUP_TAINT: &str = "node.kubernetes.io/not-ready";
/// How long a lease is valid; the kubelet's default.
const LEASE_SECONDS: i32 = 40;

/// A node to register: its name, labels, taints and capacity.
///
/// Nodes are cluster-wide, and the scheduler places any pod on any fitting node: tests that
/// run at the same time in one binary keep their pods apart with a label or taint of their
/// own (and unique node names).
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    /// Includes `kubernetes.io/hostname`, `kubernetes.io/os` and `kubernetes.io/arch`.
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// Capacity and allocatable, e.g. `"4"` CPUs, `"8Gi"` memory, `"110"` pods.
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
}

impl NodeSpec {
    /// A node with 4 CPUs, 8 GiB, room for 110 pods, the well-known labels and no taints.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let labels = [
            ("kubernetes.io/hostname", name.as_str()),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", arch),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
        Self {
            name,
            labels,
            taints: Vec::new(),
            cpu: "4".into(),
            memory: "8Gi".into(),
            pods: 110,
        }
    }

    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// A taint with `effect` `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub fn taint(mut self, key: impl Into<String>, value: impl Into<String>, effect: &str) -> Self {
        self.taints.push(Taint {
            key: key.into(),
            value: Some(value.into()).filter(|v: &String| !v.is_empty()),
            effect: effect.to_owned(),
            time_added: None,
        });
        self
    }

    pub fn cpu(mut self, quantity: impl Into<String>) -> Self {
        self.cpu = quantity.into();
        self
    }

    pub fn memory(mut self, quantity: impl Into<String>) -> Self {
        self.memory = quantity.into();
        self
    }

    pub fn pods(mut self, pods: u32) -> Self {
        self.pods = pods;
        self
    }
}

/// The Node object (without status) as the agent applies it.
pub(crate) fn node_object(spec: &NodeSpec) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": spec.name, "labels": spec.labels },
        "spec": { "taints": spec.taints },
    })
}

/// The node's status at `now`: capacity, a Ready condition that has been true since
/// `ready_since`, its address and what runs it.
pub(crate) fn node_status(
    spec: &NodeSpec,
    ip: Ipv4Addr,
    ready_since: Timestamp,
    now: Timestamp,
) -> serde_json::Value {
    let resources = json!({
        "cpu": spec.cpu,
        "memory": spec.memory,
        "pods": spec.pods.to_string(),
        "ephemeral-storage": "100Gi",
    });
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": Time(now),
            "lastTransitionTime": Time(ready_since),
        })
    };
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                condition("Ready", "True", "KubeletReady",
                          "the roundtable test node agent is posting ready status"),
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "no pressure"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "no pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "no pressure"),
            ],
            "addresses": [
                { "type": "InternalIP", "address": ip.to_string() },
                { "type": "Hostname", "address": spec.name },
            ],
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": "",
                "osImage": "roundtable test node agent",
                "containerRuntimeVersion": "roundtable-node-agent://0.1.0",
                "kubeletVersion": "v1.36.0",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": spec.labels.get("kubernetes.io/arch").cloned().unwrap_or_default(),
            },
            "daemonEndpoints": { "kubeletEndpoint": { "Port": 0 } },
        },
    })
}

/// The node's lease, renewed at `now`, owned by its Node so it goes when the Node goes.
pub(crate) fn lease_object(name: &str, node_uid: &str, now: Timestamp) -> serde_json::Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": "kube-node-lease",
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid,
            }],
        },
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": MicroTime(now),
        },
    })
}

/// A registered node: what the agent needs to keep it alive.
#[derive(Debug)]
pub(crate) struct Registered {
    pub(crate) spec: NodeSpec,
    pub(crate) ip: Ipv4Addr,
    pub(crate) uid: String,
    pub(crate) ready_since: Timestamp,
}

fn apply() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Creates (or takes over) the Node, reports it Ready and takes its lease.
pub(crate) async fn register(client: &Client, spec: NodeSpec, ip: Ipv4Addr) -> Result<Registered> {
    let nodes = Api::<Node>::all(client.clone());
    let node = nodes
        .patch(&spec.name, &apply(), &Patch::Apply(node_object(&spec)))
        .await?;
    let registered = Registered {
        uid: node.metadata.uid.clone().unwrap_or_default(),
        spec,
        ip,
        ready_since: Timestamp::now(),
    };
    heartbeat(client, &registered).await?;
    // Admission taints every new Node `node.kubernetes.io/not-ready` until the node lifecycle
    // controller sees it Ready. Lift it now that it is, so tests need no controller-manager
    // to schedule, and do not wait for one.
    let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
    if taints.iter().any(|t| t.key == STARTUP_TAINT) {
        let kept: Vec<&Taint> = taints.iter().filter(|t| t.key != STARTUP_TAINT).collect();
        nodes
            .patch(
                &registered.spec.name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "taints": kept } })),
            )
            .await?;
    }
    Ok(registered)
}

/// Renews the lease and refreshes the Ready condition's heartbeat.
pub(crate) async fn heartbeat(client: &Client, node: &Registered) -> Result<()> {
    let now = Timestamp::now();
    let name = &node.spec.name;
    Api::<Node>::all(client.clone())
        .patch_status(
            name,
            &apply(),
            &Patch::Apply(node_status(&node.spec, node.ip, node.ready_since, now)),
        )
        .await?;
    Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
        .patch(
            name,
            &apply(),
            &Patch::Apply(lease_object(name, &node.uid, now)),
        )
        .await?;
    Ok(())
}

/// Deletes the Node and its lease; a missing one is fine.
pub(crate) async fn deregister(client: &Client, name: &str) -> Result<()> {
    let gone = |r: Result<(), kube::Error>| match r {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => other,
    };
    gone(
        Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
            .delete(name, &DeleteParams::default())
            .await
            .map(drop),
    )?;
    gone(
        Api::<Node>::all(client.clone())
            .delete(name, &DeleteParams::default())
            .await
            .map(drop),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reports_capacity_address_and_a_fresh_heartbeat() {
        let spec = NodeSpec::new("n1").cpu("2").memory("1Gi").pods(3);
        let since: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let now: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        let status = &node_status(&spec, Ipv4Addr::new(127, 0, 1, 1), since, now)["status"];
        assert_eq!(status["allocatable"]["cpu"], "2");
        assert_eq!(status["capacity"]["pods"], "3");
        assert_eq!(status["addresses"][0]["address"], "127.0.1.1");
        let ready = &status["conditions"][0];
        assert_eq!(ready["type"], "Ready");
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["lastHeartbeatTime"], "2026-01-01T00:05:00Z");
        assert_eq!(ready["lastTransitionTime"], "2026-01-01T00:00:00Z");
    }

    #[test]
    fn spec_builder_keeps_well_known_labels() {
        let spec = NodeSpec::new("n1")
            .label("pool", "media")
            .taint("dedicated", "media", "NoSchedule")
            .taint("flag", "", "NoExecute");
        assert_eq!(spec.labels["kubernetes.io/hostname"], "n1");
        assert_eq!(spec.labels["pool"], "media");
        assert_eq!(spec.taints[0].value.as_deref(), Some("media"));
        assert_eq!(spec.taints[1].value, None);
        let node = node_object(&spec);
        assert_eq!(node["spec"]["taints"][0]["effect"], "NoSchedule");
    }
}
