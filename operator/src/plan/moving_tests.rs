//! Tests of an organiser's move of a room, step by step, with a pinned clock.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec,
};
use roundtable_crds::{MoveState, PodMove};

use super::decide::PodState;
use super::moving::{
    LEAVE_NOTICE, MoveFacts, MovePlan, MoveStep, PodSeen, current_origin, move_pod_name, plan_move,
};
use super::pod::moved_pod;

const BASE: &str = "session-keynote";
const POLL: Duration = Duration::from_secs(5);

fn now() -> Timestamp {
    "2026-12-10T18:00:00Z".parse().unwrap()
}

fn at(seconds: i64) -> Timestamp {
    now() + SignedDuration::from_secs(seconds)
}

fn ready_on(node: &str) -> PodSeen {
    PodSeen {
        state: PodState::Running { ready: true },
        node: Some(node.into()),
    }
}

fn facts<'a>(
    requested: Option<&'a str>,
    previous: Option<&'a PodMove>,
    origin: Option<&'a PodSeen>,
    other: Option<&'a PodSeen>,
    now: Timestamp,
) -> MoveFacts<'a> {
    MoveFacts {
        base: BASE,
        requested,
        previous,
        origin,
        other,
        unmovable: None,
        now,
    }
}

/// Runs a move asked at `now()` of a room live on node-a up to the new pod being ready on
/// node-b: the plan that switches.
fn switched() -> MovePlan {
    let old = ready_on("node-a");
    let started = plan_move(&facts(Some("T1"), None, Some(&old), None, now()), POLL);
    let moving = started.status.unwrap();
    let new = ready_on("node-b");
    plan_move(
        &facts(Some("T1"), Some(&moving), Some(&old), Some(&new), at(4)),
        POLL,
    )
}

#[test]
fn a_move_of_a_live_room_starts_a_pod_that_must_go_to_another_node() {
    let old = ready_on("node-a");
    let plan = plan_move(
        &facts(Some("2026-12-10T17:59:58Z"), None, Some(&old), None, now()),
        POLL,
    );
    let to_pod = move_pod_name(BASE, "2026-12-10T17:59:58Z");
    assert_eq!(
        plan.step,
        MoveStep::Create {
            pod: to_pod.clone(),
            avoid: "node-a".into()
        }
    );
    let status = plan.status.unwrap();
    assert_eq!(status.state, MoveState::Moving);
    assert_eq!(status.requested_at, "2026-12-10T17:59:58Z");
    assert_eq!(
        (status.from_pod.as_str(), status.from_node.as_deref()),
        (BASE, Some("node-a"))
    );
    assert_eq!(status.to_pod, to_pod);
    // Until the new pod is ready, the endpoint names the old one.
    assert_eq!(current_origin(BASE, Some(&status)), BASE);
    let event = plan.event.unwrap();
    assert!(!event.warning);
    assert_eq!(event.reason, "RoomMoving");
    assert!(event.note.contains("node-a"), "{}", event.note);
    assert_eq!(plan.requeue_after, Some(POLL));
}

#[test]
fn the_new_pod_is_created_again_until_seen_and_waited_for_until_ready() {
    let old = ready_on("node-a");
    let moving = plan_move(&facts(Some("T1"), None, Some(&old), None, now()), POLL)
        .status
        .unwrap();
    // The cache has not seen the created pod yet: create again (the API server answers
    // 409; never a duplicate), nothing new to report.
    let again = plan_move(
        &facts(Some("T1"), Some(&moving), Some(&old), None, at(1)),
        POLL,
    );
    assert!(matches!(again.step, MoveStep::Create { .. }));
    assert_eq!(again.status.as_ref(), Some(&moving));
    assert_eq!(again.event, None);
    for state in [
        PodState::Unscheduled {
            unschedulable: None,
        },
        PodState::Running { ready: false },
    ] {
        let starting = PodSeen {
            state,
            node: Some("node-b".into()),
        };
        let plan = plan_move(
            &facts(
                Some("T1"),
                Some(&moving),
                Some(&old),
                Some(&starting),
                at(2),
            ),
            POLL,
        );
        assert_eq!(plan.step, MoveStep::Wait);
        assert_eq!(plan.status.as_ref(), Some(&moving));
        assert_eq!(plan.event, None);
    }
}

