//! The recording rules of PRODUCT.md §3 as a small pure state machine.
//!
//! Inputs: the number of people on camera whenever it changes ([`RecordingRules::on_camera`]),
//! the clock ([`RecordingRules::handle_timeout`] at [`RecordingRules::poll_timeout`]) and the
//! end of the session ([`RecordingRules::end`]). Outputs: [`Decision`]s for the capture.
//! Time is milliseconds since the Unix epoch, passed in, so the state can be written to disk
//! and survive a restart of the recorder.
//!
//! | phase | input | next phase | decision |
//! |---|---|---|---|
//! | `Waiting` | someone on camera | `Recording` | `Start` |
//! | `Recording` | nobody on camera | `Paused` | `Pause` |
//! | `Recording` | 2 h since the stretch began | `Capped` | `Cap` |
//! | `Capped` | nobody on camera | `Paused` | `Pause` |
//! | `Paused` | someone on camera before 1 h | `Recording` | `Resume` |
//! | `Paused` | 1 h with nobody on camera | `Stopped` | `Stop` |
//! | any but `Stopped` | the session ends | `Stopped` | `Stop` |
//!
//! How the words of §3 are read where they leave room:
//! - "within an hour" is strict: a return after 59:59 resumes; at exactly 60:00 the
//!   recording has stopped (a timeout and a return at the same instant: the timeout wins).
//! - The stretch cap is inclusive: a stretch records at most exactly 2:00:00.
//! - After the 2-hour cap, people still on camera are not recorded; that stretch is cut out
//!   like an empty one. When everyone has left the screen the recording is paused, and the
//!   hour starts counting then (not at the cap). Someone returning within that hour resumes
//!   the *same* recording with a fresh 2-hour allowance.
//! - "Stops and never resumes" is read for the session: once stopped, nobody going on
//!   camera later starts a new recording, so a session has at most one recording.
//! - A recorder that stopped while people were on camera (a crash, a SIGTERM) did not end
//!   their stretch: a new recorder ([`restart`]) continues it with the rest of its 2 hours,
//!   counted in recorded time (what the recorder was not there for is neither recorded nor
//!   counted), not with a fresh 2 hours. If nobody is on camera when it is back, the stretch
//!   has ended and the hour counts from the last media on disk.

use serde::{Deserialize, Serialize};

/// An hour with nobody on camera stops the recording.
pub const EMPTY_LIMIT_MS: u64 = 60 * 60 * 1000;
/// One unbroken on-camera stretch records at most 2 hours.
pub const STRETCH_LIMIT_MS: u64 = 2 * 60 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Nobody has gone on camera yet.
    Waiting,
    /// Capturing; the unbroken on-camera stretch began at `stretch_start`.
    Recording { stretch_start: u64 },
    /// People are on camera, but this stretch has used its 2 hours: nothing is captured until
    /// everyone has left the screen.
    Capped,
    /// Nobody on camera since `since`.
    Paused { since: u64 },
    /// A new recorder after one that stopped while people were on camera, before it knows
    /// who is on camera now: the last media on disk is from `since`, and `recorded_ms` of
    /// the unbroken stretch were recorded by then.
    Interrupted { since: u64, recorded_ms: u64 },
    /// Over for good.
    Stopped,
}

/// What the capture must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Begin the recording: capture from now.
    Start,
    /// Nobody is on camera: stop capturing; the recording may go on.
    Pause,
    /// Capture again into the same recording; what happened since the capture stopped is cut.
    Resume,
    /// The stretch reached 2 hours: stop capturing although people are on camera.
    Cap,
    /// The recording is over: finish the file.
    Stop,
}

