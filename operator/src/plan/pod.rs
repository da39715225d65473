//! The SFU pod (and its disruption budget) a live room should have.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, ObjectFieldSelector, Pod, PodSecurityContext,
    PodSpec, Probe, ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext,
    TopologySpreadConstraint,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use roundtable_crds::{NetworkMode, RoomTheme, SfuPodSettings, SharePolicy};

use super::sizing::pod_size;
use crate::config::OperatorConfig;
use roundtable_crds::live_room::LiveRoom;

pub const LABEL_APP: &str = "app.kubernetes.io/name";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_KIND: &str = "roundtable.dev/kind";
pub const LABEL_ROOM: &str = "roundtable.dev/room";
pub const LABEL_EVENT: &str = "roundtable.dev/event";
pub const LABEL_ROLE: &str = "roundtable.dev/role";
pub const ANNOTATION_CONFIG_HASH: &str = "roundtable.dev/config-hash";
pub const APP: &str = "sfu-node";
pub const MANAGER: &str = "roundtable-operator";
/// Name of the sfu-node container.
pub const CONTAINER: &str = "sfu-node";

/// Name of a room's origin SFU pod: `<kind>-<name>`, shortened with a hash when it would not
/// fit a DNS label.
pub fn pod_name(room: &LiveRoom) -> String {
    label_value(&format!("{}-{}", room.kind.as_str(), room.name))
}

/// A name as a label value: label values are at most 63 characters, object names up to 253,
/// so a longer name is shortened with a hash of the whole (as [`pod_name`] does).
pub fn label_value(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_string();
    }
    let hash = fnv1a(name.as_bytes());
    let head = name[..54].trim_end_matches(['-', '.', '_']);
    format!("{head}-{hash:08x}")
}

/// Labels of every pod of a room; `roundtable.dev/role` tells origin from relays.
pub fn labels(room: &LiveRoom) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_APP.to_string(), APP.to_string()),
        (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
        (LABEL_KIND.to_string(), room.kind.as_str().to_string()),
        (LABEL_ROOM.to_string(), label_value(&room.name)),
        (LABEL_ROLE.to_string(), "origin".to_string()),
    ]);
    if let Some(event) = &room.event {
        labels.insert(LABEL_EVENT.to_string(), label_value(event));
    }
    labels
}

/// Where browsers reach the pod: the advertised address (or the node's) and the hostPort.
pub fn endpoint(settings: &SfuPodSettings, host_ip: Option<&str>, port: u16) -> Option<String> {
    let advertised = settings
        .network
        .as_ref()
        .and_then(|n| n.advertise_address.as_deref());
    advertised
        .or(host_ip)
        .map(|address| format!("{address}:{port}"))
}

