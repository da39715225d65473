//! Relay SFU pods: what a session or stage asks for (`spec.autoscaling`) and what its status
//! reports of them (`status.relayPods`).
//!
//! A live room has one origin pod (the people on camera, the room's rules) and 0..N relay
//! pods that serve watchers. `spec.relays` is the scale subresource's replicas: set by the
//! operator's own autoscaler when `autoscaling.enabled`, otherwise by a
//! HorizontalPodAutoscaler, KEDA or `kubectl scale`.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::limits;

/// Viewer-count autoscaling of a room's relay pods:
/// `relays = ceil((watching + headroom) / watchersPerRelay)` within `[minRelays, maxRelays]`,
/// growing at once and shrinking only after `scaleDownDelaySeconds`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.minRelays <= self.maxRelays").message("autoscaling.minRelays must not exceed autoscaling.maxRelays").field_path(".minRelays"))]
#[serde(rename_all = "camelCase")]
pub struct Autoscaling {
    /// Whether the operator scales relays from the live watching count. Leave it off to drive
    /// `spec.relays` from a HorizontalPodAutoscaler or KEDA instead (the relays' capacity
    /// still counts towards the watcher cap only when it is on).
    #[serde(default)]
    pub enabled: bool,
    /// Fewest relay pods while the room is live (default 0).
    #[serde(default)]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 1000").message("autoscaling.minRelays must be between 0 and 1000"))]
    pub min_relays: i32,
    /// Most relay pods (default 10). With autoscaling on, `maxWatchers` may go up to
    /// `maxRelays × watchersPerRelay`.
    #[serde(default = "default_max_relays")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000").message("autoscaling.maxRelays must be between 1 and 1000"))]
    pub max_relays: i32,
    /// Watchers one relay pod carries (default 500, at most 500; with more than 10 on camera
    /// a relay takes at most 150).
    #[serde(default = "default_watchers_per_relay")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 500").message("autoscaling.watchersPerRelay must be between 1 and 500"))]
    pub watchers_per_relay: i32,
    /// Free places kept on the relays so that joiners never wait for a pod (default 50).
    #[serde(default = "default_headroom")]
    #[x_kube(validation = Rule::new("self >= 0").message("autoscaling.headroom cannot be negative"))]
    pub headroom: i32,
    /// How long fewer relays must have been enough before one is removed (default 300).
    #[serde(default = "default_scale_down_delay")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 86400").message("autoscaling.scaleDownDelaySeconds must be between 0 and 86400"))]
    pub scale_down_delay_seconds: i32,
}

impl Default for Autoscaling {
    fn default() -> Self {
        Autoscaling {
            enabled: false,
            min_relays: 0,
            max_relays: default_max_relays(),
            watchers_per_relay: default_watchers_per_relay(),
            headroom: default_headroom(),
            scale_down_delay_seconds: default_scale_down_delay(),
        }
    }
}

impl Autoscaling {
    /// The watcher cap the relays allow with `max_on_camera` people on camera, when
    /// autoscaling is on.
    pub fn relay_cap(&self, max_on_camera: i32) -> Option<i32> {
        self.enabled
            .then(|| limits::relay_cap(max_on_camera, self.max_relays, self.watchers_per_relay))
    }
}

/// `spec.relays` when unset: no relay pods. A default in the schema lets the scale subresource
/// (HPA, KEDA, `kubectl scale`) read a session that never set it.
pub(crate) fn no_relays() -> Option<i32> {
    Some(0)
}

fn default_max_relays() -> i32 {
    10
}

fn default_watchers_per_relay() -> i32 {
    limits::SMALL_ROOM_WATCHERS
}

fn default_headroom() -> i32 {
    50
}

fn default_scale_down_delay() -> i32 {
    300
}

/// One relay pod as the operator last saw it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RelayPod {
    /// The pod's name (`<origin pod>-relay-<i>`).
    pub name: String,
    /// Where browsers reach the relay (host:port), once it has a node and port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Whether the relay is connected to the origin and takes joins.
    pub ready: bool,
    /// Watchers connected to this relay, from its `/stats`.
    #[serde(default)]
    pub watching: i32,
}