/// Where a new recorder starts from the phase the last one saved: `last_on_disk` is the end
/// of the media it left on disk (if any), `now` the new recorder's start. The second value
/// says whether the last recorder was interrupted while people were on camera.
pub fn restart(saved: Phase, last_on_disk: Option<u64>, now: u64) -> (Phase, bool) {
    let since = last_on_disk.unwrap_or(now);
    match saved {
        Phase::Recording { stretch_start } => (
            Phase::Interrupted {
                since,
                recorded_ms: since.saturating_sub(stretch_start).min(STRETCH_LIMIT_MS),
            },
            true,
        ),
        // Nothing was captured while capped: people were on camera when it stopped, so the
        // hour cannot have begun before the new recorder starts.
        Phase::Capped => (
            Phase::Interrupted {
                since: now,
                recorded_ms: STRETCH_LIMIT_MS,
            },
            true,
        ),
        // Waiting, Paused and Stopped need nothing new; nor does a recorder interrupted
        // again before it learnt who is on camera (the same interruption).
        phase => (phase, false),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRules {
    phase: Phase,
}

impl Default for RecordingRules {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordingRules {
    pub fn new() -> Self {
        RecordingRules {
            phase: Phase::Waiting,
        }
    }

    /// Continue from a phase saved before a restart.
    pub fn restore(phase: Phase) -> Self {
        RecordingRules { phase }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether media is being captured now.
    pub fn capturing(&self) -> bool {
        matches!(self.phase, Phase::Recording { .. })
    }

    /// When the stretch being recorded reaches its 2 hours, if capture goes on.
    pub fn cap_at(&self) -> Option<u64> {
        match self.phase {
            Phase::Recording { stretch_start } => Some(stretch_start + STRETCH_LIMIT_MS),
            _ => None,
        }
    }

    /// When [`RecordingRules::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.phase {
            Phase::Recording { stretch_start } => Some(stretch_start + STRETCH_LIMIT_MS),
            Phase::Paused { since } | Phase::Interrupted { since, .. } => {
                Some(since + EMPTY_LIMIT_MS)
            }
            Phase::Waiting | Phase::Capped | Phase::Stopped => None,
        }
    }

    /// Apply the limits that are due at `now`.
    pub fn handle_timeout(&mut self, now: u64) -> Option<Decision> {
        match self.phase {
            Phase::Recording { stretch_start } if now >= stretch_start + STRETCH_LIMIT_MS => {
                self.phase = Phase::Capped;
                Some(Decision::Cap)
            }
            Phase::Paused { since } | Phase::Interrupted { since, .. }
                if now >= since + EMPTY_LIMIT_MS =>
            {
                self.phase = Phase::Stopped;
                Some(Decision::Stop)
            }
            _ => None,
        }
    }

    /// `count` people are on camera at `now` (called whenever the count changes; repeating
    /// an unchanged count is harmless). Limits due at `now` are applied first.
    pub fn on_camera(&mut self, now: u64, count: u32) -> Vec<Decision> {
        let mut decisions: Vec<Decision> = self.handle_timeout(now).into_iter().collect();
        let next = match (self.phase, count > 0) {
            (Phase::Waiting, true) => {
                Some((Phase::Recording { stretch_start: now }, Decision::Start))
            }
            (Phase::Recording { .. } | Phase::Capped, false) => {
                Some((Phase::Paused { since: now }, Decision::Pause))
            }
            // Not stopped by the timeout above, so within the hour.
            (Phase::Paused { .. }, true) => {
                Some((Phase::Recording { stretch_start: now }, Decision::Resume))
            }
            // The stretch goes on with what is left of its 2 hours.
            (Phase::Interrupted { recorded_ms, .. }, true) if recorded_ms >= STRETCH_LIMIT_MS => {
                self.phase = Phase::Capped;
                None
            }
            (Phase::Interrupted { recorded_ms, .. }, true) => Some((
                Phase::Recording {
                    stretch_start: now.saturating_sub(recorded_ms),
                },
                Decision::Resume,
            )),
            // Everyone left while no recorder ran: the stretch is over.
            (Phase::Interrupted { since, .. }, false) => {
                Some((Phase::Paused { since }, Decision::Pause))
            }
            _ => None,
        };
        if let Some((phase, decision)) = next {
            self.phase = phase;
            decisions.push(decision);
        }
        decisions
    }

    /// The session is over (or the room closed for good): stop.
    pub fn end(&mut self, now: u64) -> Vec<Decision> {
        let mut decisions: Vec<Decision> = self.handle_timeout(now).into_iter().collect();
        if !matches!(self.phase, Phase::Stopped | Phase::Waiting) {
            self.phase = Phase::Stopped;
            decisions.push(Decision::Stop);
        }
        if self.phase == Phase::Waiting {
            // Nothing was ever recorded; nothing may start any more.
            self.phase = Phase::Stopped;
        }
        decisions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::*;

    const S: u64 = 1000;
    const MIN: u64 = 60 * S;
    const H: u64 = 60 * MIN;
    /// A pinned clock: 2026-11-22T13:00:00Z.
    const T0: u64 = 1_795_352_400_000;

    /// Feeds `(at, on camera)` steps, firing due timeouts in between as the recorder's loop
    /// does, and returns every decision with its time.
    fn run(steps: &[(u64, u32)], until: u64) -> (RecordingRules, Vec<(u64, Decision)>) {
        let mut rules = RecordingRules::new();
        let mut out = Vec::new();
        for &(at, count) in steps {
            let at = T0 + at;
            while let Some(t) = rules.poll_timeout().filter(|t| *t < at) {
                out.extend(rules.handle_timeout(t).map(|d| (t - T0, d)));
            }
            out.extend(rules.on_camera(at, count).into_iter().map(|d| (at - T0, d)));
        }
        while let Some(t) = rules.poll_timeout().filter(|t| *t <= T0 + until) {
            out.extend(rules.handle_timeout(t).map(|d| (t - T0, d)));
        }
        (rules, out)
    }

    /// Captured milliseconds: the sum of the spans between Start/Resume and the next
    /// Pause/Cap/Stop.
    fn recorded(decisions: &[(u64, Decision)]) -> u64 {
        let mut since = None;
        let mut total = 0;
        for &(at, d) in decisions {
            match d {
                Start | Resume => since = Some(at),
                Pause | Cap | Stop => total += since.take().map_or(0, |s| at - s),
            }
        }
        total
    }

    #[test]
    fn recording_starts_the_moment_someone_goes_on_camera() {
        let (rules, out) = run(&[(5 * MIN, 1)], 5 * MIN);
        assert_eq!(out, vec![(5 * MIN, Start)]);
        assert!(rules.capturing());
    }

    #[test]
    fn nothing_starts_while_people_only_watch() {
        let (rules, out) = run(&[(0, 0), (3 * H, 0)], 5 * H);
        assert!(out.is_empty());
        assert_eq!(rules.phase(), Phase::Waiting);
    }

    #[test]
    fn more_people_joining_the_screen_changes_nothing() {
        let (_, out) = run(&[(0, 1), (MIN, 2), (2 * MIN, 4), (3 * MIN, 1)], 3 * MIN);
        assert_eq!(out, vec![(0, Start)]);
    }

    #[test]
    fn a_return_after_59_59_resumes_the_same_recording_and_cuts_the_gap() {
        let gap = 59 * MIN + 59 * S;
        let (rules, out) = run(&[(0, 1), (10 * MIN, 0), (10 * MIN + gap, 2)], 11 * H);
        assert_eq!(
            out[..3],
            [(0, Start), (10 * MIN, Pause), (10 * MIN + gap, Resume)]
        );
        assert!(matches!(
            rules.phase(),
            Phase::Capped | Phase::Recording { .. }
        ));
    }

    #[test]
    fn a_gap_of_exactly_60_00_stops_for_good() {
        let (rules, out) = run(&[(0, 1), (10 * MIN, 0), (70 * MIN, 1)], 10 * H);
        assert_eq!(out, vec![(0, Start), (10 * MIN, Pause), (70 * MIN, Stop)]);
        assert_eq!(rules.phase(), Phase::Stopped);
        assert_eq!(recorded(&out), 10 * MIN);
    }

    #[test]
    fn the_stop_comes_from_the_clock_even_if_nobody_returns() {
        let (rules, out) = run(&[(0, 1), (10 * MIN, 0)], 70 * MIN);
        assert_eq!(out, vec![(0, Start), (10 * MIN, Pause), (70 * MIN, Stop)]);
        assert_eq!(rules.poll_timeout(), None);
    }

    #[test]
    fn after_the_stop_nothing_ever_records_again() {
        let (rules, out) = run(
            &[(0, 1), (MIN, 0), (2 * H, 3), (3 * H, 0), (3 * H + MIN, 1)],
            10 * H,
        );
        assert_eq!(out, vec![(0, Start), (MIN, Pause), (61 * MIN, Stop)]);
        assert!(!rules.capturing());
    }

    #[test]
    fn a_stretch_of_exactly_two_hours_is_recorded_whole() {
        let (rules, out) = run(&[(0, 2), (2 * H, 0)], 2 * H);
        // The cap and the last person leaving fall on the same instant: 2 h either way.
        assert_eq!(out, vec![(0, Start), (2 * H, Cap), (2 * H, Pause)]);
        assert_eq!(recorded(&out), 2 * H);
        assert_eq!(rules.phase(), Phase::Paused { since: T0 + 2 * H });
    }

    #[test]
    fn a_stretch_one_second_short_of_two_hours_is_not_capped() {
        let (_, out) = run(&[(0, 2), (2 * H - S, 0)], 2 * H);
        assert_eq!(out, vec![(0, Start), (2 * H - S, Pause)]);
        assert_eq!(recorded(&out), 2 * H - S);
    }

    #[test]
    fn a_longer_stretch_is_cut_at_two_hours() {
        let (rules, out) = run(&[(0, 1)], 3 * H);
        assert_eq!(out, vec![(0, Start), (2 * H, Cap)]);
        assert_eq!(rules.phase(), Phase::Capped);
        assert_eq!(
            rules.poll_timeout(),
            None,
            "no hour runs while people are on camera"
        );
    }

    #[test]
    fn a_return_after_the_two_hour_cut_resumes_with_a_fresh_allowance() {
        // On camera 0–2:30 (capped at 2:00), nobody 2:30–2:50, back 2:50–5:10.
        let steps = [(0, 1), (150 * MIN, 0), (170 * MIN, 1), (310 * MIN, 0)];
        let (_, out) = run(&steps, 310 * MIN);
        assert_eq!(
            out,
            vec![
                (0, Start),
                (2 * H, Cap),
                (150 * MIN, Pause),
                (170 * MIN, Resume),
                (170 * MIN + 2 * H, Cap),
                (310 * MIN, Pause),
            ]
        );
        assert_eq!(recorded(&out), 4 * H);
    }

    #[test]
    fn the_hour_after_a_cut_counts_from_when_everyone_left() {
        // Capped at 2:00, people stay until 3:30: the hour runs from 3:30.
        let steps = [(0, 1), (210 * MIN, 0), (210 * MIN + 59 * MIN, 1)];
        let (_, out) = run(&steps, 269 * MIN);
        assert_eq!(
            out,
            vec![
                (0, Start),
                (2 * H, Cap),
                (210 * MIN, Pause),
                (269 * MIN, Resume)
            ]
        );
    }

    #[test]
    fn leaving_and_returning_restarts_the_two_hours() {
        // 1:50 on camera, 5 minutes away, then 1:59 more: never capped.
        let steps = [(0, 1), (110 * MIN, 0), (115 * MIN, 1), (234 * MIN, 0)];
        let (_, out) = run(&steps, 234 * MIN);
        assert!(!out.iter().any(|(_, d)| *d == Cap), "{out:?}");
        assert_eq!(recorded(&out), 110 * MIN + 119 * MIN);
    }

    #[test]
    fn the_end_of_the_session_stops_a_running_or_paused_recording() {
        let mut rules = RecordingRules::new();
        assert_eq!(rules.on_camera(T0, 1), vec![Start]);
        assert_eq!(rules.end(T0 + MIN), vec![Stop]);
        assert_eq!(rules.on_camera(T0 + 2 * MIN, 1), vec![]);

        let mut rules = RecordingRules::new();
        rules.on_camera(T0, 1);
        rules.on_camera(T0 + MIN, 0);
        assert_eq!(rules.end(T0 + 2 * MIN), vec![Stop]);

        let mut rules = RecordingRules::new();
        assert_eq!(rules.end(T0), vec![], "nothing was recorded");
        assert_eq!(rules.on_camera(T0 + MIN, 1), vec![]);
    }

    #[test]
    fn a_recorder_restarted_mid_stretch_continues_with_the_rest_of_the_two_hours() {
        // Recording since T0; the recorder dies at 1:30 with media on disk up to 1:29:58,
        // and a new one is back at 1:31 with people still on camera.
        let saved = Phase::Recording { stretch_start: T0 };
        let on_disk = T0 + 90 * MIN - 2 * S;
        let (phase, interrupted) = restart(saved, Some(on_disk), T0 + 91 * MIN);
        assert!(interrupted);
        assert_eq!(
            phase,
            Phase::Interrupted {
                since: on_disk,
                recorded_ms: 90 * MIN - 2 * S
            }
        );
        let mut rules = RecordingRules::restore(phase);
        assert!(!rules.capturing());
        assert_eq!(rules.on_camera(T0 + 91 * MIN, 2), vec![Resume]);
        // 30:02 left of the 2 hours, not a fresh 2 hours.
        assert_eq!(rules.cap_at(), Some(T0 + 91 * MIN + 30 * MIN + 2 * S));
        assert_eq!(
            rules.handle_timeout(T0 + 91 * MIN + 30 * MIN + 2 * S),
            Some(Cap)
        );
    }

    #[test]
    fn a_recorder_restarted_after_the_cap_records_nothing_until_everyone_has_left() {
        let (phase, interrupted) = restart(Phase::Capped, Some(T0), T0 + 3 * H);
        assert!(interrupted);
        let mut rules = RecordingRules::restore(phase);
        assert_eq!(rules.on_camera(T0 + 3 * H, 1), vec![]);
        assert_eq!(rules.phase(), Phase::Capped);
        assert_eq!(rules.on_camera(T0 + 4 * H, 0), vec![Pause]);
        assert_eq!(rules.on_camera(T0 + 4 * H + MIN, 1), vec![Resume]);
        assert_eq!(rules.cap_at(), Some(T0 + 4 * H + MIN + 2 * H));
    }

    #[test]
    fn a_recorder_restarted_when_everyone_has_left_pauses_from_the_last_media() {
        let (phase, _) = restart(
            Phase::Recording { stretch_start: T0 },
            Some(T0 + 10 * MIN),
            T0 + 12 * MIN,
        );
        let mut rules = RecordingRules::restore(phase);
        assert_eq!(rules.on_camera(T0 + 12 * MIN, 0), vec![Pause]);
        assert_eq!(
            rules.phase(),
            Phase::Paused {
                since: T0 + 10 * MIN
            }
        );
        // Back after that, within the hour: a fresh stretch with its own 2 hours.
        assert_eq!(rules.on_camera(T0 + 20 * MIN, 1), vec![Resume]);
        assert_eq!(rules.cap_at(), Some(T0 + 20 * MIN + 2 * H));
        // Nobody came back for an hour after the last media: stopped, whenever it is noticed.
        let (phase, _) = restart(
            Phase::Recording { stretch_start: T0 },
            Some(T0 + 10 * MIN),
            T0 + 80 * MIN,
        );
        let mut rules = RecordingRules::restore(phase);
        assert_eq!(rules.on_camera(T0 + 80 * MIN, 1), vec![Stop]);
    }

    #[test]
    fn a_recorder_restarted_while_paused_or_waiting_was_not_interrupted() {
        for phase in [Phase::Waiting, Phase::Paused { since: T0 }, Phase::Stopped] {
            assert_eq!(restart(phase, Some(T0), T0 + MIN), (phase, false));
        }
        // Restarted again before it learnt who is on camera: still the first interruption.
        let interrupted = Phase::Interrupted {
            since: T0,
            recorded_ms: MIN,
        };
        assert_eq!(restart(interrupted, None, T0 + MIN), (interrupted, false));
    }

    #[test]
    fn a_restored_pause_keeps_its_hour() {
        let mut rules = RecordingRules::restore(Phase::Paused { since: T0 });
        assert_eq!(rules.poll_timeout(), Some(T0 + H));
        assert_eq!(rules.on_camera(T0 + H - S, 1), vec![Resume]);
        let mut rules = RecordingRules::restore(Phase::Paused { since: T0 });
        assert_eq!(rules.on_camera(T0 + H, 1), vec![Stop]);
    }
}
