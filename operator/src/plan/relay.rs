//! Relay SFU pods: which should exist for a room, what each looks like, and what the room's
//! status says of them.
//!
//! A live session or stage has one origin pod and `spec.relays` relay pods,
//! `<origin pod>-relay-<i>` for `i` in `0..relays`. A relay runs the origin's image and
//! settings plus `--origin http://<origin pod IP>:<signalling port>` and
//! `--max-watchers <watchersPerRelay>` (its own capacity). Relays exist only while the origin is
//! live (ready, with an address); scaling in removes the highest indexes first, so the
//! remaining names stay `0..relays`. In the LoadBalancer and NodePort network modes each relay
//! has its own Service, like the origin ([`super::service::relay_service`]).

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use roundtable_crds::{Autoscaling, RelayPod, SfuPodSettings, limits};

use super::autoscale::{self, Policy, State};
use super::decide::{EventPlan, PodState};
use super::pod::{
    CONTAINER, LABEL_KIND, LABEL_ROLE, LABEL_ROOM, label_value, labels, pod_name, sfu_pod,
};
use crate::config::OperatorConfig;
use roundtable_crds::live_room::LiveRoom;

/// `roundtable.dev/role` of relay pods.
pub const ROLE: &str = "relay";
/// The label carrying a relay pod's index (its own Service selects it by that).
pub const LABEL_INDEX: &str = "roundtable.dev/relay";

/// What a room asks of its relays.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RelaySpec {
    /// `spec.relays` (the scale subresource's replicas).
    pub replicas: i32,
    pub autoscaling: Option<Autoscaling>,
    /// Watchers one relay takes: `autoscaling.watchersPerRelay`, never above what one pod
    /// may serve with the room's people on camera (150 with more than 10).
    pub watchers_per_relay: i32,
    /// `status.lowerSince`: the autoscaler's pending scale-in.
    pub lower_since: Option<Timestamp>,
}

impl RelaySpec {
    /// The relay spec of a room with `max_on_camera` people on camera.
    pub fn new(
        replicas: Option<i32>,
        autoscaling: Option<&Autoscaling>,
        max_on_camera: i32,
        lower_since: Option<Timestamp>,
    ) -> Self {
        let asked = autoscaling.cloned().unwrap_or_default().watchers_per_relay;
        RelaySpec {
            replicas: replicas.unwrap_or(0),
            autoscaling: autoscaling.cloned(),
            watchers_per_relay: limits::relay_watchers(max_on_camera, asked),
            lower_since,
        }
    }

    /// The autoscaler's policy, when autoscaling is on.
    pub fn policy(&self) -> Option<Policy> {
        let a = self.autoscaling.as_ref().filter(|a| a.enabled)?;
        let unsigned = |v: i32| u32::try_from(v).unwrap_or(0);
        Some(Policy {
            min_relays: unsigned(a.min_relays),
            max_relays: unsigned(a.max_relays),
            watchers_per_relay: unsigned(self.watchers_per_relay),
            headroom: unsigned(a.headroom),
            scale_down_delay: SignedDuration::from_secs(a.scale_down_delay_seconds.into()),
        })
    }
}

/// What the autoscaler wants done to `spec.relays`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaling {
    /// The new `spec.relays`, when it changes.
    pub replicas: Option<i32>,
    /// The `status.lowerSince` to keep.
    pub lower_since: Option<Timestamp>,
    /// When a pending scale-in becomes due.
    pub recheck_at: Option<Timestamp>,
    pub event: Option<EventPlan>,
}

/// The autoscaler's decision for a live room whose origin reports `watching`; None when
/// autoscaling is off (then `spec.relays` belongs to whoever scales the room).
pub fn autoscale(spec: &RelaySpec, watching: i32, now: Timestamp) -> Option<Scaling> {
    let policy = spec.policy()?;
    let current = u32::try_from(spec.replicas).unwrap_or(0);
    let watching = u32::try_from(watching).unwrap_or(0);
    let state = State {
        relays: current,
        lower_since: spec.lower_since,
    };
    let decision = autoscale::decide(&policy, watching, state, now);
    let to = decision.relays;
    let event = (to != current).then(|| EventPlan {
        warning: false,
        reason: if to > current {
            "ScaledOut"
        } else {
            "ScaledIn"
        },
        note: format!("relays {current} → {to} for {watching} watching"),
    });
    Some(Scaling {
        replicas: (to != current).then(|| i32::try_from(to).unwrap_or(i32::MAX)),
        lower_since: decision.state.lower_since,
        recheck_at: decision.recheck_at,
        event,
    })
}

