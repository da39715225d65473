//! The decision for one live room: what to do with its pod and what its status says.
//!
//! `decide(desired, observed)` is pure: the controller observes the pod, the pod's `/stats`
//! and the objects the room refers to, calls it, and applies the [`Plan`].

use std::time::Duration;

use jiff::Timestamp;
use roundtable_crds::LivePhase;

use super::schedule::{Desired, Over};

/// What the controller saw of a room's origin pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    /// Not placed on a node yet; `unschedulable` carries the scheduler's reason when it gave up.
    Unscheduled { unschedulable: Option<String> },
    /// Placed; `ready` is the pod's Ready condition.
    Running { ready: bool },
    /// Placed, but the kubelet cannot start sfu-node and says why (`CreateContainerConfigError`,
    /// `ImagePullBackOff`, ...): a person has to fix something, and the kubelet retries once
    /// they have.
    Stuck { reason: String, message: String },
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

/// How much a problem with another object stops a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Reported; the room runs (an unknown ticket type, a missing recording claim).
    Warning,
    /// No SFU pod can start until it is fixed; a pod already running keeps running (a missing
    /// join-token Secret: a running pod read its key when it started).
    BlocksStart,
    /// The room cannot run at all: a running SFU pod is drained (its LiveEvent was deleted).
    StopsRoom,
}

/// A problem with an object the room refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase reason, e.g. `EventNotFound`.
    pub reason: &'static str,
    pub message: String,
    pub severity: Severity,
}

/// A failed attempt to create or update one of the room's children (pod, Service, disruption
/// budget, Job), as the API server explained it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildFailure {
    /// CamelCase reason for the condition and Event, e.g. `PodInvalid`.
    pub reason: &'static str,
    /// What failed and the API server's words, which name the field to fix.
    pub message: String,
}

impl ChildFailure {
    /// Classifies an API error answering a write of `child` (e.g. "SFU pod", "Service").
    /// `code` and `reason` are the API server's (`422`, `Invalid`), `message` its text.
    pub fn from_api(child: Child, code: u16, reason: &str, message: &str) -> Self {
        let why = match (code, reason) {
            (422, _) | (_, "Invalid") => "Invalid",
            (403, _) | (_, "Forbidden") => "Forbidden",
            _ => "Failed",
        };
        ChildFailure {
            reason: child.reason(why),
            message: format!(
                "could not create the {}: {} (the API server answered {code} {reason})",
                child.describe(),
                message.trim()
            ),
        }
    }
}

/// The children of a room the operator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    Pod,
    Service,
    DisruptionBudget,
    RecorderJob,
}

impl Child {
    fn describe(self) -> &'static str {
        match self {
            Child::Pod => "SFU pod",
            Child::Service => "media Service",
            Child::DisruptionBudget => "PodDisruptionBudget",
            Child::RecorderJob => "recorder Job",
        }
    }

    fn reason(self, why: &'static str) -> &'static str {
        match (self, why) {
            (Child::Pod, "Invalid") => "PodInvalid",
            (Child::Pod, "Forbidden") => "PodForbidden",
            (Child::Pod, _) => "PodCreateFailed",
            (Child::Service, "Invalid") => "ServiceInvalid",
            (Child::Service, "Forbidden") => "ServiceForbidden",
            (Child::Service, _) => "ServiceCreateFailed",
            (Child::DisruptionBudget, "Forbidden") => "DisruptionBudgetForbidden",
            (Child::DisruptionBudget, _) => "DisruptionBudgetFailed",
            (Child::RecorderJob, "Invalid") => "RecorderJobInvalid",
            (Child::RecorderJob, "Forbidden") => "RecorderJobForbidden",
            (Child::RecorderJob, _) => "RecorderJobFailed",
        }
    }
}

/// The SFU pod replacements a room has had (from its status).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restarts {
    pub count: i32,
    /// When and why the last replacement happened.
    pub last: Option<(Timestamp, String)>,
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
    /// The message of the room's `Degraded` condition while it is True: the SFU pod failed or
    /// vanished and its replacement is not ready yet.
    pub degraded: Option<String>,
    /// Replacements so far.
    pub restarts: Restarts,
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
    /// The restarts the status reports after this plan: one more when it replaces a pod that
    /// failed or vanished.
    pub restarts: Restarts,
}

