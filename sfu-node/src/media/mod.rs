//! The room's media as one sans-IO state machine owning every `str0m::Rtc`.
//!
//! Inputs: [`Media::add_peer`] (an SDP offer), [`Media::handle_receive`] (a UDP datagram
//! with its arrival time), [`Media::handle_timeout`]. Outputs: [`Media::poll_transmit`]
//! (datagrams to send), [`Media::poll_event`] (peers connecting and closing, tracks placed
//! in a viewer's m-lines), [`Media::poll_timeout`]. Time only moves when the caller says so.
//!
//! Forwarding model (after str0m's `chat` example): publishers (WHIP) own [`TrackIn`]s;
//! viewers (WHEP) offer receive-only m-lines, which become [`Slot`]s; each slot is fed by at
//! most one publisher track, so no renegotiation is needed while people come and go. A
//! video slot forwards one simulcast layer, chosen from the viewer's TWCC estimate and its
//! tile size; a layer switch waits for a keyframe on the new layer and keeps RTP time
//! running forward. Keyframe requests to publishers are throttled per layer.
//!
//! Relays: at an origin, a [`PeerRole::Relay`] viewer is fed every layer of every track, one
//! slot per layer, pinned (no layer switching). At a relay, the [`PeerRole::Upstream`] peer
//! to the origin owns "virtual" simulcast [`TrackIn`]s whose layers arrive in separate
//! upstream slots (see [`upstream`]); local viewers are served from them like from a
//! publisher.
//!
//! Invariants: a track's `subscribers` and the slots' `feed`s always point at each other;
//! a viewer never receives its own participant's media; nothing is written to a viewer
//! whose gate (`receives`) is closed.

pub mod estimate;
mod keyframe;
mod layer;
mod peer;
mod stats;
#[cfg(test)]
mod tests;
mod upstream;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Once;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::change::SdpOffer;
use str0m::media::{Direction, KeyframeRequestKind, MediaData, MediaKind, MediaTime, Mid, Rid};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

pub use keyframe::{KEYFRAME_REQUEST_INTERVAL, KeyframeThrottle};
pub use layer::{RateMeter, choose_layer, desired_bps, max_layer_for_tile, rank_rids, video_share};
pub use peer::{Feed, Peer, PeerId, PeerRole, Slot, Source, TrackIn};
pub use stats::MediaStats;
pub use upstream::{OriginTrack, Route, Upstream};

use crate::rules::ParticipantId;
use crate::{Error, Result};

/// How often viewers' layers are re-chosen from fresh estimates and bitrates.
const LAYER_CHECK: Duration = Duration::from_millis(500);
/// Due timeouts one [`Media::drive`] handles before leaving the rest to the next wake-up,
/// so one busy peer cannot hold the room.
const MAX_IMMEDIATE_TIMEOUTS: u32 = 64;

#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// The address put in ICE host candidates: what peers send UDP to (a node's hostPort,
    /// a load balancer, or the socket's own address).
    pub advertise: SocketAddr,
    /// Starting bandwidth estimate towards each viewer.
    pub initial_estimate_bps: u64,
    /// A peer that sends nothing for this long is gone (closed tab, lost network).
    pub peer_timeout: Duration,
    /// How each viewer's bandwidth is estimated.
    pub bwe: Bwe,
}

/// How a viewer's bandwidth estimate (which its video layers follow) is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Bwe {
    /// From the viewer's TWCC feedback: loss and queueing delay (see [`estimate`]); packets
    /// leave unpaced.
    #[default]
    Feedback,
    /// str0m's GCC estimator with probing and its leaky-bucket pacer: finer, but the pacer
    /// costs a full str0m timeout per packet.
    Gcc,
    /// None: layers follow only tile sizes (to measure what estimation costs).
    Off,
}

