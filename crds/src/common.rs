//! Types shared by several kinds: policies, lifecycle, and the SFU pod settings.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// CEL: a DNS label (RFC 1123), the shape of slugs and ticket type names.
pub(crate) const DNS_LABEL_CEL: &str = "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')";

/// Who may go on camera in a session.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SharePolicy {
    /// Anyone who may watch may share audio and video.
    #[default]
    Open,
    /// Attendees ask with "Request to share audio and video"; a moderator lets them on camera
    /// and may remove anyone from camera. Needs at least one moderator.
    Moderated,
    /// Only the people listed in `invitees` may share. Needs at least one invitee.
    InviteOnly,
}

/// Who may watch a session.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum WatchPolicy {
    /// Anyone with a ticket to the event.
    #[default]
    AnyTicket,
    /// Only holders of the ticket types listed in `ticketTypes`; for everyone else the session
    /// is neither listed nor joinable.
    TicketTypes,
}

/// How a scheduled room (session or stage) is started and ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Lifecycle {
    /// Follow `start` and `end`: live from shortly before `start` until `end`. Without a
    /// `start` it waits for an organiser's Start.
    #[default]
    Scheduled,
    /// Started by an organiser: live now, whatever `start` says, until `end` or Ended.
    Started,
    /// Ended by an organiser: drained and stopped for good.
    Ended,
}

/// CEL: an IP address or a DNS name (RFC 1123 subdomain).
const ADDRESS_CEL: &str = "isIP(self) || self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')";

/// Where and how the SFU pods of an event or a room run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SfuPodSettings {
    /// Node placement of the SFU pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// CPU and memory for each SFU pod. When unset the operator sizes the pod from the room's
    /// limits (see the README's sizing table); set it to override that formula.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resources_schema")]
    pub resources: Option<ResourceRequirements>,
    /// How media traffic reaches the SFU pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<MediaNetwork>,
    /// How each SFU estimates its viewers' bandwidth, which their video layers follow
    /// (default `feedback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_estimation: Option<BandwidthEstimation>,
}

/// The schema of `sfu.resources`: `requests` and `limits` maps whose every value must parse as
/// a Kubernetes quantity, so a typo (`cpu: lots`) is refused at apply time rather than when
/// the pod is created. Bounded maps keep the CEL rule within the API server's cost budget.
fn resources_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let quantities = serde_json::json!({
        "type": "object",
        "maxProperties": 16,
        "additionalProperties": {
            "x-kubernetes-int-or-string": true,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "maxLength": 64,
            "x-kubernetes-validations": [{
                "rule": "isQuantity(string(self))",
                "message": "every CPU and memory value must be a Kubernetes quantity such as 500m, 2, 256Mi or 1Gi",
            }],
        },
    });
    let described = |text: &str| {
        let mut map = quantities.clone();
        map["description"] = text.into();
        map
    };
    let schema = serde_json::json!({
        "type": "object",
        "description": "CPU and memory for each SFU pod. When unset the operator sizes the pod from the room's limits (see the README's sizing table); set it to override that formula.",
        "properties": {
            "requests": described("What the scheduler reserves for each SFU pod, e.g. {cpu: 500m, memory: 256Mi}."),
            "limits": described("The most each SFU pod may use."),
        },
    });
    schemars::Schema::try_from(schema).expect("a JSON object")
}

/// How the SFU pods estimate each viewer's bandwidth, which its video layers follow:
/// `feedback` (sfu-node's default: from the viewer's TWCC feedback, packets unpaced) or `gcc`
/// (str0m's delay-based GCC with probes and a pacer: finer on difficult networks, ~1.5× the
/// CPU per forwarded packet).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum BandwidthEstimation {
    /// From the viewer's TWCC feedback (loss and queueing delay), packets sent unpaced: the
    /// cheaper per forwarded packet.
    Feedback,
    /// str0m's delay-based GCC with padding probes and a pacer: finer adaptation on real
    /// networks, about 1.5× the SFU's CPU per forwarded packet.
    Gcc,
}

impl BandwidthEstimation {
    /// The value of sfu-node's `--bwe`.
    pub fn as_str(&self) -> &'static str {
        match self {
            BandwidthEstimation::Feedback => "feedback",
            BandwidthEstimation::Gcc => "gcc",
        }
    }
}

/// Node placement of SFU pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// Only nodes with all these labels run the SFU pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Taints the SFU pods tolerate, e.g. for a node pool dedicated to media.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Node and pod affinity of the SFU pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// PriorityClass of the SFU pods, so live media is not preempted by batch work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Topology key over which an event's parallel sessions are spread (default
    /// `kubernetes.io/hostname`: one node's failure takes down as few sessions as possible).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread_topology_key: Option<String>,
}

/// How WebRTC media reaches an SFU pod.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum NetworkMode {
    /// A UDP hostPort picked from the operator's port range, unique per node; the node's
    /// address is advertised. Cheapest and fastest where nodes have reachable addresses.
    #[default]
    HostPort,
    /// A Service of type LoadBalancer per SFU pod; its external address is advertised.
    LoadBalancer,
    /// A Service of type NodePort per SFU pod; the node's address and the node port are
    /// advertised.
    NodePort,
}

/// Media network settings of SFU pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaNetwork {
    /// HostPort (default), LoadBalancer or NodePort.
    #[serde(default)]
    pub mode: NetworkMode,
    /// Address announced to browsers in ICE candidates instead of the discovered one, for
    /// nodes behind NAT. An IP address or a DNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(ADDRESS_CEL).message("advertiseAddress must be an IP address or a DNS name (lowercase letters, digits, '-' and '.')"))]
    #[schemars(length(max = 253))]
    pub advertise_address: Option<String>,
    /// Annotations for the per-pod Service (LoadBalancer and NodePort modes), e.g. to pick a
    /// cloud load balancer type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_annotations: Option<BTreeMap<String, String>>,
}

/// The last time the operator replaced a room's SFU pod, and why.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodRestart {
    /// When the replacement pod was created.
    pub at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    /// What happened to the pod it replaces.
    pub reason: String,
}

/// An organiser's request to move a room's SFU pod to another node (the annotation
/// `roundtable.dev/move-requested-at`), and how far it got. One move per annotation value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodMove {
    /// The annotation's value this move answers; a value already here is not moved again.
    pub requested_at: String,
    /// `Moving` (the new pod starts), `Switching` (the room's endpoint names the new pod and
    /// the old one's people re-join), `Moved`, or `Failed` (the room stayed where it was).
    pub state: MoveState,
    /// The SFU pod the room was served from when the move was asked.
    pub from_pod: String,
    /// The node it ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_node: Option<String>,
    /// The SFU pod the room moves to.
    pub to_pod: String,
    /// The node the new pod runs on, once placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_node: Option<String>,
    /// When the endpoint was switched to the new pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// What happened, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// How far a move got.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MoveState {
    Moving,
    Switching,
    Moved,
    Failed,
}

/// Where an event's recordings are stored.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordingStorage {
    /// Name of a PersistentVolumeClaim in the event's namespace that receives the MP4 files.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("persistentVolumeClaim must be the name of a PersistentVolumeClaim: lowercase letters, digits, '-' and '.'"))]
    #[schemars(length(min = 1, max = 253))]
    pub persistent_volume_claim: String,
}