/// Name of relay `index` of a room.
pub fn relay_name(room: &LiveRoom, index: u32) -> String {
    format!("{}-relay-{index}", pod_name(room))
}

/// The relay index of a pod of `room`, from its name.
pub fn index_of(room: &LiveRoom, name: &str) -> Option<u32> {
    name.strip_prefix(&format!("{}-relay-", pod_name(room)))?
        .parse()
        .ok()
}

/// Labels of relay `index` of a room.
pub fn relay_labels(room: &LiveRoom, index: u32) -> BTreeMap<String, String> {
    let mut labels = labels(room);
    labels.insert(LABEL_ROLE.to_string(), ROLE.to_string());
    labels.insert(LABEL_INDEX.to_string(), index.to_string());
    labels
}

/// `status.selector`: the label selector of a room's relay pods, as the scale subresource and
/// a HorizontalPodAutoscaler read it.
pub fn selector(room: &LiveRoom) -> String {
    format!(
        "{LABEL_KIND}={},{LABEL_ROOM}={},{LABEL_ROLE}={ROLE}",
        room.kind.as_str(),
        label_value(&room.name)
    )
}

/// The origin's signalling URL as a relay reaches it (inside the cluster).
pub fn origin_url(origin_ip: &str, port: u16) -> String {
    format!("http://{origin_ip}:{port}")
}

/// What a relay pod is made from, besides the room and its settings.
#[derive(Debug, Clone)]
pub struct RelayPodInput<'a> {
    pub index: u32,
    pub host_port: u16,
    pub origin_url: &'a str,
    pub watchers_per_relay: i32,
    /// What it announces in its ICE candidates (its Service's address in the Service modes;
    /// None: its node's).
    pub advertise: Option<String>,
}

/// Relay pod `input.index` of `room`: the origin's pod with the relay's name, labels and
/// capacity (sized for it), plus `--origin` and `--max-watchers`.
pub fn relay_pod(
    room: &LiveRoom,
    settings: &SfuPodSettings,
    config: &OperatorConfig,
    input: &RelayPodInput<'_>,
    owner: OwnerReference,
) -> Pod {
    let sized = LiveRoom {
        max_watchers: input.watchers_per_relay,
        ..room.clone()
    };
    let mut pod = sfu_pod(
        &sized,
        settings,
        config,
        input.host_port,
        input.advertise.clone(),
        owner,
    );
    pod.metadata.name = Some(relay_name(room, input.index));
    pod.metadata.labels = Some(relay_labels(room, input.index));
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers[0].args = Some(vec![
            "--origin".into(),
            input.origin_url.to_string(),
            "--max-watchers".into(),
            input.watchers_per_relay.to_string(),
        ]);
    }
    pod
}

/// The origin URL a relay pod was started with (its `--origin` argument).
pub fn origin_of(pod: &Pod) -> Option<String> {
    let args = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == CONTAINER)?
        .args
        .as_ref()?;
    let at = args.iter().position(|a| a == "--origin")?;
    args.get(at + 1).cloned()
}

/// A relay pod that exists, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingRelay {
    pub index: u32,
    pub name: String,
    pub state: PodState,
    /// The origin URL it was started with (`--origin`); a relay of an earlier origin pod is
    /// replaced.
    pub origin: Option<String>,
}

/// What to do with the relay pods.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RelayActions {
    /// Indexes to create.
    pub create: Vec<u32>,
    /// Pods to delete: above the wanted count, exited, or following another origin.
    pub delete: Vec<String>,
}

/// The relay pods to create and delete so that `want` relays of `origin` run (`origin` None:
/// the origin is not live, no relay should run).
pub fn actions(want: u32, origin: Option<&str>, existing: &[ExistingRelay]) -> RelayActions {
    let want = if origin.is_some() { want } else { 0 };
    let mut delete = Vec::new();
    let mut kept = Vec::new();
    for relay in existing {
        let stale = relay.index >= want
            || matches!(relay.state, PodState::Exited { .. })
            || relay.origin.as_deref() != origin;
        match (&relay.state, stale) {
            (PodState::Terminating, _) => kept.push(relay.index),
            (_, true) => delete.push(relay.name.clone()),
            (_, false) => kept.push(relay.index),
        }
    }
    RelayActions {
        create: (0..want).filter(|i| !kept.contains(i)).collect(),
        delete,
    }
}

/// One relay as observed for the status: its state, endpoint and reported watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedRelay {
    pub index: u32,
    pub name: String,
    pub state: PodState,
    pub endpoint: Option<String>,
    /// `watching` from its `/stats`, when it could be read.
    pub watching: Option<i32>,
}

