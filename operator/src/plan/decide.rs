//! The decision for one live room: what to do with its pod and what its status says.
//!
//! `decide(desired, observed)` is pure: the controller observes the pod, the pod's `/stats`
//! and the objects the room refers to, calls it, and applies the [`Plan`].

use std::time::Duration;

use jiff::Timestamp;
use roundtable_crds::LivePhase;

use super::schedule::Desired;

/// What the controller saw of a room's origin pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    /// Not placed on a node yet; `unschedulable` carries the scheduler's reason when it gave up.
    Unscheduled { unschedulable: Option<String> },
    /// Placed; `ready` is the pod's Ready condition.
    Running { ready: bool },
    /// Being deleted (drain in progress).
    Terminating,
    /// The sfu-node process exited.
    Exited { message: String },
}

/// The live counts a ready pod reports on `/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub on_camera: i32,
    pub watching: i32,
    /// Distinct people who joined, when the SFU reports it.
    pub unique_joiners: Option<i32>,
    /// The most watching and on camera at once since the SFU started, when it reports them
    /// (exact, not sampled).
    pub peak_watching: Option<i32>,
    pub peak_on_camera: Option<i32>,
    /// Whether the room is showing its backstage to the audience (stages).
    pub broadcasting: bool,
}

/// A problem with an object the room refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase reason, e.g. `EventNotFound`.
    pub reason: &'static str,
    pub message: String,
    /// Whether the room cannot run at all until it is fixed.
    pub blocking: bool,
}

/// Everything observed for one room.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    pub pod: Option<PodState>,
    pub counts: Option<Counts>,
    pub problems: Vec<Problem>,
    /// Whether this room had a pod earlier (as seen by this operator process); with the
    /// previous phase, tells a replacement from a first start.
    pub had_pod: bool,
}

/// What to do with the origin pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodAction {
    /// Create it if it does not exist; leave a running one alone.
    Ensure,
    /// Delete it gracefully: sfu-node drains, peers may stay for the grace period.
    Drain,
    /// Delete a failed pod so that a new one replaces it.
    Replace,
    /// Nothing to do.
    Keep,
}

/// A condition to set, in Kubernetes terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionPlan {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

/// A Kubernetes Event to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPlan {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// The decision for one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub pod: PodAction,
    pub phase: LivePhase,
    pub conditions: Vec<ConditionPlan>,
    pub counts: Option<Counts>,
    pub event: Option<EventPlan>,
    /// Look again after this long (or at a watch event, whichever comes first).
    pub requeue_after: Option<Duration>,
}

