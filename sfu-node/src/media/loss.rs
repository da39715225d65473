//! Loss in a publisher's layer that NACK did not repair.
//!
//! In RTP mode every packet is forwarded as it arrives, so a packet lost on the way in is a
//! hole in each viewer's stream on that layer; str0m NACKs it and a retransmission fills the
//! hole when it comes. When none comes in time, the viewers' decoders are stuck until the
//! next keyframe, so the layer needs one asked for (see `forward`). [`Gaps`] watches one
//! layer's sequence numbers and says when a hole is given up. Pure: time is passed in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a hole may wait for its retransmission: str0m NACKs a missing packet up to 5
/// times, one round trip apart (100 ms while the round trip is unknown), so a packet still
/// missing after this is not coming.
pub const REPAIR_WINDOW: Duration = Duration::from_millis(500);

/// How far behind the newest packet a hole may be: str0m's NACK window (older holes are no
/// longer NACKed).
pub const REPAIR_SPAN: u64 = 100;

/// One layer's holes: sequence numbers not received yet, and when each was noticed.
#[derive(Debug, Default, Clone)]
pub struct Gaps {
    highest: Option<u64>,
    /// Oldest first (ascending sequence numbers).
    missing: VecDeque<(u64, Instant)>,
}

impl Gaps {
    /// A packet with (extended) sequence number `seq` arrived. True when a hole was given
    /// up: past [`REPAIR_WINDOW`], beyond [`REPAIR_SPAN`], or too wide to repair at all.
    pub fn on_packet(&mut self, now: Instant, seq: u64) -> bool {
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            return false;
        };
        let mut given_up = false;
        if seq > highest {
            if seq - highest > REPAIR_SPAN {
                // Wider than NACK reaches: none of it will be repaired.
                self.missing.clear();
                given_up = true;
            } else {
                self.missing
                    .extend((highest + 1..seq).map(|missing| (missing, now)));
            }
            self.highest = Some(seq);
        } else if let Some(at) = self.missing.iter().position(|(s, _)| *s == seq) {
            // Repaired (a retransmission) or merely late.
            self.missing.remove(at);
        }
        let newest = self.highest.unwrap_or(seq);
        while let Some(&(s, noticed)) = self.missing.front() {
            let expired = now.saturating_duration_since(noticed) >= REPAIR_WINDOW;
            if !expired && newest - s <= REPAIR_SPAN {
                break;
            }
            self.missing.pop_front();
            given_up = true;
        }
        given_up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hole_filled_in_time_is_not_loss() {
        let t0 = Instant::now();
        let mut g = Gaps::default();
        assert!(!g.on_packet(t0, 10));
        assert!(!g.on_packet(t0, 12), "11 missing: NACK may still bring it");
        assert!(
            !g.on_packet(t0 + Duration::from_millis(100), 11),
            "repaired"
        );
        assert!(!g.on_packet(t0 + REPAIR_WINDOW * 2, 13));
    }

    #[test]
    fn a_hole_not_filled_within_the_window_is_given_up_once() {
        let t0 = Instant::now();
        let mut g = Gaps::default();
        g.on_packet(t0, 10);
        g.on_packet(t0, 13);
        assert!(!g.on_packet(t0 + Duration::from_millis(400), 14));
        assert!(g.on_packet(t0 + REPAIR_WINDOW, 15), "11 and 12 never came");
        assert!(!g.on_packet(t0 + REPAIR_WINDOW, 16), "reported once");
        // A retransmission after giving up changes nothing.
        assert!(!g.on_packet(t0 + REPAIR_WINDOW, 11));
    }

    #[test]
    fn holes_beyond_nacks_reach_are_given_up_at_once() {
        let t0 = Instant::now();
        let mut g = Gaps::default();
        g.on_packet(t0, 1);
        assert!(
            g.on_packet(t0, 1 + REPAIR_SPAN + 5),
            "a jump wider than NACK"
        );
        let mut g = Gaps::default();
        g.on_packet(t0, 1);
        g.on_packet(t0, 3);
        assert!(
            g.on_packet(t0, 3 + REPAIR_SPAN),
            "2 fell out of the NACK window"
        );
    }
}
