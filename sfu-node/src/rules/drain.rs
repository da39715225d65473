//! Draining: a room being shut down takes no joins, tells everyone, and disconnects whoever
//! is still in at the grace deadline (or is done as soon as everyone has left).

use std::time::{Duration, Instant};

use super::{Refusal, Rules, RulesOutput, ServerEvent};

impl Rules {
    pub fn is_draining(&self) -> bool {
        self.drain_deadline.is_some()
    }

    /// Draining and everyone has left.
    pub fn is_drained(&self) -> bool {
        self.is_draining() && self.participants.is_empty()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.drain_deadline
            .filter(|_| !self.participants.is_empty())
    }

    /// Stop taking joins; everyone still in is disconnected at `now + grace`.
    pub fn begin_drain(&mut self, now: Instant, grace: Duration) {
        if self.is_draining() {
            return;
        }
        self.drain_deadline = Some(now + grace);
        let grace_ms = grace.as_millis() as u64;
        self.send_all(ServerEvent::Draining { grace_ms });
    }

    /// The room moves to another pod: stop taking joins, ask everyone to re-join through the
    /// control plane (which now names the other pod) and disconnect whoever is still in
    /// `notice` later. A room already draining carries on draining.
    pub fn begin_leave(&mut self, now: Instant, notice: Duration) {
        if self.is_draining() {
            return;
        }
        self.drain_deadline = Some(now + notice);
        self.send_all(ServerEvent::Reconnect {
            reason: "room_moving".into(),
        });
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.drain_deadline else {
            return;
        };
        if now < deadline {
            return;
        }
        let ids: Vec<_> = self.participants.keys().copied().collect();
        for id in ids {
            if self.is_on_camera(id) {
                self.out.push_back(RulesOutput::StopMedia(id));
            }
            self.participants.remove(&id);
            self.out
                .push_back(RulesOutput::Disconnect(id, Refusal::Draining));
        }
        self.last_counts = self.counts();
    }
}
