//! Where a joiner watches: the least loaded ready relay of a session or stage, else its origin.
//!
//! The operator reports each relay's `watching` in `status.relayPods` every few seconds; joins
//! sent to a relay may not be in that report yet (it was read before they connected, or is
//! still on its way), so the control plane keeps the joins it sent as pending ([`Ledger`]) and
//! adds them to the report. A report that rose by `d` since the last one seen has taken in the
//! `d` oldest pending joins; a report that fell (people left) takes in none. Pending joins
//! expire after [`SENT_TTL_SECONDS`] (a join that never connected must not fill a relay for
//! good). A relay is full at `watchersPerPod`.
//!
//! Every replica of the control plane sends joins, so the ledger of a room is kept in the
//! store ([`RoomLedger`], see `Store::with_relay_ledger`) and picked from one replica at a time.

use std::collections::{BTreeMap, HashMap};

use roundtable_crds::RelayPod;
use serde::{Deserialize, Serialize};

/// How long a join sent to a relay counts on top of its reports at most.
pub const SENT_TTL_SECONDS: i64 = 30;

/// A relay's load as the control plane sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// `watching` from the last report.
    pub reported: i32,
    /// Joins sent there that its reports have not taken in yet.
    pub sent: i32,
}

/// The relay a new watcher goes to: the ready relay with an endpoint and the fewest
/// (reported + sent) watchers below `per_relay`; the first by name on a tie. None: no ready
/// relay has room, the origin takes the watcher.
pub fn least_loaded(
    relays: &[RelayPod],
    load: impl Fn(&RelayPod) -> Load,
    per_relay: i32,
) -> Option<&RelayPod> {
    relays
        .iter()
        .filter(|r| r.ready && r.endpoint.is_some())
        .map(|r| {
            let l = load(r);
            (r, l.reported + l.sent)
        })
        .filter(|(_, total)| *total < per_relay)
        .min_by(|(a, x), (b, y)| x.cmp(y).then_with(|| a.name.cmp(&b.name)))
        .map(|(r, _)| r)
}

/// Joins sent to each relay that its reports have not taken in yet, per room.
#[derive(Debug, Default)]
pub struct Ledger {
    sent: HashMap<(String, String), Pending>,
}

/// One room's pending joins by relay, as kept between picks.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RoomLedger(BTreeMap<String, Pending>);

/// One relay's pending joins.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Pending {
    /// The last report seen.
    reported: i32,
    /// When each pending join was sent (unix seconds), oldest first.
    times: Vec<i64>,
}

impl Pending {
    /// Takes in a report seen at `now`: a rise settles that many of the oldest pending joins.
    fn observe(&mut self, reported: i32, now: i64) {
        let rise = usize::try_from(reported - self.reported).unwrap_or(0);
        self.times.drain(..rise.min(self.times.len()));
        self.times.retain(|t| now - t < SENT_TTL_SECONDS);
        self.reported = reported;
    }
}

impl Ledger {
    /// A ledger holding `room`'s saved pending joins.
    pub fn with_room(room: &str, saved: RoomLedger) -> Self {
        Ledger {
            sent: saved
                .0
                .into_iter()
                .map(|(relay, pending)| ((room.to_string(), relay), pending))
                .collect(),
        }
    }

    /// `room`'s pending joins, to keep.
    pub fn room(&self, room: &str) -> RoomLedger {
        RoomLedger(
            self.sent
                .iter()
                .filter(|((r, _), _)| r == room)
                .map(|((_, relay), pending)| (relay.clone(), pending.clone()))
                .collect(),
        )
    }

