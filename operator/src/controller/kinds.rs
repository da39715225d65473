//! What differs between the kinds that get an SFU pod: how to read their spec and previous
//! status, what they want now, and the shape of their status.

use jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use roundtable_crds::{
    LiveEvent, LivePhase, PodMove, PodRestart, RecordingSummary, Room, RoomPhase, Session, Stage,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::relays::RelayFacts;
use crate::config::OperatorConfig;
use crate::plan::decide::{Plan, Problem, Restarts, Severity, room_desired};
use crate::plan::relay::RelaySpec;
use crate::plan::schedule::{Desired, Over, desired};
use roundtable_crds::live_room::LiveRoom;

/// Annotation the control plane sets on a Room when someone wants to join (RFC 3339 time).
pub const JOIN_REQUESTED: &str = "roundtable.dev/join-requested-at";

/// Status fields every live kind shares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Previous {
    pub phase: Option<LivePhase>,
    pub peak_on_camera: i32,
    pub peak_watching: i32,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub last_active: Option<Timestamp>,
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    pub restarts: Restarts,
    /// The last move an organiser asked for (`status.move`).
    pub pod_move: Option<PodMove>,
}

/// The facts a status is written from.
#[derive(Debug, Clone)]
pub struct StatusFacts<'a> {
    pub plan: &'a Plan,
    pub generation: Option<i64>,
    pub conditions: Value,
    pub endpoint: Option<String>,
    pub peak_on_camera: i32,
    pub peak_watching: i32,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub last_active: Option<Timestamp>,
    /// The recordings to list (sessions with recording on, or that had recordings).
    pub recordings: Option<Vec<RecordingSummary>>,
    /// The relays (sessions and stages).
    pub relays: Option<RelayFacts>,
    /// The last move an organiser asked for.
    pub pod_move: Option<PodMove>,
}

/// A kind that gets an SFU pod.
pub trait LiveKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// Controller name in metrics and logs.
    const CONTROLLER: &'static str;

    fn room(&self) -> LiveRoom;
    fn previous(&self) -> Previous;

    /// Whether the room should be live now.
    fn desired(
        &self,
        event: Option<&LiveEvent>,
        now: Timestamp,
        config: &OperatorConfig,
    ) -> Desired {
        desired(self.room().window(event), now, config.warm_up)
    }

    /// Problems with other objects that only this kind has (ticket types, passcode Secret).
    fn reference_problems(&self, _event: Option<&LiveEvent>) -> Vec<Problem> {
        Vec::new()
    }

    /// The status object to apply.
    fn status(&self, facts: &StatusFacts<'_>) -> Value;

    /// The Secret and key of a room's passcode, when it has one.
    fn passcode_secret(&self) -> Option<(String, String)> {
        None
    }

    /// Whether the room is recorded (sessions with `recording: true`).
    fn recording(&self) -> bool {
        false
    }

    /// The recordings its status lists now.
    fn previous_recordings(&self) -> Vec<RecordingSummary> {
        Vec::new()
    }

    /// What it asks of relay pods; None for kinds that have none (rooms).
    fn relay_spec(&self) -> Option<RelaySpec> {
        None
    }
}

fn live_previous(
    phase: Option<LivePhase>,
    peaks: (Option<i32>, Option<i32>),
    started: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    ended: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    restarts: (Option<i32>, Option<&PodRestart>),
    pod_move: Option<&PodMove>,
) -> Previous {
    Previous {
        phase,
        peak_on_camera: peaks.0.unwrap_or(0),
        peak_watching: peaks.1.unwrap_or(0),
        started_at: started.map(|t| t.0),
        ended_at: ended.map(|t| t.0),
        last_active: None,
        conditions: conditions.to_vec(),
        restarts: Restarts {
            count: restarts.0.unwrap_or(0),
            last: restarts.1.map(|r| (r.at.0, r.reason.clone())),
        },
        pod_move: pod_move.cloned(),
    }
}

fn common_status(facts: &StatusFacts<'_>) -> Value {
    let counts = facts.plan.counts.unwrap_or_default();
    json!({
        "observedGeneration": facts.generation,
        "conditions": facts.conditions,
        "endpoint": facts.endpoint,
        "onCamera": counts.on_camera,
        "watching": counts.watching,
        "restarts": (facts.plan.restarts.count > 0).then_some(facts.plan.restarts.count),
        "lastRestart": facts.plan.restarts.last.as_ref().map(|(at, reason)| json!({
            "at": time(Some(*at)),
            "reason": reason,
        })),
        "move": facts.pod_move,
    })
}

