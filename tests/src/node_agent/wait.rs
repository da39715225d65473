//! Waiting for a pod to reach a state, for tests.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use crate::error::{Error, Result};

/// Whether the pod's `Ready` condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Polls pod `name` every 100 ms until `condition` holds and returns it, or fails after
/// `timeout` with the pod's last status. `what` names the condition for the error.
pub async fn wait_for_pod(
    pods: &Api<Pod>,
    name: &str,
    timeout: Duration,
    what: &str,
    condition: impl Fn(&Pod) -> bool,
) -> Result<Pod> {
    let begun = Instant::now();
    loop {
        let last = match pods.get_opt(name).await? {
            Some(pod) if condition(&pod) => return Ok(pod),
            Some(pod) => serde_json::to_string_pretty(&pod.status).unwrap_or_default(),
            None => "the pod does not exist".to_owned(),
        };
        if begun.elapsed() > timeout {
            return Err(Error::Command {
                command: format!("waiting for pod {name} to be {what}"),
                detail: format!("not within {}s; last status: {last}", timeout.as_secs()),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
