//! Counters of the media core, read by `/metrics` and `/stats`.

use serde::Serialize;

use super::{Media, PeerRole};

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MediaStats {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Media frames written to viewers (audio packets, and video packets ending a frame).
    pub frames_forwarded: u64,
    /// RTP media packets written to viewers.
    pub packets_forwarded: u64,
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
    /// Threads that drive the room's peers (`--threads`).
    pub threads: u64,
    /// Times peers were driven on several threads at once (see `workers`).
    pub spread_drives: u64,
    pub peers: u64,
    pub publishers: u64,
    pub viewers: u64,
    pub tracks_in: u64,
    pub feeds: u64,
}

impl Media {
    pub fn stats(&self) -> MediaStats {
        let mut s = self.stats;
        s.peers = self.peers.len() as u64;
        s.threads = self.workers.threads() as u64;
        s.publishers = self
            .peers
            .values()
            .filter(|p| matches!(p.role, PeerRole::Publish(_)))
            .count() as u64;
        s.viewers = self.peers.values().filter(|p| p.role.receives()).count() as u64;
        s.tracks_in = self.peers.values().map(|p| p.tracks_in.len() as u64).sum();
        s.feeds = self
            .peers
            .values()
            .flat_map(|p| p.slots.iter())
            .filter(|s| s.feed.is_some())
            .count() as u64;
        s.ingress_loss = self.ingress_loss.values().copied().fold(0.0, f32::max);
        s
    }
}
