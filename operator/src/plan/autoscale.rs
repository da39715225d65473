//! How many relay SFU pods a session's audience needs (issue 7's decision, pure).
//!
//! `relays = ceil((watching + headroom) / watchers_per_relay)`, within `[min, max]`. Growing
//! happens at once (a surge must not wait); shrinking only after the smaller number has been
//! enough for the whole `scale_down_delay`, so an audience that dips and comes back (between
//! talks, a reconnect wave) does not make relays come and go. [`super::relay::autoscale`]
//! applies it to a session's or stage's `spec.autoscaling`.

use jiff::{SignedDuration, Timestamp};

/// The bounds and pace of a session's autoscaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub min_relays: u32,
    pub max_relays: u32,
    /// Watchers one relay pod carries.
    pub watchers_per_relay: u32,
    /// Watchers of room kept free so that joiners never wait for a pod.
    pub headroom: u32,
    pub scale_down_delay: SignedDuration,
}

/// What the previous decision left behind (kept in the resource's status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct State {
    pub relays: u32,
    /// Since when fewer relays would have been enough, without interruption.
    pub lower_since: Option<Timestamp>,
}

/// The decision: the relays to run, the state to keep, and when to look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub relays: u32,
    pub state: State,
    /// When a pending scale-down becomes due (None: nothing pending).
    pub recheck_at: Option<Timestamp>,
}

/// Relays needed for `watching` people, before the delay and with the bounds.
pub fn needed(policy: &Policy, watching: u32) -> u32 {
    let per = policy.watchers_per_relay.max(1);
    let want = (watching + policy.headroom).div_ceil(per);
    want.clamp(policy.min_relays, policy.max_relays.max(policy.min_relays))
}

/// Decides the number of relays at `now` for `watching` people.
pub fn decide(policy: &Policy, watching: u32, state: State, now: Timestamp) -> Decision {
    let want = needed(policy, watching);
    if want >= state.relays {
        return Decision {
            relays: want,
            state: State {
                relays: want,
                lower_since: None,
            },
            recheck_at: None,
        };
    }
    let since = state.lower_since.unwrap_or(now);
    let due = since + policy.scale_down_delay;
    if now >= due {
        Decision {
            relays: want,
            state: State {
                relays: want,
                lower_since: None,
            },
            recheck_at: None,
        }
    } else {
        Decision {
            relays: state.relays,
            state: State {
                relays: state.relays,
                lower_since: Some(since),
            },
            recheck_at: Some(due),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            min_relays: 0,
            max_relays: 10,
            watchers_per_relay: 500,
            headroom: 50,
            scale_down_delay: SignedDuration::from_mins(5),
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn the_formula_keeps_headroom_and_the_bounds() {
        let p = policy();
        assert_eq!(needed(&p, 0), 1, "50 of headroom already needs a relay");
        assert_eq!(needed(&p, 450), 1);
        assert_eq!(needed(&p, 451), 2);
        assert_eq!(needed(&p, 100_000), 10, "max");
        let p = Policy {
            min_relays: 2,
            headroom: 0,
            ..policy()
        };
        assert_eq!(needed(&p, 0), 2, "min");
    }

    #[test]
    fn a_surge_scales_out_at_once() {
        let p = policy();
        let d = decide(
            &p,
            2_400,
            State {
                relays: 1,
                lower_since: None,
            },
            at(0),
        );
        assert_eq!(d.relays, 5);
        assert_eq!(d.recheck_at, None);
    }

    #[test]
    fn scaling_in_waits_for_the_whole_delay() {
        let p = policy();
        let mut state = State {
            relays: 5,
            lower_since: None,
        };
        let d = decide(&p, 100, state, at(0));
        assert_eq!(d.relays, 5, "not yet");
        assert_eq!(d.recheck_at, Some(at(300)));
        state = d.state;
        let d = decide(&p, 100, state, at(299));
        assert_eq!(d.relays, 5);
        let d = decide(&p, 100, d.state, at(300));
        assert_eq!(d.relays, 1, "after 5 minutes of needing fewer");
        assert_eq!(d.state.lower_since, None);
    }

    #[test]
    fn an_audience_that_dips_and_returns_does_not_flap() {
        let p = policy();
        let mut state = State {
            relays: 3,
            lower_since: None,
        };
        // Dips below two relays' worth for four minutes, comes back, dips again.
        for (t, watching) in [(0, 300), (240, 1_200), (250, 300), (500, 300)] {
            let d = decide(&p, watching, state, at(t));
            assert_eq!(d.relays, 3, "at {t}s with {watching} watching");
            state = d.state;
        }
        assert_eq!(
            state.lower_since,
            Some(at(250)),
            "the delay restarted at the dip"
        );
        assert_eq!(decide(&p, 300, state, at(550)).relays, 1);
    }
}
