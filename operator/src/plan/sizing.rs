//! How big an SFU pod must be for a room's limits.
//!
//! The SFU forwards every on-camera person's stream to everyone else in the room:
//!
//! ```text
//! forwarded streams = on_camera × (on_camera − 1 + watchers)
//! packets/s         = forwarded streams × STREAM_PPS
//! needed millicores = packets/s ÷ PPS_PER_CORE × 1000, plus BASE_MILLICORES
//! CPU (millicores)  = needed millicores, at most MAX_MILLICORES
//! memory (MiB)      = BASE_MIB + peers × PEER_KIB/1024 + streams × STREAM_KIB/1024
//! egress (Mbit/s)   = forwarded streams × STREAM_KBPS / 1000
//! ```
//!
//! sfu-node serves its room from one thread, so a pod never uses more than one core plus
//! the base: CPU beyond that would be reserved and idle. A room whose limits need more
//! (see [`PodSize::exceeds_one_pod`]) reaches its full audience only through relay pods.
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
/// Packets one core forwards per second, below what `bench/sfu` measured on a shared 2-core
/// machine (medians of 62 000–80 000 per sfu-node CPU-second at 1×100, 4×100 and 10×50 with
/// the default feedback bandwidth estimator, 43 000–57 000 with str0m's GCC).
pub const PPS_PER_CORE: u64 = 40_000;
/// CPU for the process itself: signalling, timers, metrics.
pub const BASE_MILLICORES: u64 = 100;
/// The most one sfu-node can use: its room runs on one thread.
pub const MAX_MILLICORES: u64 = 1000 + BASE_MILLICORES;
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
    /// What the pod asks for: the need, at most [`MAX_MILLICORES`].
    pub millicores: u64,
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

/// Size of a pod serving `on_camera` people on camera and `watchers` watching.
pub fn pod_size(on_camera: u64, watchers: u64) -> PodSize {
    let forwarded_streams = on_camera * (on_camera.saturating_sub(1) + watchers);
    let pps = forwarded_streams * STREAM_PPS;
    let needed_millicores = round_up(BASE_MILLICORES + (pps * 1000).div_ceil(PPS_PER_CORE), 50);
    let peers = on_camera + watchers;
    let memory_kib = BASE_MIB * 1024 + peers * PEER_KIB + forwarded_streams * STREAM_KIB;
    let memory_mib = round_up(memory_kib.div_ceil(1024), 32);
    PodSize {
        forwarded_streams,
        needed_millicores,
        millicores: needed_millicores.min(MAX_MILLICORES),
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
        let size = pod_size(2, 0);
        assert_eq!(size.forwarded_streams, 2);
        assert_eq!(size.millicores, 150);
        assert_eq!(size.memory_mib, 96);
        assert!(!size.exceeds_one_pod());
    }

    #[test]
    fn default_session_at_its_watcher_cap_needs_more_than_one_pod() {
        // 10 on camera, 500 watching: 10 × (9 + 500) = 5090 streams, 610 800 packets/s.
        let size = pod_size(10, 500);
        assert_eq!(size.forwarded_streams, 5090);
        assert_eq!(size.needed_millicores, 15_400);
        assert_eq!(size.millicores, MAX_MILLICORES);
        assert!(size.exceeds_one_pod());
        assert_eq!(size.egress_mbps, 3818);
        assert_eq!(size.memory_mib, 640);
    }

    #[test]
    fn twenty_on_camera_with_150_watching() {
        let size = pod_size(20, 150);
        assert_eq!(size.forwarded_streams, 3380);
        assert!(size.needed_millicores < pod_size(10, 500).needed_millicores);
    }

    #[test]
    fn cpu_never_exceeds_what_one_sfu_node_uses() {
        let largest_within_one_pod = (1..=500)
            .map(|watchers| pod_size(5, watchers))
            .take_while(|s| !s.exceeds_one_pod())
            .last()
            .unwrap();
        assert!(largest_within_one_pod.millicores <= MAX_MILLICORES);
        assert!(pod_size(5, 500).exceeds_one_pod());
        assert_eq!(pod_size(5, 500).millicores, MAX_MILLICORES);
    }

    #[test]
    fn size_grows_with_every_limit_up_to_one_pod() {
        assert!(pod_size(5, 10).millicores < pod_size(5, 20).millicores);
        assert!(pod_size(5, 100).needed_millicores < pod_size(5, 200).needed_millicores);
        assert!(pod_size(5, 100).memory_mib <= pod_size(6, 100).memory_mib);
    }

    #[test]
    fn quantities_are_kubernetes_strings() {
        let size = pod_size(2, 0);
        assert_eq!(size.cpu_quantity(), "150m");
        assert_eq!(size.memory_quantity(), "96Mi");
    }
}
