//! `Room`: a standalone meeting room owned by a host, reached at `/<host>/<slug>`.
//!
//! Rooms run on demand: the operator starts an SFU pod when someone wants to join and stops it
//! after the room has been empty for a while. `host` and `slug` form the room's URL and never
//! change.

use k8s_openapi::api::core::v1::SecretKeySelector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{DNS_LABEL_CEL, SfuPodSettings};
use crate::limits;

/// A standalone meeting room; anyone with the link may join without an account, subject to
/// its lock, passcode and email-domain rules.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "roundtable.dev",
    version = "v1alpha1",
    kind = "Room",
    namespaced,
    status = "RoomStatus",
    shortname = "rms",
    category = "roundtable",
    doc = "A standalone meeting room at /<host>/<slug>.",
    printcolumn(name = "Host", type_ = "string", json_path = ".spec.host"),
    printcolumn(name = "Slug", type_ = "string", json_path = ".spec.slug"),
    printcolumn(name = "Theme", type_ = "string", json_path = ".spec.theme"),
    printcolumn(name = "Locked", type_ = "boolean", json_path = ".spec.locked"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "On Camera", type_ = "integer", json_path = ".status.onCamera"),
    printcolumn(name = "Watching", type_ = "integer", json_path = ".status.watching"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new(crate::limits::WATCHER_CAP_CEL).message("maxWatchers is too high: with up to 10 on camera (maxParticipants) at most 500 may watch, with 11 to 20 on camera at most 150").field_path(".maxWatchers"))]
#[serde(rename_all = "camelCase")]
pub struct RoomSpec {
    /// The host's URL slug: the first part of the room's URL. A DNS label; cannot change.
    #[x_kube(validation = Rule::new(DNS_LABEL_CEL).message("host must be a slug: lowercase letters, digits and '-', starting and ending with a letter or digit"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("host is part of the room's URL and cannot change; create a new Room instead"))]
    #[schemars(length(min = 1, max = 63))]
    pub host: String,
    /// The room's URL slug: `/<host>/<slug>`. A DNS label; cannot change.
    #[x_kube(validation = Rule::new(DNS_LABEL_CEL).message("slug must be lowercase letters, digits and '-', starting and ending with a letter or digit"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("slug is part of the room's URL and cannot change; create a new Room instead"))]
    #[schemars(length(min = 1, max = 63))]
    pub slug: String,
    /// The room's title, shown to joiners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    pub title: Option<String>,
    /// Identities of the room's hosts (the owner's account first). Hosts are notified of
    /// ask-to-join requests in a locked room and may accept or deny them.
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[x_kube(validation = Rule::new("size(self) > 0").message("a room needs at least one host in hosts"))]
    #[schemars(length(max = 50), inner(length(min = 1, max = 254)))]
    pub hosts: Vec<String>,
    /// Meeting (everyone may go on camera) or Webinar (only hosts publish; attendees watch and
    /// skip the device check).
    #[serde(default)]
    pub theme: RoomTheme,
    /// A locked room lets people in only when a host accepts their "Ask to join".
    #[serde(default)]
    pub locked: bool,
    /// A Secret key holding the room's passcode. When set, joiners whose link does not carry
    /// the passcode are asked for it before the name label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passcode: Option<SecretKeySelector>,
    /// When set, only people with an email address in one of these domains may join: they
    /// receive a unique access link by email.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[x_kube(validation = Rule::new("self.all(d, d.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?[.])+[a-z][-a-z0-9]*[a-z0-9]$'))").message("allowedEmailDomains must be lowercase domain names such as example.com"))]
    #[schemars(length(max = 100), inner(length(min = 1, max = 253)))]
    pub allowed_email_domains: Vec<String>,
    /// Most people on camera at once, 1 to 20 (default 10).
    #[serde(default = "default_max_participants")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 20").message("maxParticipants must be between 1 and 20 people on camera"))]
    pub max_participants: i32,
    /// Most people watching at once (webinar attendees). Defaults to the cap: 500 with up to
    /// 10 on camera, 150 with 11 to 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("maxWatchers cannot be negative"))]
    pub max_watchers: Option<i32>,
    /// How long an empty room keeps its SFU pod before scaling to zero (default 300 seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 86400").message("idleTimeoutSeconds must be between 0 and 86400"))]
    pub idle_timeout_seconds: Option<i32>,
    /// Placement, resources and media network of the room's SFU pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sfu: Option<SfuPodSettings>,
}

fn default_max_participants() -> i32 {
    limits::DEFAULT_ON_CAMERA
}

/// How a room looks and who publishes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RoomTheme {
    /// Everyone may go on camera.
    #[default]
    Meeting,
    /// Only hosts publish; attendees watch.
    Webinar,
}

/// Phase of a room.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RoomPhase {
    /// Nobody wants to join; no SFU pod runs.
    Idle,
    /// Someone wants to join and the SFU pod is starting.
    Starting,
    /// The SFU pod is ready.
    Live,
    /// Empty past its idle timeout, or being removed: no new joins.
    Draining,
    /// Cannot run; the conditions say why.
    Failed,
}

/// What the operator observes of a room.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomStatus {
    /// Idle, Starting, Live, Draining or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RoomPhase>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, PodScheduled, Degraded and problems with other objects (a missing passcode
    /// Secret).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The room's path on the Roundtable server, `/<host>/<slug>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Where browsers reach the room's SFU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// People on camera now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_camera: Option<i32>,
    /// People watching now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watching: Option<i32>,
    /// When someone last wanted to join or was in the room; the idle timeout counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active: Option<Time>,
    /// How many times the operator replaced the SFU pod after it failed or vanished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<i32>,
    /// The last replacement of the SFU pod, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restart: Option<crate::common::PodRestart>,
    /// The last move an organiser asked for (`roundtable.dev/move-requested-at`).
    #[serde(default, rename = "move", skip_serializing_if = "Option::is_none")]
    pub pod_move: Option<crate::common::PodMove>,
}
