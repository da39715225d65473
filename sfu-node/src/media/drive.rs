//! The state machine's inputs and outputs: a datagram or a timeout in, datagrams, events
//! and the next timeout out. Each input drives the peers it touched until they wait; what
//! str0m emits on the way (connections, new m-lines, media, keyframe requests, estimates,
//! stats) is dispatched to the rest of the core.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::bwe::BweKind;
use str0m::net::{Protocol, Receive, Transmit};
use str0m::{Event, IceConnectionState, Input, Output};

use super::{Media, MediaEvent, Peer, PeerId, PeerRole, estimate};

/// How often viewers' layers are re-chosen from fresh estimates and bitrates.
const LAYER_CHECK: Duration = Duration::from_millis(500);
/// How long a peer whose connection closed may take to be heard from over another path
/// before it is dropped (see [`Media::path_closed`]): a browser's RTCP and consent checks
/// arrive several times a second.
pub const PATH_CLOSED_GRACE: Duration = Duration::from_secs(2);
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
                self.by_addr.insert((proto, source), peer.id);
                peer.id
            }
        };
        let peer = self.peers.get_mut(&id).expect("found above");
        peer.last_rx = now;
        peer.heard_from = Some((proto, source));
        let Input::Receive(at, receive) = input else {
            unreachable!("made above");
        };
        // Our str0m fork: after RTCP (nearly all a viewer sends), not str0m's full timeout
        // but only what the RTCP can make due at once (see third_party/str0m/PATCHES.md).
        if let Err(e) = peer.rtc.handle_receive(at, receive) {
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

    /// The connection `remote` sent over (an ICE-TCP connection) has closed. A peer whose
    /// last datagram came over it cannot be reached there any more: it is dropped
    /// [`PATH_CLOSED_GRACE`] from now, as if silent, unless it is heard from again over
    /// another path (a browser may move to another candidate pair). From then on nothing is
    /// forwarded towards a connection that is gone, and the room's counts leave it out.
    pub fn path_closed(&mut self, now: Instant, proto: Protocol, remote: SocketAddr) {
        let Some(id) = self.by_addr.remove(&(proto, remote)) else {
            return;
        };
        let timeout = self.config.peer_timeout;
        if let Some(peer) = self.peers.get_mut(&id)
            && peer.heard_from == Some((proto, remote))
            && let Some(silent_since) = (now + PATH_CLOSED_GRACE).checked_sub(timeout)
        {
            peer.last_rx = peer.last_rx.min(silent_since);
        }
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
        // Each due peer's timeout is handled when it is polled (see `step`).
        self.drive_many(now, &due);
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

    /// Drive one peer (see [`Media::drive_many`]).
    pub(super) fn drive(&mut self, now: Instant, id: PeerId) {
        self.drive_many(now, &[id]);
    }

    /// Drive `ids` (sorted, no repeats) until each waits: their queued RTP writes are done,
    /// and they are polled until they want a timeout, on the room's worker threads when
    /// there are several (each peer on one thread, alone with its own state: see [`step`]).
    /// What they emitted is then taken in peer order on this thread: datagrams to
    /// [`Media::poll_transmit`], events dispatched to the rest of the core (which may write to
    /// more viewers: they wait for the next round of [`Media::flush`]), dead peers removed.
    pub(super) fn drive_many(&mut self, now: Instant, ids: &[PeerId]) {
        let Some(pool) = self.workers.pool(ids.len()) else {
            for &id in ids {
                if let Some(peer) = self.peers.get_mut(&id) {
                    // On the room's thread datagrams go straight to its queue.
                    let mut out = Outgoing {
                        transmits: &mut self.transmits,
                        stats: &mut self.stats,
                    };
                    step(now, peer, Some(&mut out));
                    self.settle(now, id);
                }
            }
            return;
        };
        let mut peers: Vec<&mut Peer> = self
            .peers
            .iter_mut()
            .filter(|(id, _)| ids.binary_search(id).is_ok())
            .map(|(_, p)| p)
            .collect();
        let direct = self.direct.as_deref();
        let shards = pool.drive(
            &mut peers,
            |peer| step(now, peer, None),
            |shard| send(shard, direct),
        );
        self.stats.spread_drives += 1;
        for sent in shards {
            self.stats.packets_out += sent.packets;
            self.stats.bytes_out += sent.bytes;
            self.transmits.extend(sent.rest);
        }
        for &id in ids {
            self.settle(now, id);
        }
    }

    /// Take what driving peer `id` produced (see [`Media::drive_many`]).
    fn settle(&mut self, now: Instant, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        self.stats.rtc_timeouts += std::mem::take(&mut peer.timeouts_handled);
        self.stats.packets_forwarded += std::mem::take(&mut peer.writes_done);
        for t in peer.outbox.drain(..) {
            self.stats.packets_out += 1;
            self.stats.bytes_out += t.contents.len() as u64;
            self.transmits.push_back(t);
        }
        if peer.inbox.is_empty() && peer.rtc.is_alive() {
            return;
        }
        let mut events = std::mem::take(&mut peer.inbox);
        let alive = peer.rtc.is_alive();
        for e in events.drain(..) {
            self.on_event(now, id, e);
        }
        if let Some(peer) = self.peers.get_mut(&id) {
            // Kept for its capacity; events dispatched above did not drive this peer.
            peer.inbox = events;
            if !alive || !peer.rtc.is_alive() {
                self.remove_peer(now, id);
            }
        }
    }

    /// Drive every peer that was written to while handling the last input.
    pub(super) fn flush(&mut self, now: Instant) {
        while !self.dirty.is_empty() {
            let mut batch = std::mem::take(&mut self.dirty);
            batch.sort_unstable();
            batch.dedup();
            self.drive_many(now, &batch);
            if self.dirty.capacity() < batch.capacity() {
                // Kept for its capacity.
                batch.clear();
                self.dirty = batch;
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

/// Drive one peer until it waits, touching nothing but the peer (and, on the room's own
/// thread, `direct`: the room's queue of datagrams): do its queued RTP writes and make what
/// was written ready to send, then poll it, keeping datagrams (without `direct`) and events in
/// its `outbox` and `inbox` for the room to take.
///
/// Written RTP is made ready with str0m's `handle_written_rtp` (our fork, see
/// `third_party/str0m/PATCHES.md`): it timestamps the send queues only, where the timeout
/// str0m would otherwise ask for at once runs its whole session per peer per wake-up. A
/// timeout already due for another reason is handled right here, at most
/// [`MAX_IMMEDIATE_TIMEOUTS`] of them.
fn step(now: Instant, peer: &mut Peer, mut direct: Option<&mut Outgoing<'_>>) {
    if !peer.writes.is_empty() {
        let mut writes = std::mem::take(&mut peer.writes);
        for (mid, write) in writes.drain(..) {
            peer.write_rtp(mid, write);
        }
        // Kept for its capacity.
        peer.writes = writes;
    }
    if std::mem::take(&mut peer.written)
        && let Err(e) = peer.rtc.handle_written_rtp(now)
    {
        tracing::debug!(peer = peer.id.0, "written rtp failed, disconnecting: {e}");
        peer.rtc.disconnect();
    }
    let mut immediate = 0;
    while peer.rtc.is_alive() {
        match peer.rtc.poll_output() {
            Ok(Output::Timeout(t)) if t <= now && immediate < MAX_IMMEDIATE_TIMEOUTS => {
                immediate += 1;
                peer.timeouts_handled += 1;
                if let Err(e) = peer.rtc.handle_input(Input::Timeout(now)) {
                    tracing::debug!(peer = peer.id.0, "timeout failed, disconnecting: {e}");
                    peer.rtc.disconnect();
                }
            }
            Ok(Output::Timeout(t)) => {
                peer.timeout = t;
                return;
            }
            Ok(Output::Transmit(t)) => match direct.as_deref_mut() {
                Some(out) => {
                    out.stats.packets_out += 1;
                    out.stats.bytes_out += t.contents.len() as u64;
                    out.transmits.push_back(t);
                }
                None => peer.outbox.push(t),
            },
            Ok(Output::Event(e)) => peer.inbox.push(e),
            Err(e) => {
                tracing::debug!(peer = peer.id.0, "poll failed, disconnecting: {e}");
                peer.rtc.disconnect();
            }
        }
    }
}

/// The room's own queue of datagrams and its counters, for peers driven on its thread.
struct Outgoing<'a> {
    transmits: &'a mut std::collections::VecDeque<Transmit>,
    stats: &'a mut super::MediaStats,
}

/// What one thread sent of its shard's datagrams.
struct Sent {
    packets: u64,
    bytes: u64,
    /// UDP datagrams the socket did not take now, for the room's own thread to send.
    rest: Vec<Transmit>,
}

/// Send the UDP datagrams a shard of peers produced from this thread, as many as the socket
/// takes now (see [`super::DirectSend`]); without a sink they stay in the peers' outboxes.
fn send(shard: &mut [&mut Peer], direct: Option<&dyn super::DirectSend>) -> Sent {
    let mut sent = Sent {
        packets: 0,
        bytes: 0,
        rest: Vec::new(),
    };
    let Some(direct) = direct else {
        return sent;
    };
    let mut udp: Vec<Transmit> = Vec::new();
    for peer in shard.iter_mut() {
        udp.extend(peer.outbox.extract_if(.., |t| t.proto == Protocol::Udp));
    }
    let done = direct.send_now(&udp);
    for t in &udp[..done] {
        sent.packets += 1;
        sent.bytes += t.contents.len() as u64;
    }
    sent.rest = udp.split_off(done);
    sent
}
