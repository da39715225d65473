//! How big an SFU pod must be for a room's limits.
//!
//! The SFU forwards every on-camera person's stream to everyone else in the room:
//!
//! ```text
//! forwarded streams = on_camera × (on_camera − 1 + watchers)
//! packets/s         = forwarded streams × STREAM_PPS
//! needed millicores = packets/s ÷ PPS_PER_CORE × 1000, plus BASE_MILLICORES
//! CPU (millicores)  = needed millicores, at most max cores × 1000 + BASE_MILLICORES
//! threads           = CPU beyond the base, in whole cores (at least 1)
//! memory (MiB)      = BASE_MIB + peers × PEER_KIB/1024 + streams × STREAM_KIB/1024
//! egress (Mbit/s)   = forwarded streams × STREAM_KBPS / 1000
//! ```
//!
//! sfu-node drives its room's peers on `SFU_THREADS` threads, so a pod uses the cores it is
//! given, up to the operator's `--sfu-max-cores` (what one node can give a pod). A room whose
//! limits need more (see [`PodSize::exceeds_one_pod`]) reaches its full audience only through
//! relay pods.
//!
//! A stream is one person's audio plus the video layer a viewer receives. Requests equal
//! limits (Guaranteed QoS): media is latency-sensitive and a Guaranteed pod is the last to be
//! evicted or throttled by a noisy neighbour. A LiveEvent's `sfu.resources` replaces the
//! formula.

/// Packets per second of one forwarded stream: a mid simulcast layer (~60 pps) plus Opus
/// audio (50 pps at 20 ms frames), rounded up.
pub const STREAM_PPS: u64 = 120;
/// Bitrate of one forwarded stream: ~700 kbit/s video layer plus ~40 kbit/s audio, rounded.
pub const STREAM_KBPS: u64 = 750;
/// Packets one core forwards per second: half of the lowest median `bench/sfu-ab` measured on
/// a shared 2-core machine on 6 Dec (145 000–183 000 forwarded packets per sfu-node CPU-second
/// at 1×100 and 4×100 on one thread, 156 000 at 4×100 on two), leaving room for real networks'
/// extra RTCP and retransmissions, the machine's ±20 % spread and a busy room's tail.
pub const PPS_PER_CORE: u64 = 80_000;
/// CPU for the process itself: signalling, timers, metrics.
pub const BASE_MILLICORES: u64 = 100;
/// Memory for the process itself.
pub const BASE_MIB: u64 = 64;
/// Memory per connected peer (str0m state, DTLS, socket buffers).
pub const PEER_KIB: u64 = 512;
/// Memory per forwarded stream (RTX history for NACKs).
pub const STREAM_KIB: u64 = 64;

/// The computed size of one SFU pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodSize {
    pub forwarded_streams: u64,
    /// What forwarding every stream at the room's limits takes, whether or not one pod has it.
    pub needed_millicores: u64,
    /// What the pod asks for: the need, at most the most one pod may have.
    pub millicores: u64,
    /// Threads sfu-node drives the room on: the pod's CPU beyond the base, in whole cores.
    pub threads: u64,
    pub memory_mib: u64,
    pub egress_mbps: u64,
}

impl PodSize {
    /// Kubernetes quantity for the CPU, e.g. `"750m"`.
    pub fn cpu_quantity(&self) -> String {
        format!("{}m", self.millicores)
    }

    /// One pod cannot forward all the streams the limits allow: the room needs relays
    /// (autoscaling) to serve its full audience without delay or dropped frames.
    pub fn exceeds_one_pod(&self) -> bool {
        self.needed_millicores > self.millicores
    }

    /// Kubernetes quantity for the memory, e.g. `"256Mi"`.
    pub fn memory_quantity(&self) -> String {
        format!("{}Mi", self.memory_mib)
    }
}

/// Cores for forwarding one node can give a pod: the largest node's allocatable CPU, less the
/// base, in whole cores (at least 1); `None` without nodes (not readable, or none yet).
pub fn cores_one_node_gives(allocatable_millicores: impl IntoIterator<Item = u64>) -> Option<u32> {
    let largest = allocatable_millicores.into_iter().max()?;
    let cores = largest.saturating_sub(BASE_MILLICORES) / 1000;
    Some(u32::try_from(cores).unwrap_or(u32::MAX).max(1))
}