#[test]
fn once_the_new_pod_is_ready_the_endpoint_names_it_and_the_old_pods_people_are_sent_there() {
    let plan = switched();
    assert_eq!(plan.step, MoveStep::Leave { pod: BASE.into() });
    let status = plan.status.unwrap();
    assert_eq!(status.state, MoveState::Switching);
    assert_eq!(status.to_node.as_deref(), Some("node-b"));
    assert_eq!(status.switched_at.as_ref().map(|t| t.0), Some(at(4)));
    assert_eq!(current_origin(BASE, Some(&status)), status.to_pod);
    assert!(plan.requeue_after.unwrap() <= Duration::from_secs(1));
}

#[test]
fn the_old_pod_is_deleted_after_the_notice_and_the_move_is_reported_once() {
    let switching = switched().status.unwrap();
    let (new, old) = (ready_on("node-b"), ready_on("node-a"));
    // Within the notice the old pod is asked again (a lost request is repeated).
    let waiting = plan_move(
        &facts(Some("T1"), Some(&switching), Some(&new), Some(&old), at(5)),
        POLL,
    );
    assert_eq!(waiting.step, MoveStep::Leave { pod: BASE.into() });
    assert_eq!(waiting.event, None);
    let after = at(4) + SignedDuration::try_from(LEAVE_NOTICE).unwrap();
    let done = plan_move(
        &facts(Some("T1"), Some(&switching), Some(&new), Some(&old), after),
        POLL,
    );
    assert_eq!(done.step, MoveStep::RemoveOld { pod: BASE.into() });
    let moved = done.status.unwrap();
    assert_eq!(moved.state, MoveState::Moved);
    let event = done.event.unwrap();
    assert_eq!((event.warning, event.reason), (false, "RoomMoved"));
    assert!(
        event.note.contains("node-a") && event.note.contains("node-b"),
        "{}",
        event.note
    );
    // The same annotation value is never moved again, and nothing is reported again.
    let later = plan_move(
        &facts(Some("T1"), Some(&moved), Some(&new), None, at(60)),
        POLL,
    );
    assert_eq!(later.step, MoveStep::None);
    assert_eq!(later.status.as_ref(), Some(&moved));
    assert_eq!((later.event, later.requeue_after), (None, None));
}

#[test]
fn an_old_pod_already_gone_ends_the_move_at_once() {
    let switching = switched().status.unwrap();
    let new = ready_on("node-b");
    let done = plan_move(
        &facts(Some("T1"), Some(&switching), Some(&new), None, at(5)),
        POLL,
    );
    assert_eq!(done.step, MoveStep::None);
    assert_eq!(done.status.unwrap().state, MoveState::Moved);
}

#[test]
fn a_second_move_starts_from_the_pod_the_first_one_moved_to() {
    let switching = switched().status.unwrap();
    let moved = PodMove {
        state: MoveState::Moved,
        ..switching
    };
    let here = ready_on("node-b");
    let plan = plan_move(
        &facts(Some("T2"), Some(&moved), Some(&here), None, at(600)),
        POLL,
    );
    let status = plan.status.unwrap();
    assert_eq!(status.from_pod, moved.to_pod);
    assert_eq!(status.to_pod, move_pod_name(BASE, "T2"));
    assert_ne!(status.to_pod, moved.to_pod);
    assert_eq!(
        plan.step,
        MoveStep::Create {
            pod: move_pod_name(BASE, "T2"),
            avoid: "node-b".into()
        }
    );
}

#[test]
fn a_new_pod_no_node_takes_is_deleted_and_the_room_stays_with_a_warning() {
    let old = ready_on("node-a");
    let moving = plan_move(&facts(Some("T1"), None, Some(&old), None, now()), POLL)
        .status
        .unwrap();
    let why = "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 node(s) were unschedulable";
    let nowhere = PodSeen {
        state: PodState::Unscheduled {
            unschedulable: Some(why.into()),
        },
        node: None,
    };
    let plan = plan_move(
        &facts(Some("T1"), Some(&moving), Some(&old), Some(&nowhere), at(2)),
        POLL,
    );
    assert_eq!(
        plan.step,
        MoveStep::GiveUp {
            pod: moving.to_pod.clone()
        }
    );
    let status = plan.status.unwrap();
    assert_eq!(status.state, MoveState::Failed);
    assert_eq!(current_origin(BASE, Some(&status)), BASE, "the room stays");
    let event = plan.event.unwrap();
    assert_eq!((event.warning, event.reason), (true, "RoomMoveFailed"));
    assert!(event.note.contains(why), "{}", event.note);
    assert!(
        event.note.contains("stays on node node-a"),
        "{}",
        event.note
    );
    // Not tried again for the same value.
    let later = plan_move(
        &facts(Some("T1"), Some(&status), Some(&old), None, at(30)),
        POLL,
    );
    assert_eq!((later.step, later.event), (MoveStep::None, None));
}

