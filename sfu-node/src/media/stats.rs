//! Counters of the media core, read by `/metrics` and `/stats`.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MediaStats {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Media frames written to viewers.
    pub frames_forwarded: u64,
    /// NACKs received from viewers (answered by str0m from its RTX cache).
    pub nacks_received: u64,
    /// NACKs sent to publishers for lost incoming packets.
    pub nacks_sent: u64,
    /// Keyframe requests (PLI) sent to publishers, after throttling.
    pub plis_sent: u64,
    /// Keyframe requests received from viewers.
    pub plis_received: u64,
    /// Worst recent incoming loss fraction across publishers (0..1).
    pub ingress_loss: f32,
    /// `Rtc` timeouts handled (str0m's timers: pacer, RTCP, BWE, ICE, DTLS).
    pub rtc_timeouts: u64,
    /// Wake-ups of the media core on a timeout.
    pub wakeups: u64,
    pub peers: u64,
    pub publishers: u64,
    pub viewers: u64,
    pub tracks_in: u64,
    pub feeds: u64,
}