impl MediaConfig {
    pub fn new(advertise: SocketAddr) -> Self {
        MediaConfig {
            advertise,
            initial_estimate_bps: 1_500_000,
            peer_timeout: Duration::from_secs(15),
            bwe: Bwe::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    Connected {
        peer: PeerId,
        participant: ParticipantId,
    },
    Closed {
        peer: PeerId,
        participant: ParticipantId,
        role: PeerRole,
    },
    /// A viewer's `mid` now carries `publisher`'s track.
    Track {
        viewer: ParticipantId,
        mid: Mid,
        publisher: ParticipantId,
        kind: MediaKind,
        source: Source,
        /// For a relay's pinned slot: the one layer it carries (`Some(None)` without
        /// simulcast); `None` for a viewer, whose layer follows its bandwidth.
        rid: Option<Option<Rid>>,
    },
    TrackEnded {
        viewer: ParticipantId,
        mid: Mid,
    },
}

#[derive(Debug)]
pub struct Media {
    config: MediaConfig,
    peers: BTreeMap<PeerId, Peer>,
    next_peer: u64,
    by_addr: HashMap<SocketAddr, PeerId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<MediaEvent>,
    dirty: Vec<PeerId>,
    stats: MediaStats,
    stat_marks: HashMap<(PeerId, Mid, Option<Rid>, bool), u64>,
    ingress_loss: HashMap<PeerId, f32>,
    next_layer_check: Option<Instant>,
}

/// How often str0m reports a peer's stats (and a viewer's estimate follows its feedback).
const STATS_EVERY: Duration = Duration::from_millis(250);

/// What every peer of the room speaks: Opus, VP8 and H.264, stats every [`STATS_EVERY`].
fn peer_config() -> str0m::RtcConfig {
    Rtc::builder()
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .enable_h264(true)
        .set_stats_interval(Some(STATS_EVERY))
}

fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
}

impl Media {
    pub fn new(config: MediaConfig) -> Self {
        install_crypto();
        Media {
            config,
            peers: BTreeMap::new(),
            next_peer: 1,
            by_addr: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            dirty: Vec::new(),
            stats: MediaStats::default(),
            stat_marks: HashMap::new(),
            ingress_loss: HashMap::new(),
            next_layer_check: None,
        }
    }

    pub fn config(&self) -> &MediaConfig {
        &self.config
    }

    /// An Rtc from `builder` announcing this room's one host candidate.
    fn with_host_candidate(&self, builder: str0m::RtcConfig, now: Instant) -> Result<Rtc> {
        let mut rtc = builder.build(now);
        let candidate = Candidate::host(self.config.advertise, "udp")
            .map_err(|e| Error::Config(format!("advertised address: {e}")))?;
        rtc.add_local_candidate(candidate);
        Ok(rtc)
    }

    /// Adds a new peer (nothing received, no tracks or slots yet) and lets it start.
    fn insert_peer(
        &mut self,
        now: Instant,
        participant: ParticipantId,
        role: PeerRole,
        rtc: Rtc,
        upstream: Option<upstream::Upstream>,
    ) -> PeerId {
        let id = PeerId(self.next_peer);
        self.next_peer += 1;
        self.peers.insert(
            id,
            Peer {
                id,
                participant,
                role,
                rtc,
                timeout: now,
                connected: false,
                remote: None,
                last_rx: now,
                tracks_in: Vec::new(),
                slots: Vec::new(),
                receives: true,
                gcc_estimate_bps: None,
                estimator: (role == PeerRole::View && self.config.bwe == Bwe::Feedback)
                    .then(|| estimate::Estimator::new(self.config.initial_estimate_bps)),
                desired_bps: 0,
                upstream,
            },
        );
        self.drive(now, id);
        self.flush(now);
        id
    }

