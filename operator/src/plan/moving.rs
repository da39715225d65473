//! An organiser's deliberate move of a live room's SFU pod to another node, for a node that
//! must go down: `kubectl annotate session <name> roundtable.dev/move-requested-at=<time>`.
//!
//! A node drain cannot take a live room (its PodDisruptionBudget refuses the eviction), so a
//! room leaves a node only when someone asks. The move is make-before-break:
//!
//! 1. **Moving**: a second origin pod, named after the request, starts with a required node
//!    affinity that keeps it off the old pod's node (cordoned nodes are unschedulable anyway).
//!    The room's endpoint still names the old pod, which alone gets new joins.
//! 2. **Switching**, once the new pod is Ready: the endpoint names the new pod, so the control
//!    plane sends every join there; the old pod stops taking joins and asks its people to
//!    re-join (`reconnect`), closing them [`LEAVE_NOTICE`] later.
//! 3. **Moved**: the old pod is deleted (the operator's delete, which a budget does not
//!    block; the budget selects whichever origin pod exists).
//!
//! A new pod that no node takes (the scheduler says why) is deleted and the room stays:
//! **Failed** with a Warning Event. Each annotation value is handled once (`status.move`).
//! At every moment the room's endpoint names one pod, so the control plane never sends joins
//! to two.

use std::time::Duration;

use jiff::Timestamp;
use roundtable_crds::{MoveState, PodMove};

use super::decide::{EventPlan, PodState};
use super::pod::{fnv1a, label_value};

/// Annotation an organiser sets (an RFC 3339 time, or any new value) to move a room.
pub const MOVE_REQUESTED: &str = "roundtable.dev/move-requested-at";

/// How long the old pod's people have to re-join before it is deleted: the sfu-node closes
/// them one second after asking, and a page's re-join takes well under a second more.
pub const LEAVE_NOTICE: Duration = Duration::from_secs(3);

/// The origin pod a move to `requested_at` creates: the room's pod name and a hash of the
/// value, so a restarted operator finds (never duplicates) the pod it made.
pub fn move_pod_name(base: &str, requested_at: &str) -> String {
    label_value(&format!(
        "{base}-m{:06x}",
        fnv1a(requested_at.as_bytes()) & 0xff_ffff
    ))
}

/// The name of the origin pod the room is served from: its own name, or the pod a move
/// switched to.
pub fn current_origin(base: &str, previous: Option<&PodMove>) -> String {
    match previous {
        Some(m) if matches!(m.state, MoveState::Switching | MoveState::Moved) => m.to_pod.clone(),
        Some(m) => m.from_pod.clone(),
        None => base.to_string(),
    }
}

/// What was observed of the pods a move concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSeen {
    pub state: PodState,
    /// The node it was placed on.
    pub node: Option<String>,
}

/// Everything a move is decided from.
#[derive(Debug, Clone, PartialEq)]
pub struct MoveFacts<'a> {
    /// The room's pod name (`<kind>-<name>`).
    pub base: &'a str,
    /// The annotation's value.
    pub requested: Option<&'a str>,
    /// `status.move` (or what this process wrote last).
    pub previous: Option<&'a PodMove>,
    /// The origin pod named by [`current_origin`].
    pub origin: Option<&'a PodSeen>,
    /// The other pod of a move in progress: while `Moving` the new pod (`to_pod`), while
    /// `Switching` the old one (`from_pod`); `origin` is the one the endpoint names.
    pub other: Option<&'a PodSeen>,
    /// Why this room cannot move at all, if so (its network mode).
    pub unmovable: Option<&'a str>,
    pub now: Timestamp,
}

/// What to do for a move now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveStep {
    /// Nothing.
    None,
    /// Create the pod `pod`, kept off `avoid` (the old pod's node).
    Create { pod: String, avoid: String },
    /// The new pod is starting: look again soon.
    Wait,
    /// Ask the old pod `pod` to send its people away (idempotent).
    Leave { pod: String },
    /// Delete the old pod `pod`: its people have had [`LEAVE_NOTICE`] to re-join.
    RemoveOld { pod: String },
    /// No node took the new pod `pod`: delete it; the room stays.
    GiveUp { pod: String },
}

/// The decision: a step, the `status.move` to write, an Event, and when to look again.
#[derive(Debug, Clone, PartialEq)]
pub struct MovePlan {
    pub step: MoveStep,
    pub status: Option<PodMove>,
    pub event: Option<EventPlan>,
    pub requeue_after: Option<Duration>,
}

impl MovePlan {
    fn keep(previous: Option<&PodMove>) -> MovePlan {
        MovePlan {
            step: MoveStep::None,
            status: previous.cloned(),
            event: None,
            requeue_after: None,
        }
    }
}

fn event(warning: bool, reason: &'static str, note: String) -> EventPlan {
    EventPlan {
        warning,
        reason,
        note,
    }
}

fn time(t: Timestamp) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t)
}

fn node(n: Option<&String>) -> String {
    n.map_or_else(|| "an unknown node".to_string(), |n| format!("node {n}"))
}