/// The origin SFU pod of `room`, owned by `owner`, serving on UDP (media) and TCP
/// (signalling) `host_port` and announcing `advertise` (default: its node's address) in its
/// ICE candidates.
pub fn sfu_pod(
    room: &LiveRoom,
    settings: &SfuPodSettings,
    config: &OperatorConfig,
    host_port: u16,
    advertise: Option<String>,
    owner: OwnerReference,
) -> Pod {
    // Above one pod's cap (autoscaling on) relays serve the extra watchers: the origin is sized
    // for what one pod carries.
    let direct = room
        .max_watchers
        .min(roundtable_crds::limits::watcher_cap(room.max_on_camera));
    let size = pod_size(
        room.max_on_camera as u64,
        direct as u64,
        config.sfu_max_cores,
    );
    let resources = settings.resources.clone().unwrap_or_else(|| {
        let amounts = BTreeMap::from([
            ("cpu".to_string(), Quantity(size.cpu_quantity())),
            ("memory".to_string(), Quantity(size.memory_quantity())),
        ]);
        ResourceRequirements {
            requests: Some(amounts.clone()),
            limits: Some(amounts),
            ..Default::default()
        }
    });
    let placement = settings.placement.clone().unwrap_or_default();
    let host_port_mode = settings
        .network
        .as_ref()
        .is_none_or(|n| n.mode == NetworkMode::HostPort);
    let advertise = advertise
        .or_else(|| {
            settings
                .network
                .as_ref()
                .and_then(|n| n.advertise_address.clone())
        })
        .unwrap_or_else(|| "$(HOST_IP)".to_string());
    let port = i32::from(host_port);
    let pod_labels = labels(room);

    let mut env = vec![
        field_env("POD_IP", "status.podIP"),
        field_env("HOST_IP", "status.hostIP"),
        plain_env("SFU_ROOM", &room.room_id()),
        plain_env("SFU_KIND", room.kind.as_str()),
        plain_env("SFU_SHARE_POLICY", share_policy_arg(room.share_policy)),
        plain_env("SFU_THEME", theme_arg(room.theme)),
        plain_env("SFU_LOCKED", &room.locked.to_string()),
        plain_env("SFU_MAX_ON_CAMERA", &room.max_on_camera.to_string()),
        plain_env("SFU_MAX_WATCHERS", &room.max_watchers.to_string()),
        plain_env(
            "SFU_RELAYED_WATCHERS",
            &(room.max_watchers > direct).to_string(),
        ),
        plain_env("SFU_UDP_BIND", "$(POD_IP)"),
        plain_env("SFU_ICE_TCP", &config.sfu_ice_tcp.to_string()),
        plain_env("SFU_UDP_PORT", &port.to_string()),
        plain_env("SFU_HTTP_ADDR", &format!("$(POD_IP):{port}")),
        plain_env(
            "SFU_ADMIN_ADDR",
            &format!("$(POD_IP):{}", config.sfu_admin_port),
        ),
        plain_env("SFU_ADVERTISE_ADDR", &advertise),
        plain_env(
            "SFU_DRAIN_GRACE_SECONDS",
            &config.drain_grace_seconds.to_string(),
        ),
        token_key_env("SFU_TOKEN_KEY", config),
    ];
    if settings.resources.is_none() {
        // Sized here: a thread per core given. Given resources of its own instead, sfu-node
        // takes its threads from its CPU limit (or the node's CPUs without one).
        env.push(plain_env("SFU_THREADS", &size.threads.to_string()));
    }
    if let Some(bwe) = settings.bandwidth_estimation {
        env.push(plain_env("SFU_BWE", bwe.as_str()));
    }
    let host = |protocol: &str, name: &str| ContainerPort {
        name: Some(name.into()),
        container_port: port,
        host_port: host_port_mode.then_some(port),
        protocol: Some(protocol.into()),
        ..Default::default()
    };
    let admin_port = i32::from(config.sfu_admin_port);
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(admin_port),
            ..Default::default()
        }),
        period_seconds: Some(2),
        failure_threshold: Some(3),
        ..Default::default()
    };
    let spread_key = placement
        .spread_topology_key
        .clone()
        .unwrap_or_else(|| "kubernetes.io/hostname".into());
    let spread = room.event.as_ref().map(|event| {
        vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: spread_key,
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([
                    (LABEL_APP.to_string(), APP.to_string()),
                    (LABEL_EVENT.to_string(), label_value(event)),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        }]
    });

    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(room)),
            namespace: Some(room.namespace.clone()),
            labels: Some(pod_labels),
            annotations: Some(BTreeMap::from([(
                ANNOTATION_CONFIG_HASH.to_string(),
                config_hash(room, settings, host_port),
            )])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: CONTAINER.into(),
                image: Some(config.sfu_image.clone()),
                env: Some(env),
                ports: Some(vec![
                    host("UDP", "media"),
                    host("TCP", "signal"),
                    ContainerPort {
                        name: Some("admin".into()),
                        container_port: admin_port,
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    },
                ]),
                resources: Some(resources),
                security_context: Some(locked_down_container()),
                readiness_probe: Some(probe("/readyz")),
                liveness_probe: Some(Probe {
                    initial_delay_seconds: Some(5),
                    ..probe("/healthz")
                }),
                ..Default::default()
            }],
            restart_policy: Some("Never".into()),
            security_context: Some(non_root_pod()),
            termination_grace_period_seconds: Some(config.drain_grace_seconds),
            node_selector: placement.node_selector,
            tolerations: placement.tolerations,
            affinity: placement.affinity,
            priority_class_name: placement.priority_class_name,
            topology_spread_constraints: spread,
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            ..Default::default()
        }),
        status: None,
    }
}