/// Decides the pod action, phase and conditions of a room.
pub fn decide(
    desired: Desired,
    observed: &Observed,
    previous_phase: Option<LivePhase>,
    now: Timestamp,
    poll: Duration,
) -> Plan {
    let blocking = observed.problems.iter().find(|p| p.blocking);
    let references = match observed.problems.first() {
        None => condition(
            "ReferencesResolved",
            true,
            "AllFound",
            "every object this refers to exists".into(),
        ),
        Some(p) => condition("ReferencesResolved", false, p.reason, p.message.clone()),
    };
    let until = |at: Option<Timestamp>| {
        at.map(|at| Duration::from_secs(at.duration_since(now).as_secs().max(1) as u64))
    };

    let (pod, phase, mut conditions, event, requeue_after) = match (desired, &observed.pod) {
        (_, _) if blocking.is_some() && observed.pod.is_none() => {
            let p = blocking.expect("checked");
            (
                PodAction::Keep,
                LivePhase::Scheduled,
                vec![condition("Ready", false, p.reason, p.message.clone())],
                None,
                Some(Duration::from_secs(5)),
            )
        }
        (Desired::Waiting { wake_at }, None) => (
            PodAction::Keep,
            LivePhase::Scheduled,
            vec![condition(
                "Ready",
                false,
                "NotStarted",
                match wake_at {
                    Some(at) => format!("the SFU pod starts at {at}"),
                    None => "waiting for an organiser's Start".into(),
                },
            )],
            None,
            until(wake_at),
        ),
        (Desired::Over, None) => (
            PodAction::Keep,
            LivePhase::Ended,
            vec![condition(
                "Ready",
                false,
                "Ended",
                "the room has ended".into(),
            )],
            matches!(
                previous_phase,
                Some(LivePhase::Starting | LivePhase::Live | LivePhase::Draining)
            )
            .then(|| event(false, "Ended", "the room ended and its SFU pod is gone")),
            None,
        ),
        (Desired::Waiting { .. } | Desired::Over, Some(PodState::Terminating)) => (
            PodAction::Keep,
            LivePhase::Draining,
            vec![condition(
                "Ready",
                false,
                "Draining",
                "new joins are refused; connected people may stay for the grace period".into(),
            )],
            None,
            Some(poll),
        ),
        (Desired::Waiting { .. } | Desired::Over, Some(_)) => (
            PodAction::Drain,
            LivePhase::Draining,
            vec![condition(
                "Ready",
                false,
                "Draining",
                "new joins are refused; connected people may stay for the grace period".into(),
            )],
            Some(event(
                false,
                "Draining",
                "the room is over: draining its SFU pod",
            )),
            Some(poll),
        ),
        (Desired::Live { .. }, None) => (
            PodAction::Ensure,
            LivePhase::Starting,
            vec![
                condition(
                    "Ready",
                    false,
                    "PodCreated",
                    "the SFU pod is starting".into(),
                ),
                condition(
                    "PodScheduled",
                    false,
                    "Pending",
                    "the SFU pod waits for a node".into(),
                ),
            ],
            Some(
                if observed.had_pod
                    || matches!(previous_phase, Some(LivePhase::Live | LivePhase::Starting))
                {
                    event(
                        true,
                        "PodReplaced",
                        "the SFU pod was gone; a new one replaces it",
                    )
                } else {
                    event(false, "Starting", "created the SFU pod")
                },
            ),
            Some(poll),
        ),
        (Desired::Live { .. }, Some(PodState::Unscheduled { unschedulable })) => (
            PodAction::Keep,
            LivePhase::Starting,
            vec![
                condition(
                    "Ready",
                    false,
                    "PodNotScheduled",
                    "the SFU pod waits for a node".into(),
                ),
                match unschedulable {
                    Some(reason) => {
                        condition("PodScheduled", false, "Unschedulable", reason.clone())
                    }
                    None => condition(
                        "PodScheduled",
                        false,
                        "Pending",
                        "the SFU pod waits for a node".into(),
                    ),
                },
            ],
            None,
            Some(poll),
        ),
        (Desired::Live { until: end }, Some(PodState::Running { ready })) => {
            let scheduled = condition(
                "PodScheduled",
                true,
                "Scheduled",
                "the SFU pod is on a node".into(),
            );
            if *ready {
                let next = until(end).map_or(poll, |d| d.min(poll));
                (
                    PodAction::Keep,
                    LivePhase::Live,
                    vec![
                        condition("Ready", true, "Live", "people can join".into()),
                        scheduled,
                    ],
                    (previous_phase != Some(LivePhase::Live))
                        .then(|| event(false, "Live", "the SFU pod is ready; people can join")),
                    Some(next),
                )
            } else {
                (
                    PodAction::Keep,
                    LivePhase::Starting,
                    vec![
                        condition(
                            "Ready",
                            false,
                            "PodNotReady",
                            "the SFU pod is starting".into(),
                        ),
                        scheduled,
                    ],
                    None,
                    Some(poll),
                )
            }
        }
        (Desired::Live { .. }, Some(PodState::Terminating)) => (
            PodAction::Keep,
            LivePhase::Starting,
            vec![
                condition(
                    "Ready",
                    false,
                    "PodTerminating",
                    "the SFU pod is being deleted; a new one will replace it".into(),
                ),
                condition(
                    "Degraded",
                    true,
                    "PodDeleted",
                    "the SFU pod was deleted while the room is live".into(),
                ),
            ],
            None,
            Some(poll),
        ),
        (Desired::Live { .. }, Some(PodState::Exited { message })) => (
            PodAction::Replace,
            LivePhase::Starting,
            vec![
                condition("Ready", false, "PodFailed", message.clone()),
                condition("Degraded", true, "PodFailed", message.clone()),
            ],
            Some(event(
                true,
                "PodFailed",
                &format!("the SFU pod stopped ({message}); replacing it"),
            )),
            Some(poll),
        ),
    };
    conditions.push(references);
    if !conditions.iter().any(|c| c.type_ == "Degraded") {
        conditions.push(condition(
            "Degraded",
            false,
            "AsExpected",
            "nothing is wrong".into(),
        ));
    }
    let counts = match phase {
        LivePhase::Live | LivePhase::Draining => observed.counts,
        _ => Some(Counts::default()),
    };
    Plan {
        pod,
        phase,
        conditions,
        counts,
        event,
        requeue_after,
    }
}

fn condition(
    type_: &'static str,
    status: bool,
    reason: &'static str,
    message: String,
) -> ConditionPlan {
    ConditionPlan {
        type_,
        status,
        reason,
        message,
    }
}

fn event(warning: bool, reason: &'static str, note: &str) -> EventPlan {
    EventPlan {
        warning,
        reason,
        note: note.to_string(),
    }
}

/// Whether an on-demand room wants a pod: someone asked to join, or someone was in it, within
/// the idle time.
pub fn room_desired(
    join_requested: Option<Timestamp>,
    last_active: Option<Timestamp>,
    idle: jiff::SignedDuration,
    now: Timestamp,
) -> Desired {
    match join_requested.max(last_active) {
        Some(at) if now < at + idle => Desired::Live {
            until: Some(at + idle),
        },
        _ => Desired::Waiting { wake_at: None },
    }
}
