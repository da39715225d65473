//! Keyframe requests to publishers, throttled per layer so a crowd of joining viewers or a
//! burst of viewer PLIs costs the publisher one keyframe, not hundreds. [`Media`] asks through
//! the throttle when a viewer starts, switches layer, loses packets or sends a PLI.

use std::time::{Duration, Instant};

use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Rid};

use super::{Media, PeerId};

/// At most one request per layer in this interval.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// A refused request is not forgotten: it is deferred until the interval has passed, so a
/// viewer that missed the last keyframe still gets one.
#[derive(Debug, Default, Clone)]
pub struct KeyframeThrottle {
    /// Per layer: when the last request went out, and whether one is deferred.
    last: Vec<(Option<Rid>, Instant, bool)>,
}

impl KeyframeThrottle {
    /// Whether a request for `rid` may go out now; records it if so, defers it if not.
    pub fn allow(&mut self, now: Instant, rid: Option<Rid>) -> bool {
        match self.last.iter_mut().find(|(r, _, _)| *r == rid) {
            Some((_, at, deferred))
                if now.saturating_duration_since(*at) < KEYFRAME_REQUEST_INTERVAL =>
            {
                *deferred = true;
                false
            }
            Some((_, at, deferred)) => {
                *at = now;
                *deferred = false;
                true
            }
            None => {
                self.last.push((rid, now, false));
                true
            }
        }
    }

    /// A deferred request for `rid` whose interval has passed: take it (it counts as sent).
    pub fn take_deferred(&mut self, now: Instant, rid: Option<Rid>) -> bool {
        match self.last.iter_mut().find(|(r, _, _)| *r == rid) {
            Some((_, at, deferred))
                if *deferred && now.saturating_duration_since(*at) >= KEYFRAME_REQUEST_INTERVAL =>
            {
                *at = now;
                *deferred = false;
                true
            }
            _ => false,
        }
    }
}

impl Media {
    pub(super) fn request_keyframe(
        &mut self,
        now: Instant,
        publisher: PeerId,
        mid: Mid,
        rid: Option<Rid>,
    ) {
        let Some(peer) = self.peers.get_mut(&publisher) else {
            return;
        };
        let Some(track) = peer.tracks_in.iter_mut().find(|t| t.mid == mid) else {
            return;
        };
        if track.kind != MediaKind::Video || !track.keyframes.allow(now, rid) {
            return;
        }
        self.send_keyframe_request(publisher, mid, rid);
    }

    pub(super) fn send_keyframe_request(&mut self, publisher: PeerId, mid: Mid, rid: Option<Rid>) {
        let Some(peer) = self.peers.get_mut(&publisher) else {
            return;
        };
        // An upstream layer has a slot of its own at the origin, which picks the layer.
        let (mid, rid) = match &peer.upstream {
            Some(up) => match up.slot_of(mid, rid) {
                Some(slot) => (slot, None),
                None => return,
            },
            None => (mid, rid),
        };
        if let Some(stream) = peer.rtc.direct_api().stream_rx_by_mid(mid, rid) {
            stream.request_keyframe(KeyframeRequestKind::Pli);
            self.stats.plis_sent += 1;
            self.dirty.push(publisher);
        }
    }

    pub(super) fn request_viewer_keyframes(&mut self, now: Instant, viewer: PeerId) {
        let Some(peer) = self.peers.get(&viewer) else {
            return;
        };
        let wanted: Vec<_> = peer
            .slots
            .iter()
            .filter(|s| s.kind == MediaKind::Video)
            .filter_map(|s| s.feed.as_ref())
            .map(|f| (f.publisher, f.track, f.target))
            .collect();
        for (publisher, track, rid) in wanted {
            self.request_keyframe(now, publisher, track, rid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_throttled_per_layer() {
        let t0 = Instant::now();
        let mut t = KeyframeThrottle::default();
        assert!(t.allow(t0, Some("h".into())));
        assert!(!t.allow(t0 + Duration::from_millis(100), Some("h".into())));
        assert!(t.allow(t0 + Duration::from_millis(100), Some("q".into())));
        assert!(t.allow(t0 + KEYFRAME_REQUEST_INTERVAL, Some("h".into())));
    }

    #[test]
    fn a_throttled_request_is_deferred_not_lost() {
        let t0 = Instant::now();
        let mut t = KeyframeThrottle::default();
        let h = Some("h".into());
        assert!(t.allow(t0, h));
        assert!(
            !t.take_deferred(t0 + KEYFRAME_REQUEST_INTERVAL, h),
            "nothing deferred"
        );
        assert!(!t.allow(t0 + Duration::from_millis(100), h));
        assert!(
            !t.take_deferred(t0 + Duration::from_millis(200), h),
            "still too soon"
        );
        assert!(t.take_deferred(t0 + KEYFRAME_REQUEST_INTERVAL, h));
        assert!(
            !t.take_deferred(t0 + KEYFRAME_REQUEST_INTERVAL, h),
            "taken once"
        );
    }
}