/// Cores for forwarding the largest node a pod placed by `placement` may run on can give it
/// (see [`cores_one_node_gives`]): nodes its `nodeSelector` excludes, and cordoned ones, do
/// not count. Taints and affinity are not looked at.
pub fn cores_for_placement<'a>(
    nodes: impl IntoIterator<Item = &'a k8s_openapi::api::core::v1::Node>,
    placement: Option<&roundtable_crds::Placement>,
) -> Option<u32> {
    let selector = placement.and_then(|p| p.node_selector.as_ref());
    cores_one_node_gives(nodes.into_iter().filter_map(|node| {
        let labels = node.metadata.labels.as_ref();
        let selected = selector.is_none_or(|want| {
            want.iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        });
        let cordoned = node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
        if !selected || cordoned {
            return None;
        }
        let cpu = node.status.as_ref()?.allocatable.as_ref()?.get("cpu")?;
        cpu_millicores(&cpu.0)
    }))
}

/// Millicores of a Kubernetes CPU quantity (`"2"`, `"1500m"`, `"3.5"`); `None` if it is not one.
pub fn cpu_millicores(quantity: &str) -> Option<u64> {
    let q = quantity.trim();
    if let Some(milli) = q.strip_suffix('m') {
        return milli.parse().ok();
    }
    let cores: f64 = q.parse().ok()?;
    (cores.is_finite() && cores >= 0.0).then(|| (cores * 1000.0).round() as u64)
}

/// The most CPU one pod may have with `max_cores` cores for forwarding.
pub fn max_millicores(max_cores: u32) -> u64 {
    u64::from(max_cores.max(1)) * 1000 + BASE_MILLICORES
}

/// Size of a pod serving `on_camera` people on camera and `watchers` watching, with at most
/// `max_cores` cores for forwarding.
pub fn pod_size(on_camera: u64, watchers: u64, max_cores: u32) -> PodSize {
    let forwarded_streams = on_camera * (on_camera.saturating_sub(1) + watchers);
    let pps = forwarded_streams * STREAM_PPS;
    let needed_millicores = round_up(BASE_MILLICORES + (pps * 1000).div_ceil(PPS_PER_CORE), 50);
    let peers = on_camera + watchers;
    let memory_kib = BASE_MIB * 1024 + peers * PEER_KIB + forwarded_streams * STREAM_KIB;
    let memory_mib = round_up(memory_kib.div_ceil(1024), 32);
    let millicores = needed_millicores.min(max_millicores(max_cores));
    PodSize {
        forwarded_streams,
        needed_millicores,
        millicores,
        threads: millicores
            .saturating_sub(BASE_MILLICORES)
            .div_ceil(1000)
            .max(1),
        memory_mib,
        egress_mbps: (forwarded_streams * STREAM_KBPS).div_ceil(1000),
    }
}

