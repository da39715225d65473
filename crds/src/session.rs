//! `Session`: a roundtable inside an event.
//!
//! Up to 10 people on camera with up to 500 watching by default; `maxParticipants` may go up
//! to 20, and then at most 150 may watch (see [`crate::limits`]).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Lifecycle, PodRestart, SharePolicy, WatchPolicy};
use crate::limits;
use crate::relays::{Autoscaling, RelayPod};

/// A roundtable: a live video room inside an event, with its own chat, rules for who goes on
/// camera and who watches, and optional recording.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "roundtable.dev",
    version = "v1alpha1",
    kind = "Session",
    namespaced,
    status = "SessionStatus",
    shortname = "ses",
    category = "roundtable",
    doc = "A roundtable: a live video session inside a LiveEvent.",
    scale(
        spec_replicas_path = ".spec.relays",
        status_replicas_path = ".status.relays",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Event", type_ = "string", json_path = ".spec.event"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "On Camera", type_ = "integer", json_path = ".status.onCamera"),
    printcolumn(name = "Watching", type_ = "integer", json_path = ".status.watching"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint"),
    printcolumn(
        name = "Restarts",
        type_ = "integer",
        json_path = ".status.restarts",
        priority = 1
    ),
    printcolumn(
        name = "Relays",
        type_ = "integer",
        json_path = ".status.relays",
        priority = 1
    ),
    printcolumn(
        name = "Share",
        type_ = "string",
        json_path = ".spec.share.policy",
        priority = 1
    ),
    printcolumn(
        name = "Start",
        type_ = "string",
        json_path = ".spec.start",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!has(self.start) || !has(self.end) || self.end > self.start").message("end must be after start").field_path(".end"))]
#[x_kube(validation = Rule::new(limits::SESSION_WATCHER_CAP_CEL).message("maxWatchers is too high: with up to 10 on camera (maxParticipants) at most 500 may watch, with 11 to 20 on camera at most 150").field_path(".maxWatchers"))]
#[x_kube(validation = Rule::new("has(self.createdBy) == has(oldSelf.createdBy) && (!has(self.createdBy) || self.createdBy == oldSelf.createdBy)").message("createdBy cannot change, be added or be removed after the session is created").field_path(".createdBy"))]
#[x_kube(validation = Rule::new(limits::RELAY_CAP_CEL).message("maxWatchers is too high: with autoscaling at most autoscaling.maxRelays × autoscaling.watchersPerRelay may watch").field_path(".maxWatchers"))]
#[serde(rename_all = "camelCase")]
pub struct SessionSpec {
    /// Name of the LiveEvent (in the same namespace) this session belongs to. Cannot change.
    #[x_kube(validation = Rule::new("self == oldSelf").message("a session cannot move to another event; create a new Session instead"))]
    #[schemars(length(min = 1, max = 253))]
    pub event: String,
    /// The session's title, shown in the event's list of sessions.
    #[schemars(length(min = 1, max = 200))]
    pub title: String,
    /// A longer description, shown on the session page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10000))]
    pub description: Option<String>,
    /// When the session starts. Without it the session waits for an organiser's Start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Time>,
    /// When the session ends; must be after `start`. Without it the session runs until an
    /// organiser ends it or the event ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Time>,
    /// Scheduled (follow start/end), Started (an organiser's Start) or Ended (an organiser
    /// ended it).
    #[serde(default)]
    pub lifecycle: Lifecycle,
    /// Who may go on camera.
    #[serde(default)]
    pub share: Share,
    /// Who may watch.
    #[serde(default)]
    pub watch: Watch,
    /// Most people on camera at once, 1 to 20 (default 10). Above 10, at most 150 may watch.
    #[serde(default = "default_max_participants")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 20").message("maxParticipants must be between 1 and 20 people on camera"))]
    pub max_participants: i32,
    /// Most people watching at once. Defaults to the cap: 500 with up to 10 on camera, 150
    /// with 11 to 20. Cannot be set above the cap, except with autoscaling on: then up to
    /// `autoscaling.maxRelays × autoscaling.watchersPerRelay`, served by relay pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("maxWatchers cannot be negative"))]
    pub max_watchers: Option<i32>,
    /// Record the session: recording starts when someone goes on camera (see the README for
    /// the pause and stop rules). Needs `recordingStorage` on the event.
    #[serde(default)]
    pub recording: bool,
    /// Identity of the attendee who created the session, when it was not an organiser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 254))]
    pub created_by: Option<String>,
    /// Number of relay SFU pods serving watchers, set through the scale subresource (by a
    /// HorizontalPodAutoscaler, KEDA, or the operator's own autoscaler). Default 0.
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

impl SessionSpec {
    /// The watcher limit in force: relays raise the cap only with autoscaling on.
    pub fn effective_watchers(&self) -> i32 {
        limits::effective_watchers_with_relays(
            self.max_participants,
            self.max_watchers,
            self.autoscaling
                .as_ref()
                .and_then(|a| a.relay_cap(self.max_participants)),
        )
    }
}

fn default_max_participants() -> i32 {
    limits::DEFAULT_ON_CAMERA
}

/// Who may go on camera in a session.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.policy != 'Moderated' || size(self.moderators) > 0").message("a Moderated session needs at least one moderator in share.moderators").field_path(".moderators"))]
#[x_kube(validation = Rule::new("self.policy != 'InviteOnly' || size(self.invitees) > 0").message("an InviteOnly session needs at least one person in share.invitees").field_path(".invitees"))]
#[serde(rename_all = "camelCase")]
pub struct Share {
    /// `Open`: anyone who may watch may press "Share audio and video". `Moderated`: attendees
    /// press "Request to share audio and video" and a moderator lets them on camera with one
    /// click (and may remove anyone from camera); needs `moderators`. `InviteOnly`: only the
    /// people in `invitees` may share.
    #[serde(default)]
    pub policy: SharePolicy,
    /// Registered attendees (identities, usually email addresses) who see the moderation panel:
    /// they approve requests to share and remove anyone from camera. Required for Moderated.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(max = 100), inner(length(min = 1, max = 254)))]
    pub moderators: Vec<String>,
    /// People (identities) who may share in an InviteOnly session, usually the speakers.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 254)))]
    pub invitees: Vec<String>,
}

/// Who may watch a session.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.policy != 'TicketTypes' || size(self.ticketTypes) > 0").message("watch.policy TicketTypes needs at least one ticket type in watch.ticketTypes").field_path(".ticketTypes"))]
#[x_kube(validation = Rule::new("self.policy == 'TicketTypes' || size(self.ticketTypes) == 0").message("watch.ticketTypes only applies with watch.policy TicketTypes; set the policy or remove the list").field_path(".ticketTypes"))]
#[serde(rename_all = "camelCase")]
pub struct Watch {
    /// AnyTicket (anyone with a ticket to the event) or TicketTypes (only holders of the
    /// listed ticket types; the session is hidden from everyone else).
    #[serde(default)]
    pub policy: WatchPolicy,
    /// Names of the event's ticket types whose holders may watch, for policy TicketTypes.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(max = 50), inner(length(min = 1, max = 63)))]
    pub ticket_types: Vec<String>,
}

/// Phase of a session or stage.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum LivePhase {
    /// Waiting for its start time or an organiser's Start.
    Scheduled,
    /// Its SFU pod is being scheduled and started.
    Starting,
    /// Its SFU pod is ready and people can join.
    Live,
    /// Ending: new joins are refused, people still connected may stay for the grace period.
    Draining,
    /// Over.
    Ended,
    /// Cannot run; the conditions say why.
    Failed,
}

/// State of one recording.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RecordingState {
    /// Capturing while someone is on camera.
    Recording,
    /// Nobody on camera; resumes in the same file if someone comes back within an hour.
    Paused,
    /// Being composed into the MP4.
    Processing,
    /// The MP4 is ready for download.
    Complete,
    /// Could not be produced; see the session's Events.
    Failed,
    /// No recorder is running although the recording is not over (it crashed or was
    /// stopped): the MP4 keeps what was captured until then, and a new recorder continues
    /// the same recording.
    Interrupted,
}

/// One recording of a session.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordingSummary {
    /// Recording, Paused, Processing, Complete, Failed or Interrupted.
    pub state: RecordingState,
    /// When the recording started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Time>,
    /// Seconds of media recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
    /// Size of the MP4 in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// Path of the MP4 on the event's recording storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// How often the recorder stopped while people were on camera and a new one continued:
    /// the MP4 lacks what happened in between.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interruptions: Option<i32>,
}

/// What the operator observes of a session.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionStatus {
    /// Scheduled, Starting, Live, Draining, Ended or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<LivePhase>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, PodScheduled, Degraded, and a False condition with a reason for problems with
    /// other objects (a missing LiveEvent, an unknown ticket type).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Where browsers reach the session's SFU (host:port of its media endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// People on camera now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_camera: Option<i32>,
    /// People watching now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watching: Option<i32>,
    /// Most people on camera at once so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_on_camera: Option<i32>,
    /// Most people watching at once so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_watching: Option<i32>,
    /// Distinct people who joined so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_joiners: Option<i32>,
    /// When the session went live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the session ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Time>,
    /// Relay SFU pods that are ready (scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relays: Option<i32>,
    /// Label selector of the session's relay pods (scale subresource).
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
    /// The session's recordings.
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