    /// `publisher`'s track `track` stops feeding its `subscribers`: their slots are freed and
    /// each viewer is told.
    fn end_feeds(&mut self, publisher: PeerId, track: Mid, subscribers: &[(PeerId, usize)]) {
        for &(vid, idx) in subscribers {
            if let Some(viewer) = self.peers.get_mut(&vid)
                && let Some(slot) = viewer.slots.get_mut(idx)
                && slot
                    .feed
                    .as_ref()
                    .is_some_and(|f| f.publisher == publisher && f.track == track)
            {
                slot.feed = None;
                self.events.push_back(MediaEvent::TrackEnded {
                    viewer: viewer.participant,
                    mid: slot.mid,
                });
            }
        }
    }

    pub fn peer(&self, id: PeerId) -> Option<&Peer> {
        self.peers.get(&id)
    }

    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }

    /// Accept an SDP offer from a publisher (WHIP) or viewer (WHEP); returns the answer.
    pub fn add_peer(
        &mut self,
        now: Instant,
        participant: ParticipantId,
        role: PeerRole,
        offer_sdp: &str,
    ) -> Result<(PeerId, String)> {
        let offer = SdpOffer::from_sdp_string(offer_sdp).map_err(|e| Error::Sdp(e.to_string()))?;
        let mut builder = peer_config().set_ice_lite(true);
        if role == PeerRole::View && self.config.bwe == Bwe::Gcc {
            builder = builder.enable_bwe(Some(Bitrate::bps(self.config.initial_estimate_bps)));
        }
        let mut rtc = self.with_host_candidate(builder, now)?;
        let answer = rtc.sdp_api().accept_offer(offer)?;
        let id = self.insert_peer(now, participant, role, rtc, None);
        Ok((id, answer.to_sdp_string()))
    }

