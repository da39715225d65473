//! `LiveEvent`: an event with its ticket types, organisers and SFU pod defaults.
//!
//! Named `LiveEvent` rather than `Event` so that `kubectl get events` keeps meaning core
//! Kubernetes Events.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{RecordingStorage, SfuPodSettings};

/// An event: its sessions, stage and attendees live under it. Sessions and stages name it in
/// `spec.event`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "roundtable.dev",
    version = "v1alpha1",
    kind = "LiveEvent",
    namespaced,
    status = "LiveEventStatus",
    shortname = "lev",
    category = "roundtable",
    doc = "A live virtual event: parallel sessions, a stage and its attendees.",
    printcolumn(name = "Title", type_ = "string", json_path = ".spec.title"),
    printcolumn(name = "Start", type_ = "string", json_path = ".spec.start"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Sessions Live",
        type_ = "integer",
        json_path = ".status.sessionsLive"
    ),
    printcolumn(name = "Watching", type_ = "integer", json_path = ".status.watching"),
    printcolumn(name = "On Camera", type_ = "integer", json_path = ".status.onCamera"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.end > self.start").message("end must be after start").field_path(".end"))]
#[serde(rename_all = "camelCase")]
pub struct LiveEventSpec {
    /// The event's title, shown on the event page.
    #[schemars(length(min = 1, max = 200))]
    pub title: String,
    /// A longer description, shown on the event page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10000))]
    pub description: Option<String>,
    /// URL of the cover image shown at the top of the event page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://') || self.startsWith('/')").message("coverImage must be an http(s) URL or a path on the Roundtable server"))]
    #[schemars(length(max = 2048))]
    pub cover_image: Option<String>,
    /// When the event starts (RFC 3339, e.g. 2026-12-03T18:00:00Z).
    pub start: Time,
    /// When the event ends; must be after `start`. Recordings are offered for download from
    /// then on.
    pub end: Time,
    /// The kinds of tickets attendees hold, e.g. `general` and `vip`. Sessions may be limited
    /// to holders of some of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(max = 50))]
    pub ticket_types: Vec<TicketType>,
    /// Identities (as issued by the registration system, usually email addresses) of the
    /// event's organisers: they create, start and delete sessions, broadcast the stage and
    /// download recordings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(max = 100), inner(length(min = 1, max = 254)))]
    pub organizers: Vec<String>,
    /// Whether attendees may create sessions themselves (and make themselves moderator).
    #[serde(default)]
    pub attendees_may_create_sessions: bool,
    /// Whether the event has an event-wide chat, beside each session's own chat.
    #[serde(default = "default_true")]
    pub chat: bool,
    /// Defaults for the SFU pods of the event's sessions and stage: placement, resources and
    /// media network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sfu: Option<SfuPodSettings>,
    /// Where the event's recordings are stored. Required for sessions with recording on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_storage: Option<RecordingStorage>,
}

fn default_true() -> bool {
    true
}

/// A kind of ticket to the event.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketType {
    /// Short name that sessions refer to in `watch.ticketTypes`, e.g. `vip`.
    #[x_kube(validation = Rule::new(crate::common::DNS_LABEL_CEL).message("a ticket type name must be lowercase letters, digits and '-', starting and ending with a letter or digit"))]
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Name shown to people, e.g. "VIP pass".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    pub title: Option<String>,
}

/// Phase of an event.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum LiveEventPhase {
    /// Before `start`.
    Upcoming,
    /// Between `start` and `end`.
    Live,
    /// After `end`: the event report with recordings is available.
    Ended,
}

/// What the operator observes of an event and its sessions.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiveEventStatus {
    /// Upcoming, Live or Ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<LiveEventPhase>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Degraded and problems with the event's spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Sessions of the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<i32>,
    /// Sessions live now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_live: Option<i32>,
    /// People watching across the event's sessions and stage now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watching: Option<i32>,
    /// People on camera across the event's sessions and stage now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_camera: Option<i32>,
    /// Recordings of the event's sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recordings: Option<i32>,
}