#[test]
fn a_room_without_a_pod_or_with_a_media_service_is_not_moved_and_says_why() {
    let plan = plan_move(&facts(Some("T1"), None, None, None, now()), POLL);
    assert_eq!(plan.step, MoveStep::None);
    assert_eq!(plan.status.unwrap().state, MoveState::Failed);
    assert!(plan.event.unwrap().warning);

    let old = ready_on("node-a");
    let plan = plan_move(
        &MoveFacts {
            unmovable: Some("it has a media Service"),
            ..facts(Some("T1"), None, Some(&old), None, now())
        },
        POLL,
    );
    assert_eq!(plan.step, MoveStep::None);
    assert!(plan.event.unwrap().note.contains("media Service"));
}

#[test]
fn a_room_still_starting_is_moved_once_it_is_live() {
    let starting = PodSeen {
        state: PodState::Running { ready: false },
        node: Some("node-a".into()),
    };
    let plan = plan_move(&facts(Some("T1"), None, Some(&starting), None, now()), POLL);
    assert_eq!(plan.step, MoveStep::None);
    assert_eq!(plan.status, None, "not handled yet");
    assert_eq!(plan.requeue_after, Some(POLL));
}

#[test]
fn no_annotation_no_move() {
    let old = ready_on("node-a");
    let plan = plan_move(&facts(None, None, Some(&old), None, now()), POLL);
    assert_eq!(plan.step, MoveStep::None);
    assert_eq!((plan.status, plan.event), (None, None));
}

#[test]
fn move_pod_names_are_distinct_per_request_and_fit_a_label() {
    let long = "session-".to_string() + &"x".repeat(60);
    for base in [BASE, long.as_str()] {
        let a = move_pod_name(base, "2026-12-10T18:00:00Z");
        let b = move_pod_name(base, "2026-12-10T18:05:00Z");
        assert_ne!(a, b);
        assert_ne!(a, base);
        assert!(a.len() <= 63, "{a}");
        assert_eq!(a, move_pod_name(base, "2026-12-10T18:00:00Z"));
    }
}

fn term(key: &str) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: Some(vec![NodeSelectorRequirement {
            key: key.into(),
            operator: "Exists".into(),
            values: None,
        }]),
        match_fields: None,
    }
}

fn exclusions(pod: &Pod) -> Vec<Vec<NodeSelectorRequirement>> {
    pod.spec
        .as_ref()
        .unwrap()
        .affinity
        .as_ref()
        .unwrap()
        .node_affinity
        .as_ref()
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()
        .node_selector_terms
        .iter()
        .map(|t| t.match_fields.clone().unwrap_or_default())
        .collect()
}

#[test]
fn the_moved_pod_is_kept_off_the_old_node_in_every_placement_term() {
    let not_a = NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "NotIn".into(),
        values: Some(vec!["node-a".into()]),
    };
    let bare = moved_pod(Pod::default(), "session-keynote-m1", "node-a");
    assert_eq!(bare.metadata.name.as_deref(), Some("session-keynote-m1"));
    assert_eq!(exclusions(&bare), vec![vec![not_a.clone()]]);

    // Terms are alternatives: the exclusion joins each, and the placement's own rules stay.
    let placed = Pod {
        spec: Some(PodSpec {
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![term("gpu"), term("media")],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let moved = moved_pod(placed, "session-keynote-m1", "node-a");
    assert_eq!(exclusions(&moved), vec![vec![not_a.clone()], vec![not_a]]);
    let terms = &moved
        .spec
        .unwrap()
        .affinity
        .unwrap()
        .node_affinity
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .unwrap()
        .node_selector_terms;
    assert_eq!(terms[0].match_expressions, term("gpu").match_expressions);
    assert_eq!(terms[1].match_expressions, term("media").match_expressions);
}
