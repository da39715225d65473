//! The state machine's inputs and outputs: a datagram or a timeout in, datagrams, events
//! and the next timeout out. Each input drives the peers it touched until they wait; what
//! str0m emits on the way (connections, new m-lines, media, keyframe requests, estimates,
//! stats) is dispatched to the rest of the core.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::bwe::BweKind;
use str0m::net::{Protocol, Receive, Transmit};
use str0m::{Event, IceConnectionState, Input, Output};

use super::{Media, MediaEvent, PeerId, PeerRole, estimate};

/// How often viewers' layers are re-chosen from fresh estimates and bitrates.
const LAYER_CHECK: Duration = Duration::from_millis(500);
/// Due timeouts one [`Media::drive`] handles before leaving the rest to the next wake-up,
/// so one busy peer cannot hold the room.
const MAX_IMMEDIATE_TIMEOUTS: u32 = 64;

impl Media {
    /// A packet arrived on the room's media port: a UDP datagram, or one framed on an ICE-TCP
    /// connection from `source`. True if a peer took it.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        datagram: &[u8],
    ) -> bool {
        self.stats.packets_in += 1;
        self.stats.bytes_in += datagram.len() as u64;
        let Ok(contents) = datagram.try_into() else {
            return false;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto,
                source,
                destination: self.config.advertise,
                contents,
            },
        );
        let cached = self
            .by_addr
            .get(&(proto, source))
            .copied()
            .filter(|id| self.peers.get(id).is_some_and(|p| p.rtc.accepts(&input)));
        let id = match cached {
            Some(id) => id,
            None => {
                let Some(peer) = self.peers.values_mut().find(|p| p.rtc.accepts(&input)) else {
                    return false;
                };
                peer.remote = Some(source);
                self.by_addr.insert((proto, source), peer.id);
                peer.id
            }
        };
        let peer = self.peers.get_mut(&id).expect("found above");
        peer.last_rx = now;
        if let Err(e) = peer.rtc.handle_input(input) {
            tracing::debug!(peer = id.0, "input refused, disconnecting: {e}");
            peer.rtc.disconnect();
        }
        self.drive(now, id);
        // The viewers written to are driven once for every datagram of this wake-up, when
        // the shell polls for what to send (see `poll_transmit`): one str0m timeout per
        // viewer per wake-up, not per forwarded packet.
        self.pending_at = Some(now);
        true
    }

    /// Drive the viewers written to since the last poll (see `handle_receive`).
    fn flush_pending(&mut self) {
        if let Some(now) = self.pending_at.take() {
            self.flush(now);
            if !self.events.is_empty() {
                // Events met while driving them reach the room on an immediate wake-up.
                self.events_at = Some(now);
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.flush_pending();
        self.events_at = None;
        let silent = self.config.peer_timeout;
        for peer in self.peers.values_mut() {
            if now.saturating_duration_since(peer.last_rx) >= silent {
                peer.rtc.disconnect();
                peer.timeout = now;
            }
        }
        let due: Vec<PeerId> = self
            .peers
            .values()
            .filter(|p| p.timeout <= now)
            .map(|p| p.id)
            .collect();
        self.stats.wakeups += 1;
        self.stats.rtc_timeouts += due.len() as u64;
        for id in due {
            if let Some(peer) = self.peers.get_mut(&id)
                && let Err(e) = peer.rtc.handle_input(Input::Timeout(now))
            {
                tracing::debug!(peer = id.0, "timeout failed, disconnecting: {e}");
                peer.rtc.disconnect();
            }
            self.drive(now, id);
        }
        if self.next_layer_check.is_none_or(|t| t <= now) {
            self.next_layer_check = Some(now + LAYER_CHECK);
            let viewers: Vec<PeerId> = self
                .peers
                .values()
                .filter(|p| p.role == PeerRole::View)
                .map(|p| p.id)
                .collect();
            for id in viewers {
                self.update_layers(now, id);
            }
        }
        self.flush(now);
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.transmits.is_empty() {
            self.flush_pending();
        }
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some(now) = self.pending_at.or(self.events_at) {
            return Some(now);
        }
        self.peers
            .values()
            .map(|p| p.timeout)
            .chain(
                self.peers
                    .values()
                    .map(|p| p.last_rx + self.config.peer_timeout),
            )
            .chain(self.next_layer_check.filter(|_| !self.peers.is_empty()))
            .min()
    }

    /// Poll one peer until it wants a timeout, handling what it emits. A timeout already due
    /// (str0m asks for one at once to packetize what was just written) is handled right here.
    /// str0m's pacer asks for one 1 µs after each packet it releases; that one waits for the
    /// room's next wake-up, where one pass serves every peer due. (Handling it here instead
    /// was measured with `bench/sfu 4 100`: more full str0m timeouts per packet, ~2 instead of
    /// ~1.4, and no lower forwarding delay.)
    pub(super) fn drive(&mut self, now: Instant, id: PeerId) {
        let mut immediate = 0;
        loop {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            if !peer.rtc.is_alive() {
                self.remove_peer(now, id);
                return;
            }
            match peer.rtc.poll_output() {
                Ok(Output::Timeout(t)) if t <= now && immediate < MAX_IMMEDIATE_TIMEOUTS => {
                    immediate += 1;
                    self.stats.rtc_timeouts += 1;
                    if let Err(e) = peer.rtc.handle_input(Input::Timeout(now)) {
                        tracing::debug!(peer = id.0, "timeout failed, disconnecting: {e}");
                        peer.rtc.disconnect();
                    }
                }
                Ok(Output::Timeout(t)) => {
                    peer.timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    self.stats.packets_out += 1;
                    self.stats.bytes_out += t.contents.len() as u64;
                    self.transmits.push_back(t);
                }
                Ok(Output::Event(e)) => self.on_event(now, id, e),
                Err(e) => {
                    tracing::debug!(peer = id.0, "poll failed, disconnecting: {e}");
                    peer.rtc.disconnect();
                }
            }
        }
    }

    /// Drive every peer that was written to while handling the last input.
    pub(super) fn flush(&mut self, now: Instant) {
        while !self.dirty.is_empty() {
            let mut batch = std::mem::take(&mut self.dirty);
            batch.sort_unstable();
            batch.dedup();
            for id in batch {
                self.drive(now, id);
            }
        }
    }

    pub(super) fn on_event(&mut self, now: Instant, id: PeerId, event: Event) {
        match event {
            Event::Connected => {
                let peer = self.peers.get_mut(&id).expect("driving");
                peer.connected = true;
                self.events.push_back(MediaEvent::Connected {
                    peer: id,
                    participant: peer.participant,
                });
                if peer.role.receives() {
                    self.request_viewer_keyframes(now, id);
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.rtc.disconnect();
                }
            }
            Event::MediaAdded(added) => self.on_media_added(now, id, added),
            Event::RtpPacket(packet) => self.forward(now, id, packet),
            Event::KeyframeRequest(req) => {
                self.stats.plis_received += 1;
                let Some(peer) = self.peers.get(&id) else {
                    return;
                };
                let Some(feed) = peer
                    .slots
                    .iter()
                    .find(|s| s.mid == req.mid)
                    .and_then(|s| s.feed.as_ref())
                else {
                    return;
                };
                let rid = feed.current.unwrap_or(feed.target);
                let (publisher, track) = (feed.publisher, feed.track);
                self.request_keyframe(now, publisher, track, rid);
            }
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.gcc_estimate_bps = Some(estimate.as_u64());
                }
            }
            Event::PeerStats(s) => {
                if let Some(p) = self.peers.get_mut(&id)
                    && let Some(estimator) = p.estimator.as_mut()
                {
                    let report = estimate::Report {
                        at: s.timestamp,
                        loss: s.egress_loss_fraction,
                        rtt: s.rtt,
                        bytes_sent: s.peer_bytes_tx,
                    };
                    estimator.update(report, p.desired_bps);
                }
            }
            Event::MediaEgressStats(s) => {
                let key = (id, s.mid, s.rid, true);
                let last = self.stat_marks.insert(key, s.nacks).unwrap_or(0);
                self.stats.nacks_received += s.nacks.saturating_sub(last);
            }
            Event::MediaIngressStats(s) => {
                let key = (id, s.mid, s.rid, false);
                let last = self.stat_marks.insert(key, s.nacks).unwrap_or(0);
                self.stats.nacks_sent += s.nacks.saturating_sub(last);
                if let Some(loss) = s.loss {
                    self.ingress_loss.insert(id, loss);
                }
            }
            _ => {}
        }
    }
}