    /// A datagram arrived on the room's UDP port.
    pub fn handle_receive(&mut self, now: Instant, source: SocketAddr, datagram: &[u8]) {
        self.stats.packets_in += 1;
        self.stats.bytes_in += datagram.len() as u64;
        let Ok(contents) = datagram.try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.config.advertise,
                contents,
            },
        );
        let cached = self
            .by_addr
            .get(&source)
            .copied()
            .filter(|id| self.peers.get(id).is_some_and(|p| p.rtc.accepts(&input)));
        let id = match cached {
            Some(id) => id,
            None => {
                let Some(peer) = self.peers.values_mut().find(|p| p.rtc.accepts(&input)) else {
                    return;
                };
                peer.remote = Some(source);
                self.by_addr.insert(source, peer.id);
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
        self.flush(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
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
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
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

    /// Stop everything `participant` publishes, for every viewer, now.
    pub fn stop_publishing(&mut self, now: Instant, participant: ParticipantId) {
        self.close_where(now, |p| {
            p.participant == participant && matches!(p.role, PeerRole::Publish(_))
        });
    }

    /// Close every connection of `participant`.
    pub fn close_participant(&mut self, now: Instant, participant: ParticipantId) {
        self.close_where(now, |p| p.participant == participant);
    }

    pub fn close_peer(&mut self, now: Instant, peer: PeerId) {
        self.close_where(now, |p| p.id == peer);
    }

    fn close_where(&mut self, now: Instant, f: impl Fn(&Peer) -> bool) {
        let ids: Vec<PeerId> = self.peers.values().filter(|p| f(p)).map(|p| p.id).collect();
        for id in ids {
            if let Some(p) = self.peers.get_mut(&id) {
                p.rtc.disconnect();
            }
            // Flush the close (DTLS close_notify, RTCP BYE) before forgetting the peer.
            self.drive(now, id);
            self.remove_peer(now, id);
        }
        self.flush(now);
    }

    /// Open or close the media gate for `participant`'s viewing connections.
    pub fn set_receives(&mut self, now: Instant, participant: ParticipantId, on: bool) {
        let ids: Vec<PeerId> = self
            .peers
            .values()
            .filter(|p| p.participant == participant && p.role.receives())
            .map(|p| p.id)
            .collect();
        for id in ids {
            let peer = self.peers.get_mut(&id).expect("listed");
            let opened = on && !peer.receives;
            peer.receives = on;
            if !on {
                // Restart from a keyframe when the gate opens again.
                for slot in &mut peer.slots {
                    if let Some(feed) = &mut slot.feed {
                        feed.current = None;
                    }
                }
            }
            if opened {
                self.request_viewer_keyframes(now, id);
            }
        }
        self.flush(now);
    }

    /// The viewer shows `mid` at this size.
    pub fn set_view(
        &mut self,
        now: Instant,
        participant: ParticipantId,
        mid: &str,
        width: u32,
        height: u32,
    ) {
        let ids: Vec<PeerId> = self
            .peers
            .values()
            .filter(|p| p.participant == participant && p.role == PeerRole::View)
            .map(|p| p.id)
            .collect();
        for id in ids {
            let peer = self.peers.get_mut(&id).expect("listed");
            if let Some(slot) = peer.slots.iter_mut().find(|s| &*s.mid == mid) {
                slot.tile_max = max_layer_for_tile(width, height, 3);
                self.update_layers(now, id);
            }
        }
        self.flush(now);
    }

    pub fn stats(&self) -> MediaStats {
        let mut s = self.stats;
        s.peers = self.peers.len() as u64;
        s.publishers = self
            .peers
            .values()
            .filter(|p| matches!(p.role, PeerRole::Publish(_)))
            .count() as u64;
        s.viewers = self.peers.values().filter(|p| p.role.receives()).count() as u64;
        s.tracks_in = self.peers.values().map(|p| p.tracks_in.len() as u64).sum();
        s.feeds = self
            .peers
            .values()
            .flat_map(|p| p.slots.iter())
            .filter(|s| s.feed.is_some())
            .count() as u64;
        s.ingress_loss = self.ingress_loss.values().copied().fold(0.0, f32::max);
        s
    }

    /// Poll one peer until it wants a timeout, handling what it emits. A timeout already due
    /// (str0m asks for one at once to packetize what was just written) is handled right here.
    /// str0m's pacer asks for one 1 µs after each packet it releases; that one waits for the
    /// room's next wake-up, where one pass serves every peer due. (Handling it here instead
    /// was measured with `bench/sfu 4 100`: more full str0m timeouts per packet, ~2 instead of
    /// ~1.4, and no lower forwarding delay.)
    fn drive(&mut self, now: Instant, id: PeerId) {
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
    fn flush(&mut self, now: Instant) {
        while !self.dirty.is_empty() {
            let mut batch = std::mem::take(&mut self.dirty);
            batch.sort_unstable();
            batch.dedup();
            for id in batch {
                self.drive(now, id);
            }
        }
    }

    fn on_event(&mut self, now: Instant, id: PeerId, event: Event) {
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
            Event::MediaData(data) => self.forward(now, id, data),
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

    fn on_media_added(&mut self, now: Instant, id: PeerId, added: str0m::media::MediaAdded) {
        let peer = self.peers.get_mut(&id).expect("driving");
        let receiving = matches!(added.direction, Direction::RecvOnly | Direction::SendRecv);
        let sending = matches!(added.direction, Direction::SendOnly | Direction::SendRecv);
        match peer.role {
            PeerRole::Publish(source) if receiving => {
                let rids: Vec<Rid> = added
                    .simulcast
                    .map(|s| {
                        let layers = if s.recv.is_empty() { s.send } else { s.recv };
                        layers.into_iter().map(|l| l.rid).collect()
                    })
                    .unwrap_or_default();
                let layers = rank_rids(&rids);
                peer.tracks_in.push(TrackIn {
                    mid: added.mid,
                    participant: peer.participant,
                    source,
                    kind: added.kind,
                    meters: vec![RateMeter::default(); layers.len().max(1)],
                    layers,
                    subscribers: Vec::new(),
                    keyframes: KeyframeThrottle::default(),
                });
            }
            role if role.receives() && sending => peer.slots.push(Slot {
                mid: added.mid,
                kind: added.kind,
                feed: None,
                tile_max: 2,
            }),
            _ => return,
        }
        self.rebalance(now);
    }

    fn forward(&mut self, now: Instant, from: PeerId, mut data: MediaData) {
        let Some(publisher) = self.peers.get_mut(&from) else {
            return;
        };
        if let Some(up) = &publisher.upstream {
            let Some(route) = up.route(data.mid) else {
                return;
            };
            (data.mid, data.rid) = (route.track, route.rid);
        }
        let Some(track) = publisher.tracks_in.iter_mut().find(|t| t.mid == data.mid) else {
            return;
        };
        let Some(layer) = track.layer_index(data.rid) else {
            return;
        };
        track.meters[layer].add(now, data.data.len());
        let kind = track.kind;
        if kind == MediaKind::Video && track.keyframes.take_deferred(now, data.rid) {
            self.send_keyframe_request(from, data.mid, data.rid);
        }
        if kind == MediaKind::Video && !data.contiguous {
            // Loss NACK could not repair: the decoder needs a fresh keyframe.
            let (mid, rid) = (data.mid, data.rid);
            self.request_keyframe(now, from, mid, rid);
        }
        let publisher = self.peers.get_mut(&from).expect("checked");
        let track = publisher
            .tracks_in
            .iter_mut()
            .find(|t| t.mid == data.mid)
            .expect("checked");
        let subscribers = std::mem::take(&mut track.subscribers);
        let is_key = data.is_keyframe();
        let step: i64 = match kind {
            MediaKind::Video => i64::from(data.time.frequency().get()) / 30,
            MediaKind::Audio => i64::from(data.time.frequency().get()) / 50,
        };
        let in_time = data.time.numer() as i64;
        for &(vid, slot) in &subscribers {
            let Some(viewer) = self.peers.get_mut(&vid) else {
                continue;
            };
            if !viewer.receives || !viewer.connected {
                continue;
            }
            let Some(feed) = viewer.slots.get_mut(slot).and_then(|s| s.feed.as_mut()) else {
                continue;
            };
            let switching = feed.current != Some(data.rid);
            if switching {
                let start = match kind {
                    MediaKind::Audio => true,
                    MediaKind::Video => data.rid == feed.target && is_key,
                };
                if !start {
                    continue;
                }
                feed.current = Some(data.rid);
                feed.offset = match feed.last_out {
                    Some(last) => last as i64 + step - in_time,
                    None => 0,
                };
            }
            let out = (in_time + feed.offset).max(0) as u64;
            feed.last_out = Some(out);
            let cached = feed
                .pt
                .as_ref()
                .filter(|(p, _)| *p == data.params)
                .map(|c| c.1);
            let slot_mid = viewer.slots[slot].mid;
            let Some(writer) = viewer.rtc.writer(slot_mid) else {
                continue;
            };
            let Some(pt) = cached.or_else(|| writer.match_params(data.params)) else {
                // The viewer did not offer this codec (e.g. H.264 only on one side).
                continue;
            };
            let time = MediaTime::new(out, data.time.frequency());
            match writer.write(pt, data.network_time, time, data.data.clone()) {
                Ok(()) => self.stats.frames_forwarded += 1,
                Err(e) => tracing::debug!(peer = vid.0, "write failed: {e}"),
            }
            if cached.is_none()
                && let Some(f) = viewer.slots[slot].feed.as_mut()
            {
                f.pt = Some((data.params, pt));
            }
            self.dirty.push(vid);
        }
        if let Some(track) = self
            .peers
            .get_mut(&from)
            .and_then(|p| p.tracks_in.iter_mut().find(|t| t.mid == data.mid))
        {
            // Subscribers added while forwarding are kept.
            let added = std::mem::replace(&mut track.subscribers, subscribers);
            track.subscribers.extend(added);
        }
    }

    fn request_keyframe(&mut self, now: Instant, publisher: PeerId, mid: Mid, rid: Option<Rid>) {
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

    fn send_keyframe_request(&mut self, publisher: PeerId, mid: Mid, rid: Option<Rid>) {
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
        if let Some(mut writer) = peer.rtc.writer(mid)
            && writer
                .request_keyframe(rid, KeyframeRequestKind::Pli)
                .is_ok()
        {
            self.stats.plis_sent += 1;
            self.dirty.push(publisher);
        }
    }

    fn request_viewer_keyframes(&mut self, now: Instant, viewer: PeerId) {
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

    /// Re-choose the simulcast layer of each video `viewer` receives, and tell its BWE what
    /// rate would carry everything it wants.
    fn update_layers(&mut self, now: Instant, viewer: PeerId) {
        let Some(peer) = self.peers.get(&viewer) else {
            return;
        };
        let videos = peer.video_feeds();
        let mut audio_bps = 0;
        let mut wanted = Vec::new();
        let mut layers = Vec::new();
        for (idx, slot) in peer.slots.iter().enumerate() {
            let Some(feed) = &slot.feed else { continue };
            let Some(track) = self
                .peers
                .get(&feed.publisher)
                .and_then(|p| p.tracks_in.iter().find(|t| t.mid == feed.track))
            else {
                continue;
            };
            let rates: Vec<Option<u64>> = track.meters.iter().map(RateMeter::bps).collect();
            if track.kind == MediaKind::Audio {
                audio_bps += rates[0].unwrap_or(40_000);
                continue;
            }
            let top = slot.tile_max.min(rates.len() - 1);
            wanted.push(
                rates[..=top]
                    .iter()
                    .rev()
                    .find_map(|r| *r)
                    .unwrap_or(500_000),
            );
            // A feed that has not shown its first frame keeps its (lowest) start layer, so
            // the keyframe already requested for it is the one that starts the video.
            if !track.layers.is_empty() && feed.current.is_some() {
                layers.push((
                    idx,
                    rates,
                    slot.tile_max,
                    feed.target,
                    feed.publisher,
                    feed.track,
                ));
            }
        }
        let share = peer
            .estimate_bps()
            .map(|e| video_share(e, videos, audio_bps));
        let mut changes = Vec::new();
        for (idx, rates, tile_max, target, publisher, track_mid) in layers {
            let want = choose_layer(share, tile_max, &rates);
            let Some(track) = self
                .peers
                .get(&publisher)
                .and_then(|p| p.tracks_in.iter().find(|t| t.mid == track_mid))
            else {
                continue;
            };
            let rid = track.layer_rid(want);
            if rid != target {
                changes.push((idx, rid, publisher, track_mid));
            }
        }
        // Never below the starting estimate: a low desired rate drags the estimate down.
        let desired =
            desired_bps(wanted.into_iter(), audio_bps).max(self.config.initial_estimate_bps);
        if let Some(peer) = self.peers.get_mut(&viewer) {
            peer.desired_bps = desired;
            if self.config.bwe == Bwe::Gcc {
                peer.rtc
                    .bwe()
                    .set_bitrate(Bitrate::kbps(150), Bitrate::bps(desired));
                self.dirty.push(viewer);
            }
        }
        for (idx, rid, publisher, track) in changes {
            if let Some(feed) = self
                .peers
                .get_mut(&viewer)
                .and_then(|p| p.slots[idx].feed.as_mut())
            {
                feed.target = rid;
            }
            self.request_keyframe(now, publisher, track, rid);
        }
    }

    /// Place the room's tracks into free slots of the same kind: a viewer gets each track
    /// once, a relay each layer of each track (see [`feeds_wanted`]).
    fn rebalance(&mut self, now: Instant) {
        type TrackKey = (PeerId, ParticipantId, Mid, MediaKind, Source, Vec<Rid>);
        let tracks: Vec<TrackKey> = self
            .peers
            .values()
            .filter(|p| p.role.sends())
            .flat_map(|p| {
                p.tracks_in.iter().map(move |t| {
                    (
                        p.id,
                        t.participant,
                        t.mid,
                        t.kind,
                        t.source,
                        t.layers.clone(),
                    )
                })
            })
            .collect();
        let viewers: Vec<(PeerId, PeerRole)> = self
            .peers
            .values()
            .filter(|p| p.role.receives())
            .map(|p| (p.id, p.role))
            .collect();
        for (vid, role) in viewers {
            let pinned = role == PeerRole::Relay;
            for (pid, participant, mid, kind, source, layers) in &tracks {
                for rid in feeds_wanted(role, layers) {
                    let viewer = self.peers.get_mut(&vid).expect("listed");
                    if viewer.participant == *participant
                        || viewer.slots.iter().any(|s| {
                            s.feed.as_ref().is_some_and(|f| {
                                f.publisher == *pid
                                    && f.track == *mid
                                    && (!pinned || f.target == rid)
                            })
                        })
                    {
                        continue;
                    }
                    let Some(idx) = viewer
                        .slots
                        .iter()
                        .position(|s| s.kind == *kind && s.feed.is_none())
                    else {
                        continue;
                    };
                    viewer.slots[idx].feed = Some(Feed {
                        publisher: *pid,
                        participant: *participant,
                        track: *mid,
                        current: None,
                        target: rid,
                        offset: 0,
                        last_out: None,
                        pt: None,
                    });
                    let slot_mid = viewer.slots[idx].mid;
                    let (viewer_participant, connected) = (viewer.participant, viewer.connected);
                    self.events.push_back(MediaEvent::Track {
                        viewer: viewer_participant,
                        mid: slot_mid,
                        publisher: *participant,
                        kind: *kind,
                        source: *source,
                        rid: pinned.then_some(rid),
                    });
                    if let Some(track) = self
                        .peers
                        .get_mut(pid)
                        .and_then(|p| p.tracks_in.iter_mut().find(|t| t.mid == *mid))
                    {
                        track.subscribers.push((vid, idx));
                    }
                    if connected {
                        self.request_keyframe(now, *pid, *mid, rid);
                    }
                }
            }
        }
    }

    fn remove_peer(&mut self, now: Instant, id: PeerId) {
        let Some(peer) = self.peers.remove(&id) else {
            return;
        };
        self.by_addr.retain(|_, v| *v != id);
        self.ingress_loss.remove(&id);
        self.stat_marks.retain(|k, _| k.0 != id);
        for track in &peer.tracks_in {
            self.end_feeds(id, track.mid, &track.subscribers);
        }
        for slot in &peer.slots {
            if let Some(feed) = &slot.feed
                && let Some(track) = self
                    .peers
                    .get_mut(&feed.publisher)
                    .and_then(|p| p.tracks_in.iter_mut().find(|t| t.mid == feed.track))
            {
                track.subscribers.retain(|s| s.0 != id);
            }
        }
        self.events.push_back(MediaEvent::Closed {
            peer: id,
            participant: peer.participant,
            role: peer.role,
        });
        if !peer.tracks_in.is_empty() {
            self.rebalance(now);
        }
    }
}

/// The layers of a track (`layers` lowest first, empty without simulcast) one receiving peer
/// is fed, each into a slot of its own. A viewer gets one slot, starting on the lowest layer
/// (its keyframe is small and arrives fast; layer checks move up once bitrates are measured).
/// A relay gets every layer, each slot pinned to its layer, so its own viewers can switch.
pub fn feeds_wanted(role: PeerRole, layers: &[Rid]) -> Vec<Option<Rid>> {
    match role {
        PeerRole::Relay if !layers.is_empty() => layers.iter().copied().map(Some).collect(),
        _ => vec![layers.first().copied()],
    }
}