/// `pod` as the origin pod `name` of a move away from node `avoid`: a required node affinity
/// keeps the scheduler off that node, added to every term of the placement's own (terms are
/// alternatives, so the exclusion must be part of each).
pub fn moved_pod(mut pod: Pod, name: &str, avoid: &str) -> Pod {
    pod.metadata.name = Some(name.to_string());
    let not_there = NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "NotIn".into(),
        values: Some(vec![avoid.to_string()]),
    };
    let spec = pod.spec.get_or_insert_with(Default::default);
    let affinity = spec.affinity.get_or_insert_with(Default::default);
    let node = affinity.node_affinity.get_or_insert_with(Default::default);
    let required = node
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(|| NodeSelector {
            node_selector_terms: Vec::new(),
        });
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_fields
            .get_or_insert_with(Vec::new)
            .push(not_there.clone());
    }
    pod
}

/// A PodDisruptionBudget that keeps a live room's origin pod from voluntary eviction (node
/// drains wait until the room ends). `minAvailable: 1` rather than `maxUnavailable: 0`: the
/// disruption controller then counts the selected pod itself instead of asking the pod's
/// owner (the Session) for a scale, whose replicas are the relays, not the origin.
pub fn disruption_budget(room: &LiveRoom, owner: OwnerReference) -> PodDisruptionBudget {
    let selector = BTreeMap::from([
        (LABEL_KIND.to_string(), room.kind.as_str().to_string()),
        (LABEL_ROOM.to_string(), label_value(&room.name)),
        (LABEL_ROLE.to_string(), "origin".to_string()),
    ]);
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(pod_name(room)),
            namespace: Some(room.namespace.clone()),
            labels: Some(labels(room)),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// A digest of everything the pod is built from; a pod whose annotation differs is outdated.
pub fn config_hash(room: &LiveRoom, settings: &SfuPodSettings, host_port: u16) -> String {
    let text = format!("{room:?}{settings:?}{host_port}");
    format!("{:08x}", fnv1a(text.as_bytes()))
}

/// The hostPort a pod was given, read back from its spec.
pub fn host_port_of(pod: &Pod) -> Option<u16> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find_map(|p| {
            (p.name.as_deref() == Some("media")).then(|| u16::try_from(p.container_port).ok())?
        })
}

/// `SFU_SHARE_POLICY` as sfu-node reads it.
pub fn share_policy_arg(policy: SharePolicy) -> &'static str {
    match policy {
        SharePolicy::Open => "open",
        SharePolicy::Moderated => "moderated",
        SharePolicy::InviteOnly => "invite-only",
    }
}

/// `SFU_THEME` as sfu-node reads it.
pub fn theme_arg(theme: RoomTheme) -> &'static str {
    match theme {
        RoomTheme::Meeting => "meeting",
        RoomTheme::Webinar => "webinar",
    }
}

/// The join-token key from the operator's Secret, resolved by the kubelet: pods that verify
/// or mint join tokens (SFU, recorder) need no API access.
pub(super) fn token_key_env(name: &str, config: &OperatorConfig) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: config.token_secret.clone(),
                key: config.token_secret_key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The non-root user of the images (`images/`, the Dockerfiles): pods run as it whatever the
/// image says, and volumes are made writable to its group.
pub const RUN_AS: i64 = 65532;

/// Pod-level security of every pod the operator makes: the images' non-root user, and volumes
/// (the recordings claim) group-owned by it, so a freshly provisioned volume is writable.
pub(super) fn non_root_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        fs_group: Some(RUN_AS),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Container-level security: no privilege escalation, no capabilities, a read-only root.
pub(super) fn locked_down_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn plain_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

pub(super) fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}
