//! Reading what exists: the state of a room's pod and the live counts on its `/stats`.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;

use crate::plan::decide::{Counts, PodState};

/// The planning view of a pod.
pub fn pod_state(pod: &Pod) -> PodState {
    if pod.metadata.deletion_timestamp.is_some() {
        return PodState::Terminating;
    }
    let status = pod.status.clone().unwrap_or_default();
    let conditions = status.conditions.unwrap_or_default();
    let condition = |type_: &str| conditions.iter().find(|c| c.type_ == type_);
    match status.phase.as_deref() {
        Some("Failed") | Some("Succeeded") => {
            let terminated = status
                .container_statuses
                .iter()
                .flatten()
                .find_map(|c| c.state.as_ref()?.terminated.clone());
            let message = match terminated {
                Some(t) => format!(
                    "sfu-node exited with code {}{}",
                    t.exit_code,
                    t.reason.map(|r| format!(" ({r})")).unwrap_or_default()
                ),
                None => status.message.unwrap_or_else(|| "the pod stopped".into()),
            };
            PodState::Exited { message }
        }
        _ if pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_none() =>
        {
            let unschedulable = condition("PodScheduled")
                .filter(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
                .and_then(|c| c.message.clone());
            PodState::Unscheduled { unschedulable }
        }
        _ => {
            let ready = condition("Ready").is_some_and(|c| c.status == "True");
            let stuck = status
                .container_statuses
                .iter()
                .flatten()
                .filter_map(|c| c.state.as_ref()?.waiting.clone())
                .find(|w| w.reason.as_deref().is_some_and(|r| STUCK.contains(&r)));
            match stuck {
                Some(waiting) if !ready => PodState::Stuck {
                    reason: waiting.reason.unwrap_or_default(),
                    message: waiting
                        .message
                        .unwrap_or_else(|| "the kubelet gave no detail".into()),
                },
                _ => PodState::Running { ready },
            }
        }
    }
}

/// Reasons a kubelet gives for a container it cannot start until a person fixes something
/// (a missing Secret or ConfigMap, an image that cannot be pulled, a crashing binary).
const STUCK: [&str; 8] = [
    "CreateContainerConfigError",
    "CreateContainerError",
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "RunContainerError",
];

/// What sfu-node's `/stats` reports (the fields the operator reads).
#[derive(Debug, Deserialize)]
struct Stats {
    counts: StatsCounts,
    #[serde(default)]
    unique_joiners: Option<i32>,
    #[serde(default)]
    peak_watching: Option<i32>,
    #[serde(default)]
    peak_on_camera: Option<i32>,
    #[serde(default)]
    broadcasting: bool,
}

#[derive(Debug, Deserialize)]
struct StatsCounts {
    on_camera: i32,
    watching: i32,
}

/// Reads the live counts of a ready pod; `None` when it cannot be read (the status keeps the
/// last counts then).
pub async fn counts(http: &reqwest::Client, pod: &Pod, admin_port: u16) -> Option<Counts> {
    let ip = pod.status.as_ref()?.pod_ip.as_ref()?;
    read_stats(http, &format!("{ip}:{admin_port}"), Duration::from_secs(2)).await
}

/// Asks the sfu-node of `pod` to send its people away (`POST /leave` on its admin port): it
/// stops taking joins, tells everyone to re-join through the control plane and closes them a
/// second later. Repeating it changes nothing.
pub async fn ask_to_leave(
    http: &reqwest::Client,
    pod: &Pod,
    admin_port: u16,
) -> Result<(), String> {
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_ref())
        .ok_or("the pod has no IP")?;
    http.post(format!("http://{ip}:{admin_port}/leave"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Reads an sfu-node's `/stats` at its admin address (`host:port`).
pub async fn read_stats(http: &reqwest::Client, admin: &str, timeout: Duration) -> Option<Counts> {
    let response = http
        .get(format!("http://{admin}/stats"))
        .timeout(timeout)
        .send()
        .await
        .ok()?;
    let stats: Stats = response.error_for_status().ok()?.json().await.ok()?;
    Some(Counts {
        on_camera: stats.counts.on_camera,
        watching: stats.counts.watching,
        unique_joiners: stats.unique_joiners,
        peak_watching: stats.peak_watching,
        peak_on_camera: stats.peak_on_camera,
        broadcasting: stats.broadcasting,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "session-panel"},
            "spec": {"nodeName": "node-a", "containers": [{"name": "sfu-node"}]},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_container_the_kubelet_cannot_start_is_stuck_with_the_kubelets_words() {
        let waiting = pod(serde_json::json!({
            "phase": "Pending",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{
                "name": "sfu-node", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                "state": {"waiting": {
                    "reason": "CreateContainerConfigError",
                    "message": "secret \"roundtable-join-token\" not found"
                }}
            }]
        }));
        assert_eq!(
            pod_state(&waiting),
            PodState::Stuck {
                reason: "CreateContainerConfigError".into(),
                message: "secret \"roundtable-join-token\" not found".into()
            }
        );
    }

    #[test]
    fn a_container_still_being_created_is_only_starting() {
        let creating = pod(serde_json::json!({
            "phase": "Pending",
            "containerStatuses": [{
                "name": "sfu-node", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                "state": {"waiting": {"reason": "ContainerCreating"}}
            }]
        }));
        assert_eq!(pod_state(&creating), PodState::Running { ready: false });
    }
}
