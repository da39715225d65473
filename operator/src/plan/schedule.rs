//! When a session or stage should have a live SFU pod.
//!
//! A scheduled room is warmed up `lead` before its start so the first joiner never waits for a
//! pod; it ends at its own end, or at the event's end when it has none. An organiser's Start
//! overrides the start time, and an organiser's End is final.

use jiff::{SignedDuration, Timestamp};
use roundtable_crds::Lifecycle;
pub use roundtable_crds::live_room::Window;

/// What should exist now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desired {
    /// Not live yet; look again at `wake_at` (None: only an organiser's Start changes this).
    Waiting { wake_at: Option<Timestamp> },
    /// Live; look again at `until` to end it.
    Live { until: Option<Timestamp> },
    /// Over for good, and why.
    Over(Over),
}

/// Why a room is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// Its end (or its event's end) has passed.
    EndPassed { at: Timestamp },
    /// An organiser ended it.
    EndedByOrganiser,
    /// A room on demand that nobody has asked to join within its idle time.
    Idle,
}

/// Decides whether a room is waiting, live or over at `now`.
pub fn desired(window: Window, now: Timestamp, lead: SignedDuration) -> Desired {
    let end = window.end.or(window.event_end);
    if window.lifecycle == Lifecycle::Ended {
        return Desired::Over(Over::EndedByOrganiser);
    }
    if let Some(at) = end.filter(|end| *end <= now) {
        return Desired::Over(Over::EndPassed { at });
    }
    match (window.lifecycle, window.start) {
        (Lifecycle::Started, _) => Desired::Live { until: end },
        (_, Some(start)) => {
            let warm_at = start - lead;
            if now >= warm_at {
                Desired::Live { until: end }
            } else {
                Desired::Waiting {
                    wake_at: Some(warm_at),
                }
            }
        }
        (_, None) => Desired::Waiting { wake_at: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const LEAD: SignedDuration = SignedDuration::from_mins(2);

    fn window(start: Option<&str>, end: Option<&str>) -> Window {
        Window {
            lifecycle: Lifecycle::Scheduled,
            start: start.map(t),
            end: end.map(t),
            event_end: None,
        }
    }

    #[test]
    fn waits_until_the_lead_time_before_start() {
        let w = window(Some("2026-12-10T18:00:00Z"), Some("2026-12-10T19:00:00Z"));
        assert_eq!(
            desired(w, t("2026-12-10T17:00:00Z"), LEAD),
            Desired::Waiting {
                wake_at: Some(t("2026-12-10T17:58:00Z"))
            }
        );
    }

    #[test]
    fn is_live_from_the_warm_up_until_the_end() {
        let w = window(Some("2026-12-10T18:00:00Z"), Some("2026-12-10T19:00:00Z"));
        let live = Desired::Live {
            until: Some(t("2026-12-10T19:00:00Z")),
        };
        assert_eq!(desired(w, t("2026-12-10T17:58:00Z"), LEAD), live);
        assert_eq!(desired(w, t("2026-12-10T18:59:59Z"), LEAD), live);
        assert!(matches!(
            desired(w, t("2026-12-10T19:00:00Z"), LEAD),
            Desired::Over(_)
        ));
    }

    #[test]
    fn an_organisers_start_overrides_the_start_time() {
        let mut w = window(Some("2026-12-10T18:00:00Z"), None);
        w.lifecycle = Lifecycle::Started;
        assert_eq!(
            desired(w, t("2026-12-10T09:00:00Z"), LEAD),
            Desired::Live { until: None }
        );
    }

    #[test]
    fn an_organisers_end_is_final() {
        let mut w = window(Some("2026-12-10T18:00:00Z"), Some("2026-12-10T19:00:00Z"));
        w.lifecycle = Lifecycle::Ended;
        assert!(matches!(
            desired(w, t("2026-12-10T18:30:00Z"), LEAD),
            Desired::Over(_)
        ));
    }

    #[test]
    fn without_a_start_it_waits_for_an_organiser() {
        let w = window(None, None);
        assert_eq!(
            desired(w, t("2026-12-10T18:30:00Z"), LEAD),
            Desired::Waiting { wake_at: None }
        );
    }

    #[test]
    fn without_its_own_end_it_ends_with_the_event() {
        let mut w = window(Some("2026-12-10T18:00:00Z"), None);
        w.event_end = Some(t("2026-12-10T22:00:00Z"));
        assert_eq!(
            desired(w, t("2026-12-10T21:00:00Z"), LEAD),
            Desired::Live {
                until: Some(t("2026-12-10T22:00:00Z"))
            }
        );
        assert!(matches!(
            desired(w, t("2026-12-10T22:00:00Z"), LEAD),
            Desired::Over(_)
        ));
    }

    #[test]
    fn a_started_session_past_its_end_is_over() {
        let mut w = window(None, Some("2026-12-10T19:00:00Z"));
        w.lifecycle = Lifecycle::Started;
        assert!(matches!(
            desired(w, t("2026-12-10T19:00:01Z"), LEAD),
            Desired::Over(_)
        ));
    }
}