fn round_up(value: u64, step: u64) -> u64 {
    value.div_ceil(step) * step
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_two_person_call_is_small() {
        let size = pod_size(2, 0, 4);
        assert_eq!(size.forwarded_streams, 2);
        assert_eq!(size.millicores, 150);
        assert_eq!(size.memory_mib, 96);
        assert!(!size.exceeds_one_pod());
    }

    #[test]
    fn default_session_at_its_watcher_cap_needs_more_than_one_pod() {
        // 10 on camera, 500 watching: 10 × (9 + 500) = 5090 streams, 610 800 packets/s.
        let size = pod_size(10, 500, 4);
        assert_eq!(size.forwarded_streams, 5090);
        assert_eq!(size.needed_millicores, 7_750);
        assert_eq!((size.millicores, size.threads), (4100, 4));
        assert!(size.exceeds_one_pod());
        assert_eq!(size.egress_mbps, 3818);
        assert_eq!(size.memory_mib, 640);
    }

    #[test]
    fn twenty_on_camera_with_150_watching() {
        let size = pod_size(20, 150, 4);
        assert_eq!(size.forwarded_streams, 3380);
        assert!(size.needed_millicores < pod_size(10, 500, 4).needed_millicores);
    }

    #[test]
    fn cpu_never_exceeds_the_most_one_pod_may_have() {
        for cores in [1, 2, 4] {
            let largest_within_one_pod = (1..=5000)
                .map(|watchers| pod_size(5, watchers, cores))
                .take_while(|s| !s.exceeds_one_pod())
                .last()
                .unwrap();
            assert!(largest_within_one_pod.millicores <= max_millicores(cores));
            assert_eq!(largest_within_one_pod.threads, u64::from(cores));
            assert!(pod_size(5, 5000, cores).exceeds_one_pod());
            assert_eq!(pod_size(5, 5000, cores).millicores, max_millicores(cores));
        }
    }

    #[test]
    fn a_pod_takes_a_thread_per_core_it_is_given() {
        // 5 on camera, 200 watching: 1020 streams, 122 400 packets/s: 1.53 cores of forwarding.
        let size = pod_size(5, 200, 4);
        assert_eq!((size.millicores, size.threads), (1650, 2));
        assert!(!size.exceeds_one_pod());
        // With one core at most, the same room needs relays.
        let size = pod_size(5, 200, 1);
        assert_eq!((size.millicores, size.threads), (1100, 1));
        assert!(size.exceeds_one_pod());
        assert_eq!(pod_size(2, 0, 4).threads, 1);
    }

    #[test]
    fn size_grows_with_every_limit_up_to_one_pod() {
        assert!(pod_size(5, 10, 4).millicores < pod_size(5, 20, 4).millicores);
        assert!(pod_size(5, 100, 4).needed_millicores < pod_size(5, 200, 4).needed_millicores);
        assert!(pod_size(5, 100, 4).memory_mib <= pod_size(6, 100, 4).memory_mib);
    }

    #[test]
    fn a_pod_never_asks_more_cores_than_the_largest_node_gives() {
        // Nodes of 2 and 4 allocatable cores: a pod gets 3 cores and the base.
        assert_eq!(cores_one_node_gives([2000, 4000]), Some(3));
        assert_eq!(cores_one_node_gives([1900]), Some(1), "never below one");
        assert_eq!(cores_one_node_gives([]), None);
        assert_eq!(cpu_millicores("2"), Some(2000));
        assert_eq!(cpu_millicores("3500m"), Some(3500));
        assert_eq!(cpu_millicores("1.5"), Some(1500));
        assert_eq!(cpu_millicores("lots"), None);
    }

    #[test]
    fn only_nodes_the_pod_may_run_on_bound_it() {
        let node = |cpu: &str, pool: &str, cordoned: bool| {
            serde_json::from_value::<k8s_openapi::api::core::v1::Node>(serde_json::json!({
                "metadata": {"name": format!("{pool}-{cpu}"), "labels": {"pool": pool}},
                "spec": {"unschedulable": cordoned},
                "status": {"allocatable": {"cpu": cpu}},
            }))
            .unwrap()
        };
        let nodes = [
            node("4", "media", false),
            node("16", "general", false),
            node("32", "media", true),
        ];
        let media = roundtable_crds::Placement {
            node_selector: Some([("pool".to_string(), "media".to_string())].into()),
            ..Default::default()
        };
        // The media pool's largest schedulable node has 4 CPUs (the 32-CPU one is cordoned).
        assert_eq!(cores_for_placement(&nodes, Some(&media)), Some(3));
        // Without a selector, any node counts.
        assert_eq!(cores_for_placement(&nodes, None), Some(15));
        let nowhere = roundtable_crds::Placement {
            node_selector: Some([("pool".to_string(), "none".to_string())].into()),
            ..Default::default()
        };
        assert_eq!(cores_for_placement(&nodes, Some(&nowhere)), None);
    }

    #[test]
    fn quantities_are_kubernetes_strings() {
        let size = pod_size(2, 0, 4);
        assert_eq!(size.cpu_quantity(), "150m");
        assert_eq!(size.memory_quantity(), "96Mi");
    }
}
