//! `Stage`: an event's main stage and its private backstage.
//!
//! Speakers and organisers rehearse in the backstage; nothing reaches the stage's watchers
//! until an organiser sets `broadcasting` (the Broadcast button), and it stops when they clear
//! it again.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Lifecycle, PodRestart};
use crate::limits;
use crate::relays::{Autoscaling, RelayPod};
use crate::session::{LivePhase, RecordingSummary};

/// The main stage of an event, with its backstage.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "roundtable.dev",
    version = "v1alpha1",
    kind = "Stage",
    namespaced,
    status = "StageStatus",
    shortname = "stg",
    category = "roundtable",
    doc = "An event's main stage with its private backstage.",
    scale(
        spec_replicas_path = ".spec.relays",
        status_replicas_path = ".status.relays",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Event", type_ = "string", json_path = ".spec.event"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Broadcasting",
        type_ = "boolean",
        json_path = ".spec.broadcasting"
    ),
    printcolumn(name = "On Camera", type_ = "integer", json_path = ".status.onCamera"),
    printcolumn(name = "Watching", type_ = "integer", json_path = ".status.watching"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint"),
    printcolumn(
        name = "Relays",
        type_ = "integer",
        json_path = ".status.relays",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!has(self.start) || !has(self.end) || self.end > self.start").message("end must be after start").field_path(".end"))]
#[x_kube(validation = Rule::new(limits::BACKSTAGE_CAP_CEL).message("at most 500 may watch the backstage (backstage.maxWatchers)").field_path(".backstage.maxWatchers"))]
#[x_kube(validation = Rule::new(limits::BACKSTAGE_RELAY_CAP_CEL).message("backstage.maxWatchers is too high: with autoscaling at most autoscaling.maxRelays × autoscaling.watchersPerRelay may watch").field_path(".backstage.maxWatchers"))]
#[serde(rename_all = "camelCase")]
pub struct StageSpec {
    /// Name of the LiveEvent (in the same namespace) this stage belongs to. Cannot change.
    #[x_kube(validation = Rule::new("self == oldSelf").message("a stage cannot move to another event; create a new Stage instead"))]
    #[schemars(length(min = 1, max = 253))]
    pub event: String,
    /// The stage's title.
    #[schemars(length(min = 1, max = 200))]
    pub title: String,
    /// A longer description, shown on the stage page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10000))]
    pub description: Option<String>,
    /// When the stage opens (the backstage is warm shortly before). Without it the stage waits
    /// for an organiser's Start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Time>,
    /// When the stage closes; must be after `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Time>,
    /// Scheduled (follow start/end), Started (an organiser's Start) or Ended.
    #[serde(default)]
    pub lifecycle: Lifecycle,
    /// The organiser's Broadcast button: while true the stage shows the backstage live.
    #[serde(default)]
    pub broadcasting: bool,
    /// The backstage's limits.
    #[serde(default)]
    pub backstage: Backstage,
    /// Record what the stage broadcasts.
    #[serde(default)]
    pub recording: bool,
    /// Relay SFU pods serving stage watchers, set through the scale subresource. Default 0.
    #[serde(
        default = "crate::relays::no_relays",
        skip_serializing_if = "Option::is_none"
    )]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 1000").message("relays must be between 0 and 1000"))]
    pub relays: Option<i32>,
    /// Viewer-count autoscaling of relay pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
}

impl StageSpec {
    /// The watcher limit in force: relays raise the backstage's cap only with autoscaling on.
    pub fn effective_watchers(&self) -> i32 {
        let relay_cap = self
            .autoscaling
            .as_ref()
            .and_then(|a| a.relay_cap(self.backstage.max_speakers));
        let cap = relay_cap.map_or(limits::BACKSTAGE_WATCHERS, |relays| {
            relays.max(limits::BACKSTAGE_WATCHERS)
        });
        self.backstage.max_watchers.clamp(0, cap)
    }
}

/// The backstage: a private room where speakers and organisers rehearse.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backstage {
    /// Most speakers on screen at once, 1 to 5 (default 5). Screen sharing is available while
    /// fewer than 5 are on screen.
    #[serde(default = "default_speakers")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 5").message("a backstage holds 1 to 5 speakers on screen (backstage.maxSpeakers)"))]
    pub max_speakers: i32,
    /// Most people watching the backstage preparation, up to 500 (default 500); with
    /// autoscaling on, up to `autoscaling.maxRelays × autoscaling.watchersPerRelay`.
    #[serde(default = "default_watchers")]
    #[x_kube(validation = Rule::new("self >= 0").message("backstage.maxWatchers cannot be negative"))]
    pub max_watchers: i32,
}

impl Default for Backstage {
    fn default() -> Self {
        Self {
            max_speakers: default_speakers(),
            max_watchers: default_watchers(),
        }
    }
}

fn default_speakers() -> i32 {
    limits::BACKSTAGE_SPEAKERS
}

fn default_watchers() -> i32 {
    limits::BACKSTAGE_WATCHERS
}

/// What the operator observes of a stage.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageStatus {
    /// Scheduled, Starting, Live, Draining, Ended or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<LivePhase>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, PodScheduled, Degraded and problems with other objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Whether the stage is showing the backstage live now (the live indicator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<bool>,
    /// Where browsers reach the stage's SFU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Speakers on screen in the backstage now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_camera: Option<i32>,
    /// People watching the stage (or the backstage preparation) now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watching: Option<i32>,
    /// Most people watching at once so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_watching: Option<i32>,
    /// Relay SFU pods that are ready (scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relays: Option<i32>,
    /// Label selector of the stage's relay pods (scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The relay pods, with their endpoint and the watchers each serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relay_pods: Vec<RelayPod>,
    /// Watchers one relay pod takes (`autoscaling.watchersPerRelay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchers_per_pod: Option<i32>,
    /// Since when fewer relays would have been enough: the autoscaler removes a relay once
    /// this is `autoscaling.scaleDownDelaySeconds` old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower_since: Option<Time>,
    /// Recordings of the stage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recordings: Vec<RecordingSummary>,
    /// How many times the operator replaced the SFU pod after it failed or vanished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<i32>,
    /// The last replacement of the SFU pod, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restart: Option<PodRestart>,
    /// The last move an organiser asked for (`roundtable.dev/move-requested-at`).
    #[serde(default, rename = "move", skip_serializing_if = "Option::is_none")]
    pub pod_move: Option<crate::common::PodMove>,
}