impl Plan {
    /// The plan after the write of a child failed: the room is `Failed` with the API server's
    /// reason until a retry (after `backoff`) succeeds. A Warning Event says it once per
    /// reason (`previous_reason` is the Ready condition's before this reconcile). A
    /// replacement that could not be created is not counted as a restart.
    pub fn child_failed(
        mut self,
        failure: ChildFailure,
        previous_reason: Option<&str>,
        previous_restarts: &Restarts,
        backoff: Duration,
    ) -> Plan {
        self.conditions
            .retain(|c| c.type_ != "Ready" && c.type_ != "Degraded");
        self.conditions.push(condition(
            "Ready",
            false,
            failure.reason,
            failure.message.clone(),
        ));
        self.conditions.push(condition(
            "Degraded",
            true,
            failure.reason,
            failure.message.clone(),
        ));
        self.event = (previous_reason != Some(failure.reason))
            .then(|| event(true, failure.reason, &failure.message));
        self.phase = LivePhase::Failed;
        self.counts = Some(Counts::default());
        self.restarts = previous_restarts.clone();
        self.requeue_after = Some(backoff);
        self
    }

    /// Whether this plan creates a replacement for a pod that failed or vanished.
    pub fn replaced(&self) -> bool {
        self.event
            .as_ref()
            .is_some_and(|e| e.reason == "PodReplaced")
    }
}

const REPLACING: &str = "; a new SFU pod replaces it";

/// Reasons of a `Degraded` condition that mean the SFU pod failed or vanished while live; the
/// pod created next is a replacement.
pub const POD_LOST: [&str; 3] = ["PodFailed", "PodDeleted", "PodReplaced"];

