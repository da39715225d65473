//! An event's status: its phase from its times, and totals over its sessions and stage.

use jiff::Timestamp;
use roundtable_crds::{LiveEventPhase, LivePhase};

/// What one session or stage contributes to its event's totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoomTotals {
    pub phase: Option<LivePhase>,
    pub on_camera: i32,
    pub watching: i32,
    pub recordings: i32,
}

/// An event's rolled-up status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollup {
    pub phase: LiveEventPhase,
    pub sessions: i32,
    pub sessions_live: i32,
    pub watching: i32,
    pub on_camera: i32,
    pub recordings: i32,
    /// When the phase changes next.
    pub next_change: Option<Timestamp>,
}

/// The event's phase at `now`, and totals over its `sessions` and `stages`.
pub fn rollup(
    start: Timestamp,
    end: Timestamp,
    now: Timestamp,
    sessions: &[RoomTotals],
    stages: &[RoomTotals],
) -> Rollup {
    let (phase, next_change) = if now < start {
        (LiveEventPhase::Upcoming, Some(start))
    } else if now < end {
        (LiveEventPhase::Live, Some(end))
    } else {
        (LiveEventPhase::Ended, None)
    };
    let all = sessions.iter().chain(stages);
    let live = |r: &&RoomTotals| r.phase == Some(LivePhase::Live);
    Rollup {
        phase,
        sessions: sessions.len() as i32,
        sessions_live: sessions.iter().filter(live).count() as i32,
        watching: all.clone().filter(live).map(|r| r.watching).sum(),
        on_camera: all.clone().filter(live).map(|r| r.on_camera).sum(),
        recordings: all.map(|r| r.recordings).sum(),
        next_change,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn room(phase: LivePhase, on_camera: i32, watching: i32) -> RoomTotals {
        RoomTotals {
            phase: Some(phase),
            on_camera,
            watching,
            recordings: 0,
        }
    }

    #[test]
    fn totals_count_only_live_rooms() {
        let sessions = [
            room(LivePhase::Live, 3, 40),
            room(LivePhase::Live, 2, 10),
            room(LivePhase::Scheduled, 0, 0),
        ];
        let stages = [room(LivePhase::Live, 1, 200)];
        let r = rollup(
            t("2026-12-10T17:00:00Z"),
            t("2026-12-10T22:00:00Z"),
            t("2026-12-10T18:00:00Z"),
            &sessions,
            &stages,
        );
        assert_eq!(r.phase, LiveEventPhase::Live);
        assert_eq!((r.sessions, r.sessions_live), (3, 2));
        assert_eq!((r.on_camera, r.watching), (6, 250));
        assert_eq!(r.next_change, Some(t("2026-12-10T22:00:00Z")));
    }

    #[test]
    fn phase_follows_the_event_times() {
        let (start, end) = (t("2026-12-10T17:00:00Z"), t("2026-12-10T22:00:00Z"));
        assert_eq!(
            rollup(start, end, t("2026-12-10T16:00:00Z"), &[], &[]).phase,
            LiveEventPhase::Upcoming
        );
        let ended = rollup(start, end, end, &[], &[]);
        assert_eq!(
            (ended.phase, ended.next_change),
            (LiveEventPhase::Ended, None)
        );
    }
}