    /// Picks the relay for a new watcher of `room` at `now` (unix seconds) and counts the join
    /// there; None when no ready relay has room.
    pub fn pick(
        &mut self,
        room: &str,
        relays: &[RelayPod],
        per_relay: i32,
        now: i64,
    ) -> Option<RelayPod> {
        self.sent
            .retain(|(r, pod), _| r != room || relays.iter().any(|relay| &relay.name == pod));
        for relay in relays {
            if let Some(pending) = self.sent.get_mut(&(room.to_string(), relay.name.clone())) {
                pending.observe(relay.watching, now);
            }
        }
        let load = |relay: &RelayPod| Load {
            reported: relay.watching,
            sent: self
                .sent
                .get(&(room.to_string(), relay.name.clone()))
                .map_or(0, |p| p.times.len() as i32),
        };
        let chosen = least_loaded(relays, load, per_relay)?.clone();
        self.sent
            .entry((room.to_string(), chosen.name.clone()))
            .or_insert_with(|| Pending {
                reported: chosen.watching,
                times: Vec::new(),
            })
            .times
            .push(now);
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(i: u32, ready: bool, watching: i32) -> RelayPod {
        RelayPod {
            name: format!("session-big-relay-{i}"),
            endpoint: Some(format!("10.0.0.{i}:3100{i}")),
            ready,
            watching,
        }
    }

    fn reported(r: &RelayPod) -> Load {
        Load {
            reported: r.watching,
            sent: 0,
        }
    }

    #[test]
    fn the_least_loaded_ready_relay_with_room_is_chosen() {
        let relays = [relay(0, true, 300), relay(1, true, 120), relay(2, false, 0)];
        let chosen = least_loaded(&relays, reported, 500).unwrap();
        assert_eq!(chosen.name, "session-big-relay-1", "relay 2 is not ready");
        let full = [relay(0, true, 500), relay(1, true, 499)];
        assert_eq!(
            least_loaded(&full, reported, 500).unwrap().name,
            "session-big-relay-1"
        );
        let all_full = [relay(0, true, 500)];
        assert_eq!(
            least_loaded(&all_full, reported, 500),
            None,
            "the origin takes it"
        );
        assert_eq!(least_loaded(&[], reported, 500), None);
        let no_endpoint = [RelayPod {
            endpoint: None,
            ..relay(0, true, 0)
        }];
        assert_eq!(least_loaded(&no_endpoint, reported, 500), None);
    }

    #[test]
    fn joins_count_on_top_of_reports_until_a_report_takes_them_in() {
        let mut ledger = Ledger::default();
        let relays = [relay(0, true, 10), relay(1, true, 12)];
        let picks: Vec<String> = (0..6)
            .map(|_| ledger.pick("r", &relays, 500, 0).unwrap().name)
            .collect();
        // 10 vs 12: relay 0 takes three (ties go to the first), then they alternate.
        let zero = picks.iter().filter(|p| p.ends_with("-0")).count();
        assert_eq!(zero, 4, "{picks:?}");
        // Relay 0 reports 13: three of its four joins arrived (13 + 1 = 14); relay 1 still
        // reports 12 with two on their way (14): a tie, the first by name.
        let relays = [relay(0, true, 13), relay(1, true, 12)];
        assert_eq!(
            ledger.pick("r", &relays, 500, 1).unwrap().name,
            "session-big-relay-0"
        );
        // Relay 0 falls to 9 (people left): its pending join stays pending (9 + 2 = 11 < 14).
        let relays = [relay(0, true, 9), relay(1, true, 12)];
        assert_eq!(
            ledger.pick("r", &relays, 500, 2).unwrap().name,
            "session-big-relay-0"
        );
        // A surge against stale reports: relay 0 reports 5 of 10 while 5 more are on their way.
        let mut ledger = Ledger::default();
        let relays = [relay(0, true, 0)];
        for _ in 0..10 {
            assert!(ledger.pick("s", &relays, 10, 0).is_some());
        }
        let relays = [relay(0, true, 5)];
        assert_eq!(
            ledger.pick("s", &relays, 10, 1),
            None,
            "the origin takes it"
        );
    }

    #[test]
    fn a_ledger_kept_between_picks_picks_as_one_kept_in_memory() {
        let mut memory = Ledger::default();
        let mut kept = RoomLedger::default();
        let relays = [relay(0, true, 10), relay(1, true, 12)];
        for now in 0..12 {
            let mut ledger = Ledger::with_room("r", kept);
            let picked = ledger.pick("r", &relays, 16, now).map(|r| r.name);
            kept =
                serde_json::from_str(&serde_json::to_string(&ledger.room("r")).unwrap()).unwrap();
            assert_eq!(picked, memory.pick("r", &relays, 16, now).map(|r| r.name));
        }
        assert_eq!(
            Ledger::with_room("r", kept).pick("r", &relays, 16, 12),
            None,
            "both relays are full with the joins in flight that were kept"
        );
    }

    #[test]
    fn sent_joins_fill_a_relay_and_expire() {
        let mut ledger = Ledger::default();
        let relays = [relay(0, true, 0)];
        for _ in 0..3 {
            assert!(ledger.pick("r", &relays, 3, 0).is_some());
        }
        assert_eq!(
            ledger.pick("r", &relays, 3, 1),
            None,
            "full with joins in flight"
        );
        assert!(
            ledger.pick("r", &relays, 3, SENT_TTL_SECONDS).is_some(),
            "joins that never showed up stop counting"
        );
        assert!(
            ledger.pick("other", &relays, 3, 1).is_some(),
            "rooms count apart"
        );
    }
}
