//! Keyframe requests to publishers, throttled per layer so a crowd of joining viewers or a
//! burst of viewer PLIs costs the publisher one keyframe, not hundreds.

use std::time::{Duration, Instant};

use str0m::media::Rid;

/// At most one request per layer in this interval.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Default, Clone)]
pub struct KeyframeThrottle {
    last: Vec<(Option<Rid>, Instant)>,
}

impl KeyframeThrottle {
    /// Whether a request for `rid` may go out now; records it if so.
    pub fn allow(&mut self, now: Instant, rid: Option<Rid>) -> bool {
        match self.last.iter_mut().find(|(r, _)| *r == rid) {
            Some((_, at)) if now.saturating_duration_since(*at) < KEYFRAME_REQUEST_INTERVAL => {
                false
            }
            Some((_, at)) => {
                *at = now;
                true
            }
            None => {
                self.last.push((rid, now));
                true
            }
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
}
