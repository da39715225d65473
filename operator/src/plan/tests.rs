//! Tests of the pod and decision planning, with small builders and a pinned clock.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use roundtable_crds::{
    LivePhase, MediaNetwork, NetworkMode, Placement, Session, SessionSpec, SfuPodSettings,
};

use super::decide::{
    Child, ChildFailure, Counts, Observed, POD_LOST, PodAction, PodState, Problem, Restarts,
    Severity, decide, room_desired,
};
use super::pod::{disruption_budget, endpoint, host_port_of, labels, pod_name, sfu_pod};
use super::schedule::{Desired, Over};
use crate::config::OperatorConfig;
use roundtable_crds::live_room::LiveRoom;

const POLL: Duration = Duration::from_secs(5);

fn now() -> Timestamp {
    "2026-12-10T18:00:00Z".parse().unwrap()
}

fn session(name: &str, yaml_spec: &str) -> Session {
    let spec: SessionSpec = serde_yaml::from_str(yaml_spec).unwrap();
    let mut session = Session::new(name, spec);
    session.metadata.namespace = Some("events".into());
    session
}

fn owner() -> OwnerReference {
    OwnerReference {
        api_version: "roundtable.dev/v1alpha1".into(),
        kind: "Session".into(),
        name: "s".into(),
        uid: "uid-1".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The origin pod of `room` on host port 31000 with the default operator config.
fn pod_on_31000(room: &LiveRoom, settings: &SfuPodSettings) -> k8s_openapi::api::core::v1::Pod {
    sfu_pod(
        room,
        settings,
        &OperatorConfig::default(),
        31000,
        None,
        owner(),
    )
}

fn env_of(pod: &k8s_openapi::api::core::v1::Pod, name: &str) -> Option<String> {
    pod.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

#[test]
fn the_pod_is_sized_from_the_limits_and_carries_them() {
    let room = LiveRoom::from(&session(
        "panel",
        "{event: gala, title: Panel, maxParticipants: 20, share: {policy: InviteOnly, invitees: [a]}}",
    ));
    let pod = sfu_pod(
        &room,
        &SfuPodSettings::default(),
        &OperatorConfig::default(),
        31005,
        None,
        owner(),
    );
    assert_eq!(pod.metadata.name.as_deref(), Some("session-panel"));
    let container = &pod.spec.as_ref().unwrap().containers[0];
    let resources = container.resources.as_ref().unwrap();
    // 20 on camera, 150 watching (the cap for more than 10 on camera).
    let size = super::sizing::pod_size(20, 150, OperatorConfig::default().sfu_max_cores);
    assert_eq!(
        resources.requests.as_ref().unwrap()["cpu"].0,
        size.cpu_quantity()
    );
    assert_eq!(resources.limits, resources.requests, "Guaranteed QoS");
    // 3380 streams need ~5 cores: the pod gets the most one pod may have, a thread each.
    assert_eq!(size.cpu_quantity(), "2100m");
    assert_eq!(env_of(&pod, "SFU_THREADS").as_deref(), Some("2"));
    assert_eq!(env_of(&pod, "SFU_MAX_ON_CAMERA").as_deref(), Some("20"));
    assert_eq!(env_of(&pod, "SFU_MAX_WATCHERS").as_deref(), Some("150"));
    assert_eq!(
        env_of(&pod, "SFU_SHARE_POLICY").as_deref(),
        Some("invite-only")
    );
    assert_eq!(
        env_of(&pod, "SFU_ROOM").as_deref(),
        Some("session:events:panel")
    );
    assert_eq!(host_port_of(&pod), Some(31005));
    let security = pod
        .spec
        .as_ref()
        .unwrap()
        .security_context
        .as_ref()
        .unwrap();
    assert_eq!(
        (security.run_as_non_root, security.run_as_user),
        (Some(true), Some(65532)),
        "the images' non-root user, whatever the image says"
    );
    let locked = container.security_context.as_ref().unwrap();
    assert_eq!(locked.read_only_root_filesystem, Some(true));
    assert_eq!(
        locked.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    let ports = container.ports.as_ref().unwrap();
    assert!(
        ports
            .iter()
            .any(|p| p.protocol.as_deref() == Some("UDP") && p.host_port == Some(31005))
    );
    assert_eq!(
        pod.metadata.owner_references.as_ref().unwrap()[0].controller,
        Some(true)
    );
}

#[test]
fn an_events_resources_override_the_formula_and_placement_is_applied() {
    let room = LiveRoom::from(&session("s", "{event: gala, title: S}"));
    let settings: SfuPodSettings = serde_yaml::from_str(
        "{placement: {nodeSelector: {pool: media}, priorityClassName: live, tolerations: [{key: media, operator: Exists}]}, resources: {requests: {cpu: '2'}}}",
    )
    .unwrap();
    let pod = pod_on_31000(&room, &settings);
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.node_selector.as_ref().unwrap()["pool"], "media");
    assert_eq!(spec.priority_class_name.as_deref(), Some("live"));
    assert_eq!(spec.tolerations.as_ref().unwrap().len(), 1);
    let resources = spec.containers[0].resources.as_ref().unwrap();
    assert_eq!(resources.requests.as_ref().unwrap()["cpu"].0, "2");
    let spread = &spec.topology_spread_constraints.as_ref().unwrap()[0];
    assert_eq!(spread.topology_key, "kubernetes.io/hostname");
    assert_eq!(
        spread
            .label_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["roundtable.dev/event"],
        "gala",
        "an event's sessions spread across nodes"
    );
}

#[test]
fn an_events_bandwidth_estimation_reaches_its_sfu_pods() {
    let room = LiveRoom::from(&session("s", "{event: gala, title: S}"));
    let pod = |yaml: &str| {
        let settings: SfuPodSettings = serde_yaml::from_str(yaml).unwrap();
        pod_on_31000(&room, &settings)
    };
    assert_eq!(
        env_of(&pod("{bandwidthEstimation: gcc}"), "SFU_BWE").as_deref(),
        Some("gcc")
    );
    assert_eq!(
        env_of(&pod("{bandwidthEstimation: feedback}"), "SFU_BWE").as_deref(),
        Some("feedback")
    );
    assert_eq!(env_of(&pod("{}"), "SFU_BWE"), None, "sfu-node's default");
    assert!(serde_yaml::from_str::<SfuPodSettings>("{bandwidthEstimation: fast}").is_err());
    // Every value the CRD allows is one sfu-node's `--bwe` takes.
    for bwe in [
        roundtable_crds::BandwidthEstimation::Feedback,
        roundtable_crds::BandwidthEstimation::Gcc,
    ] {
        assert!(
            <sfu_node::media::Bwe as clap::ValueEnum>::from_str(bwe.as_str(), false).is_ok(),
            "sfu-node --bwe {}",
            bwe.as_str()
        );
    }
}

#[test]
fn load_balancer_mode_uses_no_host_port() {
    let room = LiveRoom::from(&session("s", "{event: gala, title: S}"));
    let settings = SfuPodSettings {
        network: Some(MediaNetwork {
            mode: NetworkMode::LoadBalancer,
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = pod_on_31000(&room, &settings);
    let ports = pod.spec.unwrap().containers[0].ports.clone().unwrap();
    assert!(ports.iter().all(|p| p.host_port.is_none()));
}

#[test]
fn the_endpoint_is_the_advertised_address_or_the_nodes() {
    let plain = SfuPodSettings::default();
    assert_eq!(
        endpoint(&plain, Some("10.1.2.3"), 31000).as_deref(),
        Some("10.1.2.3:31000")
    );
    assert_eq!(endpoint(&plain, None, 31000), None);
    let advertised = SfuPodSettings {
        network: Some(MediaNetwork {
            advertise_address: Some("media.example.com".into()),
            ..Default::default()
        }),
        placement: Some(Placement::default()),
        ..Default::default()
    };
    assert_eq!(
        endpoint(&advertised, Some("10.1.2.3"), 31000).as_deref(),
        Some("media.example.com:31000")
    );
}

#[test]
fn long_names_are_shortened_to_a_dns_label_without_collisions() {
    let a = LiveRoom::from(&session(
        &format!("{}-a", "x".repeat(70)),
        "{event: e, title: t}",
    ));
    let b = LiveRoom::from(&session(
        &format!("{}-b", "x".repeat(70)),
        "{event: e, title: t}",
    ));
    assert!(pod_name(&a).len() <= 63);
    assert_ne!(pod_name(&a), pod_name(&b));
}

#[test]
fn the_disruption_budget_selects_exactly_the_origin_pod() {
    let room = LiveRoom::from(&session("s", "{event: gala, title: S}"));
    let pdb = disruption_budget(&room, owner());
    let selector = pdb.spec.unwrap().selector.unwrap().match_labels.unwrap();
    let pod_labels = labels(&room);
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
}

fn live() -> Desired {
    Desired::Live { until: None }
}

fn status_of(plan: &super::decide::Plan, type_: &str) -> (bool, &'static str) {
    let c = plan.conditions.iter().find(|c| c.type_ == type_).unwrap();
    (c.status, c.reason)
}

#[test]
fn a_live_room_without_a_pod_creates_one() {
    let plan = decide(
        live(),
        &Observed::default(),
        Some(LivePhase::Scheduled),
        now(),
        POLL,
    );
    assert_eq!(plan.pod, PodAction::Ensure);
    assert_eq!(plan.phase, LivePhase::Starting);
    assert_eq!(plan.event.unwrap().reason, "Starting");
}

#[test]
fn an_unschedulable_pod_says_why() {
    let observed = Observed {
        pod: Some(PodState::Unscheduled {
            unschedulable: Some("0/3 nodes are available: 3 Insufficient cpu.".into()),
        }),
        ..Default::default()
    };
    let plan = decide(live(), &observed, Some(LivePhase::Starting), now(), POLL);
    assert_eq!(plan.phase, LivePhase::Starting);
    assert_eq!(status_of(&plan, "PodScheduled"), (false, "Unschedulable"));
    assert!(
        plan.conditions
            .iter()
            .any(|c| c.message.contains("Insufficient cpu"))
    );
}

#[test]
fn a_ready_pod_is_live_with_its_counts() {
    let counts = Counts {
        on_camera: 1,
        watching: 7,
        unique_joiners: Some(8),
        broadcasting: false,
        ..Counts::default()
    };
    let observed = Observed {
        pod: Some(PodState::Running { ready: true }),
        counts: Some(counts),
        ..Default::default()
    };
    let plan = decide(live(), &observed, Some(LivePhase::Starting), now(), POLL);
    assert_eq!(plan.phase, LivePhase::Live);
    assert_eq!(status_of(&plan, "Ready"), (true, "Live"));
    assert_eq!(plan.counts, Some(counts));
    assert_eq!(plan.event.unwrap().reason, "Live");
    assert_eq!(plan.requeue_after, Some(POLL), "counts are polled");
    // Already live: no repeated Event.
    assert_eq!(
        decide(live(), &observed, Some(LivePhase::Live), now(), POLL).event,
        None
    );
}

#[test]
fn a_crashed_pod_is_replaced_and_says_so() {
    let observed = Observed {
        pod: Some(PodState::Exited {
            message: "exit code 101".into(),
        }),
        ..Default::default()
    };
    let plan = decide(live(), &observed, Some(LivePhase::Live), now(), POLL);
    assert_eq!(plan.pod, PodAction::Replace);
    assert_eq!(status_of(&plan, "Degraded"), (true, "PodFailed"));
    assert!(plan.event.unwrap().warning);
    // Once it is gone, a new pod is created with a PodReplaced warning.
    let plan = decide(
        live(),
        &Observed::default(),
        Some(LivePhase::Starting),
        now(),
        POLL,
    );
    assert_eq!(plan.pod, PodAction::Ensure);
    assert_eq!(plan.event.unwrap().reason, "PodReplaced");
}

#[test]
fn an_ended_room_drains_then_ends() {
    let running = Observed {
        pod: Some(PodState::Running { ready: true }),
        ..Default::default()
    };
    let plan = decide(
        Desired::Over(Over::EndedByOrganiser),
        &running,
        Some(LivePhase::Live),
        now(),
        POLL,
    );
    assert_eq!(
        (plan.pod, plan.phase),
        (PodAction::Drain, LivePhase::Draining)
    );
    let draining = Observed {
        pod: Some(PodState::Terminating),
        ..Default::default()
    };
    let plan = decide(
        Desired::Over(Over::EndedByOrganiser),
        &draining,
        Some(LivePhase::Draining),
        now(),
        POLL,
    );
    assert_eq!(
        (plan.pod, plan.phase),
        (PodAction::Keep, LivePhase::Draining)
    );
    let plan = decide(
        Desired::Over(Over::EndedByOrganiser),
        &Observed::default(),
        Some(LivePhase::Draining),
        now(),
        POLL,
    );
    assert_eq!(plan.phase, LivePhase::Ended);
    assert_eq!(plan.event.unwrap().reason, "Ended");
}

#[test]
fn a_missing_event_blocks_the_room_with_a_reason() {
    let observed = Observed {
        problems: vec![Problem {
            reason: "EventNotFound",
            message: "LiveEvent gala does not exist in namespace events".into(),
            severity: Severity::StopsRoom,
        }],
        ..Default::default()
    };
    let plan = decide(live(), &observed, None, now(), POLL);
    assert_eq!(plan.pod, PodAction::Keep);
    assert_eq!(plan.phase, LivePhase::Failed);
    assert_eq!(status_of(&plan, "Ready"), (false, "EventNotFound"));
    assert!(plan.event.unwrap().warning, "a Warning Event says it");
    // A live room whose event is deleted is drained, and stays Failed (not Ended).
    let running = Observed {
        pod: Some(PodState::Running { ready: true }),
        ..observed.clone()
    };
    let plan = decide(live(), &running, Some(LivePhase::Live), now(), POLL);
    assert_eq!(
        (plan.pod, plan.phase),
        (PodAction::Drain, LivePhase::Draining)
    );
    assert_eq!(
        status_of(&plan, "ReferencesResolved"),
        (false, "EventNotFound")
    );
}

#[test]
fn an_unknown_ticket_type_is_reported_but_does_not_stop_the_room() {
    let observed = Observed {
        problems: vec![Problem {
            reason: "UnknownTicketType",
            message: "ticket type platinum is not one of the event's: general, vip".into(),
            severity: Severity::Warning,
        }],
        ..Default::default()
    };
    let plan = decide(live(), &observed, None, now(), POLL);
    assert_eq!(plan.pod, PodAction::Ensure);
    assert_eq!(
        status_of(&plan, "ReferencesResolved"),
        (false, "UnknownTicketType")
    );
}

#[test]
fn a_waiting_room_wakes_at_its_warm_up() {
    let wake = "2026-12-10T18:30:00Z".parse().unwrap();
    let plan = decide(
        Desired::Waiting {
            wake_at: Some(wake),
        },
        &Observed::default(),
        None,
        now(),
        POLL,
    );
    assert_eq!(plan.phase, LivePhase::Scheduled);
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(1800)));
}

#[test]
fn rooms_run_from_a_join_request_until_idle() {
    let idle = jiff::SignedDuration::from_mins(5);
    let asked: Timestamp = "2026-12-10T17:58:00Z".parse().unwrap();
    assert!(matches!(
        room_desired(Some(asked), None, idle, now()),
        Desired::Live { .. }
    ));
    let long_ago: Timestamp = "2026-12-10T17:50:00Z".parse().unwrap();
    assert_eq!(
        room_desired(Some(long_ago), None, idle, now()),
        Desired::Waiting { wake_at: None }
    );
    // People in the room keep it alive.
    assert!(matches!(
        room_desired(Some(long_ago), Some(now()), idle, now()),
        Desired::Live { .. }
    ));
    assert_eq!(
        room_desired(None, None, idle, now()),
        Desired::Waiting { wake_at: None }
    );
}

fn message_of(plan: &super::decide::Plan, type_: &str) -> String {
    plan.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

#[test]
fn a_replaced_pod_keeps_the_room_degraded_until_the_new_one_is_ready_and_is_counted() {
    // The pod vanished while live: a replacement is created and counted.
    let plan = decide(
        live(),
        &Observed {
            had_pod: true,
            ..Default::default()
        },
        Some(LivePhase::Live),
        now(),
        POLL,
    );
    assert_eq!(plan.pod, PodAction::Ensure);
    assert_eq!(status_of(&plan, "Degraded"), (true, "PodReplaced"));
    assert_eq!(plan.restarts.count, 1);
    assert_eq!(plan.restarts.last.as_ref().unwrap().0, now());
    assert!(POD_LOST.contains(&"PodReplaced"));
    // While the replacement starts, still degraded.
    let starting = Observed {
        pod: Some(PodState::Running { ready: false }),
        degraded: Some(message_of(&plan, "Degraded")),
        restarts: plan.restarts.clone(),
        ..Default::default()
    };
    let plan = decide(live(), &starting, Some(LivePhase::Starting), now(), POLL);
    assert_eq!(status_of(&plan, "Degraded"), (true, "PodReplaced"));
    assert_eq!(plan.restarts.count, 1, "counted once");
    // Ready again: not degraded, and the condition still tells what happened.
    let ready = Observed {
        pod: Some(PodState::Running { ready: true }),
        restarts: plan.restarts.clone(),
        ..Default::default()
    };
    let plan = decide(live(), &ready, Some(LivePhase::Starting), now(), POLL);
    assert_eq!(status_of(&plan, "Degraded"), (false, "Recovered"));
    assert!(
        message_of(&plan, "Degraded").contains("replaced 1 time"),
        "{}",
        message_of(&plan, "Degraded")
    );
}

#[test]
fn a_room_over_before_it_ran_says_why_and_an_idle_room_is_not_ended() {
    let past = "2026-12-01T18:00:00Z".parse().unwrap();
    let plan = decide(
        Desired::Over(Over::EndPassed { at: past }),
        &Observed::default(),
        None,
        now(),
        POLL,
    );
    assert_eq!(plan.phase, LivePhase::Ended);
    assert_eq!(status_of(&plan, "Ready"), (false, "EndedBeforeStart"));
    let event = plan.event.unwrap();
    assert_eq!((event.warning, event.reason), (true, "ScheduleInPast"));
    // A room on demand nobody asked to join is idle, not ended, and says nothing.
    let plan = decide(
        Desired::Over(Over::Idle),
        &Observed::default(),
        None,
        now(),
        POLL,
    );
    assert_eq!(status_of(&plan, "Ready"), (false, "Idle"));
    assert_eq!(plan.event, None);
    // One that ran and went idle is idle again, with one Ended event for its pod.
    let plan = decide(
        Desired::Over(Over::Idle),
        &Observed::default(),
        Some(LivePhase::Draining),
        now(),
        POLL,
    );
    assert_eq!(status_of(&plan, "Ready"), (false, "Idle"));
    assert_eq!(plan.event.unwrap().reason, "Ended");
    // A session that ran and reached its end has ended.
    let plan = decide(
        Desired::Over(Over::EndPassed { at: past }),
        &Observed::default(),
        Some(LivePhase::Draining),
        now(),
        POLL,
    );
    assert_eq!(status_of(&plan, "Ready"), (false, "Ended"));
}

#[test]
fn a_refused_pod_makes_the_room_failed_with_the_api_servers_words_once() {
    let plan = decide(live(), &Observed::default(), None, now(), POLL);
    let failure = ChildFailure::from_api(
        Child::Pod,
        422,
        "Invalid",
        "Pod \"session-panel\" is invalid: spec.containers[0].resources.requests[cpu]: Invalid value: \"lots\"",
    );
    assert_eq!(failure.reason, "PodInvalid");
    let failed = plan.clone().child_failed(
        failure.clone(),
        None,
        &Restarts::default(),
        Duration::from_secs(4),
    );
    assert_eq!(failed.phase, LivePhase::Failed);
    assert_eq!(status_of(&failed, "Ready"), (false, "PodInvalid"));
    assert!(message_of(&failed, "Ready").contains("requests[cpu]"));
    assert!(failed.event.as_ref().unwrap().warning);
    assert_eq!(failed.requeue_after, Some(Duration::from_secs(4)));
    // The same refusal again: no second Event.
    let again = plan.child_failed(
        failure,
        Some("PodInvalid"),
        &Restarts::default(),
        Duration::from_secs(8),
    );
    assert_eq!(again.event, None);
    let forbidden = ChildFailure::from_api(
        Child::Pod,
        403,
        "Forbidden",
        "no PriorityClass with name media was found",
    );
    assert_eq!(forbidden.reason, "PodForbidden");
}

#[test]
fn a_pod_the_kubelet_cannot_start_fails_the_room_until_it_can() {
    let stuck = Observed {
        pod: Some(PodState::Stuck {
            reason: "CreateContainerConfigError".into(),
            message: "secret \"roundtable-join-token\" not found".into(),
        }),
        ..Default::default()
    };
    let plan = decide(live(), &stuck, Some(LivePhase::Starting), now(), POLL);
    assert_eq!((plan.pod, plan.phase), (PodAction::Keep, LivePhase::Failed));
    assert_eq!(status_of(&plan, "Ready"), (false, "PodCannotStart"));
    assert!(message_of(&plan, "Ready").contains("roundtable-join-token"));
    assert!(plan.event.unwrap().warning);
}

#[test]
fn a_missing_join_token_secret_blocks_the_start_but_not_a_running_pod() {
    let problem = Problem {
        reason: "JoinTokenSecretMissing",
        message: "the Secret roundtable-join-token does not exist".into(),
        severity: Severity::BlocksStart,
    };
    let waiting = Observed {
        problems: vec![problem.clone()],
        ..Default::default()
    };
    let plan = decide(live(), &waiting, None, now(), POLL);
    assert_eq!((plan.pod, plan.phase), (PodAction::Keep, LivePhase::Failed));
    let running = Observed {
        pod: Some(PodState::Running { ready: true }),
        problems: vec![problem],
        ..Default::default()
    };
    let plan = decide(live(), &running, Some(LivePhase::Live), now(), POLL);
    assert_eq!((plan.pod, plan.phase), (PodAction::Keep, LivePhase::Live));
}

#[test]
fn long_names_become_label_values_that_fit() {
    let long = "a".repeat(70);
    let s = session(&long, "event: gala\ntitle: T\n");
    let room = LiveRoom::from(&s);
    for (key, value) in labels(&room) {
        assert!(value.len() <= 63, "{key}={value}");
    }
    assert_ne!(
        super::pod::label_value(&long),
        super::pod::label_value(&"a".repeat(71))
    );
    let pdb = disruption_budget(&room, owner());
    let spec = pdb.spec.unwrap();
    assert_eq!(
        spec.min_available,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    assert!(spec.max_unavailable.is_none());
}