/// The relay fields of a session's or stage's status (the scale subresource reads `relays`
/// and `selector`).
fn relay_status(facts: &StatusFacts<'_>) -> Value {
    let Some(relays) = &facts.relays else {
        return json!({});
    };
    json!({
        "relays": relays.ready,
        "selector": relays.selector,
        "relayPods": (!relays.pods.is_empty()).then_some(&relays.pods),
        "watchersPerPod": relays.watchers_per_pod,
        "lowerSince": time(relays.lower_since),
    })
}

fn time(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| {
        Value::String(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
    })
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(base), Value::Object(extra)) = (&mut base, extra) {
        base.extend(extra.into_iter().filter(|(_, v)| !v.is_null()));
        base.retain(|_, v| !v.is_null());
    }
    base
}

impl LiveKind for Session {
    const CONTROLLER: &'static str = "session";

    fn room(&self) -> LiveRoom {
        LiveRoom::from(self)
    }

    fn previous(&self) -> Previous {
        let s = self.status.clone().unwrap_or_default();
        live_previous(
            s.phase,
            (s.peak_on_camera, s.peak_watching),
            s.started_at.as_ref(),
            s.ended_at.as_ref(),
            &s.conditions,
            (s.restarts, s.last_restart.as_ref()),
            s.pod_move.as_ref(),
        )
    }

    fn reference_problems(&self, event: Option<&LiveEvent>) -> Vec<Problem> {
        let Some(event) = event else {
            return Vec::new();
        };
        let known: Vec<&str> = event
            .spec
            .ticket_types
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        let unknown: Vec<&str> = self
            .spec
            .watch
            .ticket_types
            .iter()
            .map(String::as_str)
            .filter(|t| !known.contains(t))
            .collect();
        let mut problems = Vec::new();
        if !unknown.is_empty() {
            problems.push(Problem {
                reason: "UnknownTicketType",
                message: format!(
                    "watch.ticketTypes names {} that LiveEvent {} does not have (it has: {})",
                    unknown.join(", "),
                    self.spec.event,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
                severity: Severity::Warning,
            });
        }
        if self.spec.recording && event.spec.recording_storage.is_none() {
            problems.push(Problem {
                reason: "RecordingStorageMissing",
                message: format!(
                    "recording is on but LiveEvent {} has no recordingStorage",
                    self.spec.event
                ),
                severity: Severity::Warning,
            });
        }
        problems
    }

    fn status(&self, facts: &StatusFacts<'_>) -> Value {
        let counts = facts.plan.counts.unwrap_or_default();
        let status = merge(
            common_status(facts),
            json!({
                "phase": facts.plan.phase,
                "peakOnCamera": facts.peak_on_camera,
                "peakWatching": facts.peak_watching,
                "uniqueJoiners": counts.unique_joiners,
                "startedAt": time(facts.started_at),
                "endedAt": time(facts.ended_at),
                "recordings": facts.recordings,
            }),
        );
        merge(status, relay_status(facts))
    }

    fn recording(&self) -> bool {
        self.spec.recording
    }

    fn relay_spec(&self) -> Option<RelaySpec> {
        Some(RelaySpec::new(
            self.spec.relays,
            self.spec.autoscaling.as_ref(),
            self.spec.max_participants,
            self.status
                .as_ref()
                .and_then(|s| Some(s.lower_since.as_ref()?.0)),
        ))
    }

    fn previous_recordings(&self) -> Vec<RecordingSummary> {
        self.status
            .as_ref()
            .map(|s| s.recordings.clone())
            .unwrap_or_default()
    }
}

impl LiveKind for Stage {
    const CONTROLLER: &'static str = "stage";

    fn room(&self) -> LiveRoom {
        LiveRoom::from(self)
    }

    fn previous(&self) -> Previous {
        let s = self.status.clone().unwrap_or_default();
        live_previous(
            s.phase,
            (None, s.peak_watching),
            None,
            None,
            &s.conditions,
            (s.restarts, s.last_restart.as_ref()),
            s.pod_move.as_ref(),
        )
    }