/// `status.relays` (ready relays) and `status.relayPods`, by index. A relay that is being
/// removed is listed as not ready: it takes no joins.
pub fn status(observed: &[ObservedRelay]) -> (i32, Vec<RelayPod>) {
    let mut sorted = observed.to_vec();
    sorted.sort_by_key(|r| r.index);
    let pods: Vec<RelayPod> = sorted
        .into_iter()
        .map(|r| RelayPod {
            ready: r.state == PodState::Running { ready: true } && r.endpoint.is_some(),
            name: r.name,
            endpoint: r.endpoint,
            watching: r.watching.unwrap_or(0),
        })
        .collect();
    let ready = pods.iter().filter(|p| p.ready).count();
    (i32::try_from(ready).unwrap_or(i32::MAX), pods)
}

/// Watchers connected to the origin itself: everyone it counts minus those on relays.
pub fn origin_watching(total: i32, relays: &[RelayPod]) -> i32 {
    (total - relays.iter().map(|r| r.watching).sum::<i32>()).max(0)
}

#[cfg(test)]
mod tests {
    use roundtable_crds::Session;

    use super::*;

    fn room() -> LiveRoom {
        let spec = serde_yaml::from_str(
            "{event: gala, title: S, maxWatchers: 2000, autoscaling: {enabled: true}}",
        )
        .unwrap();
        let mut session = Session::new("big", spec);
        session.metadata.namespace = Some("events".into());
        LiveRoom::from(&session)
    }

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "roundtable.dev/v1alpha1".into(),
            kind: "Session".into(),
            name: "big".into(),
            uid: "uid-1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn spec(replicas: i32, enabled: bool) -> RelaySpec {
        let autoscaling = Autoscaling {
            enabled,
            ..Default::default()
        };
        RelaySpec::new(Some(replicas), Some(&autoscaling), 10, None)
    }

    fn relay(index: u32, state: PodState, origin: &str) -> ExistingRelay {
        ExistingRelay {
            index,
            name: format!("session-big-relay-{index}"),
            state,
            origin: Some(origin.into()),
        }
    }

    const ORIGIN: &str = "http://10.0.0.5:31000";

    #[test]
    fn a_relay_is_the_origins_pod_pointed_at_the_origin_with_its_own_capacity() {
        let room = room();
        assert_eq!(room.max_watchers, 2000, "autoscaling lifts the cap");
        let input = RelayPodInput {
            index: 1,
            host_port: 31007,
            origin_url: ORIGIN,
            watchers_per_relay: 500,
            advertise: None,
        };
        let pod = relay_pod(
            &room,
            &SfuPodSettings::default(),
            &OperatorConfig::default(),
            &input,
            owner(),
        );
        assert_eq!(pod.metadata.name.as_deref(), Some("session-big-relay-1"));
        let labels = pod.metadata.labels.clone().unwrap();
        assert_eq!(labels[LABEL_ROLE], "relay");
        for pair in selector(&room).split(',') {
            let (k, v) = pair.split_once('=').unwrap();
            assert_eq!(labels[k], v, "the selector matches the relay's labels");
        }
        assert_eq!(
            pod.metadata.owner_references.as_ref().unwrap()[0].uid,
            "uid-1"
        );
        let container = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            container.args.clone().unwrap(),
            ["--origin", ORIGIN, "--max-watchers", "500"]
        );
        let env = |name: &str| {
            container
                .env
                .as_ref()
                .unwrap()
                .iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
        };
        assert_eq!(env("SFU_ROOM").as_deref(), Some("session:events:big"));
        assert_eq!(env("SFU_MAX_WATCHERS").as_deref(), Some("500"));
        assert_eq!(env("SFU_RELAYED_WATCHERS").as_deref(), Some("false"));
        assert_eq!(super::super::pod::host_port_of(&pod), Some(31007));
        assert_eq!(origin_of(&pod).as_deref(), Some(ORIGIN));
        assert_eq!(index_of(&room, "session-big-relay-1"), Some(1));
        assert_eq!(index_of(&room, "session-big"), None);
    }

    #[test]
    fn the_origin_of_an_autoscaled_room_takes_the_rooms_watchers_and_serves_one_pods_share() {
        let room = room();
        let origin = super::super::pod::sfu_pod(
            &room,
            &SfuPodSettings::default(),
            &OperatorConfig::default(),
            31000,
            None,
            owner(),
        );
        let env = origin.spec.unwrap().containers[0].env.clone().unwrap();
        let value = |name: &str| {
            env.iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
        };
        assert_eq!(value("SFU_MAX_WATCHERS").as_deref(), Some("2000"));
        assert_eq!(value("SFU_RELAYED_WATCHERS").as_deref(), Some("true"));
    }

    #[test]
    fn relays_run_only_while_the_origin_is_live_and_the_highest_go_first() {
        let running = PodState::Running { ready: true };
        let existing = [
            relay(0, running.clone(), ORIGIN),
            relay(1, running.clone(), ORIGIN),
            relay(2, running.clone(), ORIGIN),
        ];
        let scale_in = actions(1, Some(ORIGIN), &existing);
        assert_eq!(
            scale_in.delete,
            ["session-big-relay-1", "session-big-relay-2"]
        );
        assert!(scale_in.create.is_empty());
        let scale_out = actions(5, Some(ORIGIN), &existing);
        assert_eq!(scale_out.create, [3, 4]);
        assert!(scale_out.delete.is_empty());
        let gone = actions(5, None, &existing);
        assert_eq!(gone.delete.len(), 3, "no origin, no relays");
        assert!(gone.create.is_empty());
    }

    #[test]
    fn a_failed_relay_or_one_of_a_replaced_origin_is_recreated() {
        let existing = [
            relay(
                0,
                PodState::Exited {
                    message: "x".into(),
                },
                ORIGIN,
            ),
            relay(
                1,
                PodState::Running { ready: true },
                "http://10.0.0.9:31000",
            ),
            relay(2, PodState::Terminating, ORIGIN),
        ];
        let plan = actions(3, Some(ORIGIN), &existing);
        assert_eq!(plan.delete, ["session-big-relay-0", "session-big-relay-1"]);
        assert_eq!(
            plan.create,
            [0, 1],
            "a terminating pod keeps its name until gone"
        );
    }

    #[test]
    fn status_counts_ready_relays_with_an_endpoint() {
        let observed = [
            ObservedRelay {
                index: 1,
                name: "session-big-relay-1".into(),
                state: PodState::Running { ready: false },
                endpoint: Some("10.0.0.2:31001".into()),
                watching: None,
            },
            ObservedRelay {
                index: 0,
                name: "session-big-relay-0".into(),
                state: PodState::Running { ready: true },
                endpoint: Some("10.0.0.1:31000".into()),
                watching: Some(120),
            },
        ];
        let (ready, pods) = status(&observed);
        assert_eq!(ready, 1);
        assert_eq!(pods[0].name, "session-big-relay-0");
        assert!(pods[0].ready);
        assert_eq!(pods[0].watching, 120);
        assert!(!pods[1].ready);
        assert_eq!(origin_watching(300, &pods), 180);
    }

    #[test]
    fn the_autoscaler_writes_spec_relays_only_when_enabled_and_changed() {
        assert_eq!(autoscale(&spec(0, false), 5_000, at(0)), None);
        let out = autoscale(&spec(1, true), 1_200, at(0)).unwrap();
        assert_eq!(out.replicas, Some(3), "ceil((1200 + 50) / 500)");
        let event = out.event.unwrap();
        assert_eq!(event.reason, "ScaledOut");
        assert_eq!(event.note, "relays 1 → 3 for 1200 watching");
        let steady = autoscale(&spec(3, true), 1_200, at(0)).unwrap();
        assert_eq!(steady.replicas, None);
        assert_eq!(steady.event, None);
    }

    #[test]
    fn a_relay_takes_no_more_than_one_pod_may_serve() {
        let asked = Autoscaling {
            enabled: true,
            watchers_per_relay: 400,
            ..Default::default()
        };
        assert_eq!(
            RelaySpec::new(None, Some(&asked), 10, None).watchers_per_relay,
            400
        );
        assert_eq!(
            RelaySpec::new(None, Some(&asked), 20, None).watchers_per_relay,
            150,
            "more than 10 on camera"
        );
        assert_eq!(
            RelaySpec::new(None, None, 5, None).watchers_per_relay,
            500,
            "default"
        );
        let policy = RelaySpec::new(Some(2), Some(&asked), 20, None)
            .policy()
            .unwrap();
        assert_eq!(
            policy.watchers_per_relay, 150,
            "the autoscaler counts what relays take"
        );
    }

    #[test]
    fn scaling_in_waits_for_the_delay_kept_in_the_status() {
        let first = autoscale(&spec(3, true), 100, at(0)).unwrap();
        assert_eq!(first.replicas, None, "not yet");
        assert_eq!(first.lower_since, Some(at(0)));
        assert_eq!(first.recheck_at, Some(at(300)));
        let later = RelaySpec {
            lower_since: first.lower_since,
            ..spec(3, true)
        };
        let due = autoscale(&later, 100, at(300)).unwrap();
        assert_eq!(due.replicas, Some(1));
        assert_eq!(due.lower_since, None);
        assert_eq!(due.event.unwrap().reason, "ScaledIn");
    }
}