/// Decides the next step of a room's move; `poll` is how soon to look again while one runs.
pub fn plan_move(facts: &MoveFacts<'_>, poll: Duration) -> MovePlan {
    let previous = facts.previous;
    let in_progress =
        previous.filter(|m| matches!(m.state, MoveState::Moving | MoveState::Switching));
    if let Some(m) = in_progress {
        return continue_move(facts, m, poll);
    }
    let Some(requested) = facts.requested else {
        return MovePlan::keep(previous);
    };
    if previous.is_some_and(|m| m.requested_at == requested) {
        return MovePlan::keep(previous);
    }
    let from_pod = current_origin(facts.base, previous);
    let to_pod = move_pod_name(facts.base, requested);
    let failed = |message: String| MovePlan {
        step: MoveStep::None,
        status: Some(PodMove {
            requested_at: requested.to_string(),
            state: MoveState::Failed,
            from_pod: from_pod.clone(),
            from_node: facts.origin.and_then(|o| o.node.clone()),
            to_pod: to_pod.clone(),
            to_node: None,
            switched_at: None,
            message: Some(message.clone()),
        }),
        event: Some(event(true, "RoomMoveFailed", message)),
        requeue_after: None,
    };
    if let Some(why) = facts.unmovable {
        return failed(format!("the room cannot move: {why}"));
    }
    match facts.origin {
        None => failed(
            "the room has no SFU pod to move; it starts wherever the scheduler places it".into(),
        ),
        Some(PodSeen {
            state: PodState::Running { ready: true },
            node: Some(from_node),
        }) => {
            let message = format!(
                "moving the room off node {from_node}: the SFU pod {to_pod} starts on another node; people re-join there once it is ready"
            );
            MovePlan {
                step: MoveStep::Create {
                    pod: to_pod.clone(),
                    avoid: from_node.clone(),
                },
                status: Some(PodMove {
                    requested_at: requested.to_string(),
                    state: MoveState::Moving,
                    from_pod,
                    from_node: Some(from_node.clone()),
                    to_pod,
                    to_node: None,
                    switched_at: None,
                    message: Some(message.clone()),
                }),
                event: Some(event(false, "RoomMoving", message)),
                requeue_after: Some(poll),
            }
        }
        // Starting, being replaced or drained: move it once it is live (or has ended).
        Some(_) => MovePlan {
            requeue_after: Some(poll),
            ..MovePlan::keep(previous)
        },
    }
}

fn continue_move(facts: &MoveFacts<'_>, m: &PodMove, poll: Duration) -> MovePlan {
    let with = |state: MoveState, message: String| PodMove {
        state,
        message: Some(message),
        ..m.clone()
    };
    match m.state {
        MoveState::Moving => match facts.other {
            // Just created (the cache has not seen it yet), or gone: (re)create it; a pod
            // that already exists is not duplicated.
            None => MovePlan {
                step: MoveStep::Create {
                    pod: m.to_pod.clone(),
                    avoid: m.from_node.clone().unwrap_or_default(),
                },
                status: Some(m.clone()),
                event: None,
                requeue_after: Some(poll),
            },
            Some(PodSeen {
                state: PodState::Running { ready: true },
                node,
            }) => {
                let message = format!(
                    "the SFU pod {} is ready on {}; the room's endpoint names it and people on {} re-join there",
                    m.to_pod,
                    self::node(node.as_ref()),
                    m.from_pod
                );
                MovePlan {
                    step: MoveStep::Leave {
                        pod: m.from_pod.clone(),
                    },
                    status: Some(PodMove {
                        to_node: node.clone(),
                        switched_at: Some(time(facts.now)),
                        ..with(MoveState::Switching, message)
                    }),
                    event: None,
                    requeue_after: Some(poll.min(Duration::from_secs(1))),
                }
            }
            Some(PodSeen {
                state:
                    PodState::Unscheduled {
                        unschedulable: Some(why),
                    },
                ..
            }) => give_up(m, &format!("no other node can take the room: {why}")),
            Some(PodSeen {
                state: PodState::Stuck { reason, message },
                ..
            }) => give_up(
                m,
                &format!("the new SFU pod cannot start: {reason}: {message}"),
            ),
            Some(PodSeen {
                state: PodState::Exited { message },
                ..
            }) => give_up(m, &format!("the new SFU pod stopped: {message}")),
            Some(PodSeen {
                state: PodState::Terminating,
                ..
            }) => give_up(m, "the new SFU pod was deleted"),
            Some(_) => MovePlan {
                step: MoveStep::Wait,
                status: Some(m.clone()),
                event: None,
                requeue_after: Some(poll),
            },
        },
        MoveState::Switching => {
            let since = m.switched_at.as_ref().map_or(facts.now, |t| t.0);
            let waited = facts.now.duration_since(since).unsigned_abs();
            let old_there = facts.other.is_some();
            if old_there && waited < LEAVE_NOTICE {
                MovePlan {
                    step: MoveStep::Leave {
                        pod: m.from_pod.clone(),
                    },
                    status: Some(m.clone()),
                    event: None,
                    requeue_after: Some((LEAVE_NOTICE - waited).min(Duration::from_secs(1))),
                }
            } else {
                let message = format!(
                    "moved the room from {} ({}) to {} ({})",
                    node(m.from_node.as_ref()),
                    m.from_pod,
                    node(m.to_node.as_ref()),
                    m.to_pod
                );
                MovePlan {
                    step: if old_there {
                        MoveStep::RemoveOld {
                            pod: m.from_pod.clone(),
                        }
                    } else {
                        MoveStep::None
                    },
                    status: Some(with(MoveState::Moved, message.clone())),
                    event: Some(event(false, "RoomMoved", message)),
                    requeue_after: None,
                }
            }
        }
        MoveState::Moved | MoveState::Failed => MovePlan::keep(Some(m)),
    }
}

fn give_up(m: &PodMove, why: &str) -> MovePlan {
    let message = format!(
        "{why}; the room stays on {} and the new pod {} is deleted",
        node(m.from_node.as_ref()),
        m.to_pod
    );
    MovePlan {
        step: MoveStep::GiveUp {
            pod: m.to_pod.clone(),
        },
        status: Some(PodMove {
            state: MoveState::Failed,
            message: Some(message.clone()),
            ..m.clone()
        }),
        event: Some(event(true, "RoomMoveFailed", message)),
        requeue_after: None,
    }
}