    fn status(&self, facts: &StatusFacts<'_>) -> Value {
        let status = merge(
            common_status(facts),
            json!({
                "phase": facts.plan.phase,
                "peakWatching": facts.peak_watching,
                // What the SFU does, not what was asked: the live indicator must not lie.
                "live": stage_live(facts.plan),
            }),
        );
        merge(status, relay_status(facts))
    }

    fn relay_spec(&self) -> Option<RelaySpec> {
        Some(RelaySpec::new(
            self.spec.relays,
            self.spec.autoscaling.as_ref(),
            self.spec.backstage.max_speakers,
            self.status
                .as_ref()
                .and_then(|s| Some(s.lower_since.as_ref()?.0)),
        ))
    }
}

/// Whether a stage is showing its backstage to the audience: only a live SFU that reports
/// broadcasting counts.
pub fn stage_live(plan: &Plan) -> bool {
    plan.phase == LivePhase::Live && plan.counts.is_some_and(|c| c.broadcasting)
}

impl LiveKind for Room {
    const CONTROLLER: &'static str = "room";

    fn room(&self) -> LiveRoom {
        LiveRoom::from(self)
    }

    fn previous(&self) -> Previous {
        let s = self.status.clone().unwrap_or_default();
        let phase = s.phase.map(|p| match p {
            RoomPhase::Idle => LivePhase::Ended,
            RoomPhase::Starting => LivePhase::Starting,
            RoomPhase::Live => LivePhase::Live,
            RoomPhase::Draining => LivePhase::Draining,
            RoomPhase::Failed => LivePhase::Failed,
        });
        Previous {
            last_active: s.last_active.map(|t| t.0),
            ..live_previous(
                phase,
                (None, None),
                None,
                None,
                &s.conditions,
                (s.restarts, s.last_restart.as_ref()),
                s.pod_move.as_ref(),
            )
        }
    }

    fn desired(
        &self,
        _event: Option<&LiveEvent>,
        now: Timestamp,
        config: &OperatorConfig,
    ) -> Desired {
        let requested = self
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(JOIN_REQUESTED))
            .and_then(|t| t.parse::<Timestamp>().ok());
        let idle = self
            .spec
            .idle_timeout_seconds
            .map_or(config.room_idle, |s| {
                jiff::SignedDuration::from_secs(s.into())
            });
        match room_desired(requested, self.previous().last_active, idle, now) {
            // An idle room is not over: it just has no pod until someone asks again.
            Desired::Waiting { .. } => Desired::Over(Over::Idle),
            live => live,
        }
    }

    fn passcode_secret(&self) -> Option<(String, String)> {
        self.spec
            .passcode
            .as_ref()
            .map(|p| (p.name.clone(), p.key.clone()))
    }

    fn status(&self, facts: &StatusFacts<'_>) -> Value {
        let phase = match facts.plan.phase {
            LivePhase::Scheduled | LivePhase::Ended => RoomPhase::Idle,
            LivePhase::Starting => RoomPhase::Starting,
            LivePhase::Live => RoomPhase::Live,
            LivePhase::Draining => RoomPhase::Draining,
            LivePhase::Failed => RoomPhase::Failed,
        };
        merge(
            common_status(facts),
            json!({
                "phase": phase,
                "path": format!("/{}/{}", self.spec.host, self.spec.slug),
                "lastActive": time(facts.last_active),
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::plan::decide::{Counts, Observed, PodState, decide};

    fn plan(ready: bool, broadcasting: bool) -> Plan {
        let observed = Observed {
            pod: Some(PodState::Running { ready }),
            counts: Some(Counts {
                broadcasting,
                ..Default::default()
            }),
            ..Default::default()
        };
        decide(
            Desired::Live { until: None },
            &observed,
            None,
            Timestamp::now(),
            Duration::from_secs(5),
        )
    }

    #[test]
    fn the_live_indicator_follows_what_the_sfu_reports() {
        assert!(stage_live(&plan(true, true)));
        assert!(
            !stage_live(&plan(true, false)),
            "asked to broadcast is not broadcasting"
        );
        assert!(
            !stage_live(&plan(false, true)),
            "a pod that is not ready is not live"
        );
    }
}