/// Decides the pod action, phase and conditions of a room.
pub fn decide(
    desired: Desired,
    observed: &Observed,
    previous_phase: Option<LivePhase>,
    now: Timestamp,
    poll: Duration,
) -> Plan {
    let stops = observed
        .problems
        .iter()
        .find(|p| p.severity == Severity::StopsRoom);
    // What keeps a room without a pod from getting one: anything that stops it, or (when it
    // should be live) anything that blocks a start.
    let cannot_start = stops.or_else(|| {
        observed
            .problems
            .iter()
            .find(|p| p.severity == Severity::BlocksStart)
            .filter(|_| matches!(desired, Desired::Live { .. }))
    });
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
    let draining = || {
        condition(
            "Ready",
            false,
            "Draining",
            "new joins are refused; connected people may stay for the grace period".into(),
        )
    };
    let mut restarts = observed.restarts.clone();

    let (pod, phase, mut conditions, event, requeue_after) = match (desired, &observed.pod) {
        // The room cannot run without what it refers to: a running pod is drained, and the
        // room stays Failed (not Ended: fixing the reference brings it back).
        (_, Some(PodState::Terminating)) if stops.is_some() => {
            let p = stops.expect("checked");
            (
                PodAction::Keep,
                LivePhase::Draining,
                vec![condition("Ready", false, p.reason, p.message.clone())],
                None,
                Some(poll),
            )
        }
        (_, Some(_)) if stops.is_some() => {
            let p = stops.expect("checked");
            (
                PodAction::Drain,
                LivePhase::Draining,
                vec![condition("Ready", false, p.reason, p.message.clone())],
                Some(event(
                    true,
                    p.reason,
                    &format!("{}; draining the SFU pod", p.message),
                )),
                Some(poll),
            )
        }
        (_, None) if cannot_start.is_some() => {
            let p = cannot_start.expect("checked");
            (
                PodAction::Keep,
                LivePhase::Failed,
                vec![condition("Ready", false, p.reason, p.message.clone())],
                (previous_phase != Some(LivePhase::Failed))
                    .then(|| event(true, p.reason, &p.message)),
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
        (Desired::Over(why), None) => {
            let ran = matches!(
                previous_phase,
                Some(LivePhase::Starting | LivePhase::Live | LivePhase::Draining)
            );
            let (reason, message) = match why {
                Over::Idle => (
                    "Idle",
                    "nobody is in the room; its SFU pod starts when someone asks to join"
                        .to_string(),
                ),
                _ if ran => ("Ended", "the room has ended".to_string()),
                Over::EndedByOrganiser => (
                    "EndedBeforeStart",
                    "an organiser ended it before it started".to_string(),
                ),
                Over::EndPassed { at } => (
                    "EndedBeforeStart",
                    format!(
                        "its end ({at}) passed before it started; set a later end (or the event's) to run it"
                    ),
                ),
            };
            let event = if ran {
                Some(event(
                    false,
                    "Ended",
                    "the room ended and its SFU pod is gone",
                ))
            } else if previous_phase.is_none() && matches!(why, Over::EndPassed { .. }) {
                // Created with a schedule entirely in the past: say so once.
                Some(event(true, "ScheduleInPast", &message))
            } else if previous_phase == Some(LivePhase::Scheduled) && why != Over::Idle {
                Some(event(false, "Ended", &message))
            } else {
                None
            };
            (
                PodAction::Keep,
                LivePhase::Ended,
                vec![condition("Ready", false, reason, message)],
                event,
                None,
            )
        }
        (Desired::Waiting { .. } | Desired::Over(_), Some(PodState::Terminating)) => (
            PodAction::Keep,
            LivePhase::Draining,
            vec![draining()],
            None,
            Some(poll),
        ),
        (Desired::Waiting { .. } | Desired::Over(_), Some(_)) => (
            PodAction::Drain,
            LivePhase::Draining,
            vec![draining()],
            Some(event(
                false,
                "Draining",
                "the room is over: draining its SFU pod",
            )),
            Some(poll),
        ),
        (Desired::Live { .. }, None) => {
            let replacing = observed.had_pod
                || matches!(previous_phase, Some(LivePhase::Live | LivePhase::Starting))
                || observed.degraded.is_some();
            let mut conditions = vec![
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
            ];
            let event = if replacing {
                let why = observed.degraded.as_deref().map_or_else(
                    || "the SFU pod was gone".to_string(),
                    |d| d.trim_end_matches(REPLACING).to_string(),
                );
                restarts.count += 1;
                restarts.last = Some((now, why.clone()));
                conditions.push(condition(
                    "Degraded",
                    true,
                    "PodReplaced",
                    format!("{why}{REPLACING}"),
                ));
                event(true, "PodReplaced", &format!("{why}{REPLACING}"))
            } else {
                event(false, "Starting", "created the SFU pod")
            };
            (
                PodAction::Ensure,
                LivePhase::Starting,
                conditions,
                Some(event),
                Some(poll),
            )
        }
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
        (Desired::Live { .. }, Some(PodState::Stuck { reason, message })) => {
            let text = format!("the SFU pod cannot start: {reason}: {message}");
            (
                PodAction::Keep,
                LivePhase::Failed,
                vec![
                    condition("Ready", false, "PodCannotStart", text.clone()),
                    condition(
                        "PodScheduled",
                        true,
                        "Scheduled",
                        "the SFU pod is on a node".into(),
                    ),
                    condition("Degraded", true, "PodCannotStart", text.clone()),
                ],
                (previous_phase != Some(LivePhase::Failed))
                    .then(|| event(true, "PodCannotStart", &text)),
                Some(poll),
            )
        }
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
                let conditions = vec![
                    condition(
                        "Ready",
                        false,
                        "PodNotReady",
                        "the SFU pod is starting".into(),
                    ),
                    scheduled,
                ];
                (
                    PodAction::Keep,
                    LivePhase::Starting,
                    conditions,
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
    if let Some(why) = &observed.degraded
        && phase == LivePhase::Starting
        && !conditions.iter().any(|c| c.type_ == "Degraded")
    {
        // A replacement is starting: still degraded until it is ready.
        conditions.push(condition("Degraded", true, "PodReplaced", why.clone()));
    }
    if !conditions.iter().any(|c| c.type_ == "Degraded") {
        conditions.push(match &restarts.last {
            Some((at, why)) => condition(
                "Degraded",
                false,
                "Recovered",
                format!(
                    "nothing is wrong now; the SFU pod was replaced {} time{} (last at {at}: {why})",
                    restarts.count,
                    if restarts.count == 1 { "" } else { "s" }
                ),
            ),
            None => condition("Degraded", false, "AsExpected", "nothing is wrong".into()),
        });
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
        restarts,
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
