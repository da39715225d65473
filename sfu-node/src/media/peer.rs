//! One WebRTC peer connection of the room and its explicit track state.

use std::net::SocketAddr;
use std::time::Instant;

use serde::Serialize;
use str0m::format::PayloadParams;
use str0m::media::{MediaKind, Mid, Pt, Rid};
use str0m::net::{Protocol, Transmit};
use str0m::{Event, Rtc};

use super::keyframe::KeyframeThrottle;
use super::layer::RateMeter;
use super::loss::Gaps;
use super::upstream::Upstream;
use crate::vocab::{ParticipantId, Source};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PeerId(pub u64);

/// A peer publishes (WHIP), views (WHEP), or links an origin and a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "role", content = "source")]
pub enum PeerRole {
    Publish(Source),
    View,
    /// At an origin: a relay's WHEP peer, fed every layer of every track, each slot pinned
    /// to one layer.
    Relay,
    /// At a relay: its own peer to the origin, whose slots feed virtual tracks.
    Upstream,
}

impl PeerRole {
    /// Whether this peer's slots are fed from the room's tracks.
    pub fn receives(&self) -> bool {
        matches!(self, PeerRole::View | PeerRole::Relay)
    }

    /// Whether this peer brings tracks into the room.
    pub fn sends(&self) -> bool {
        matches!(self, PeerRole::Publish(_) | PeerRole::Upstream)
    }
}

/// A track a publisher sends into the room (at a relay: one origin track, each layer arriving
/// in its own upstream slot).
#[derive(Debug)]
pub struct TrackIn {
    pub mid: Mid,
    /// Whose track it is (at a relay, the origin's participant id).
    pub participant: ParticipantId,
    pub source: Source,
    pub kind: MediaKind,
    /// Simulcast layers, lowest first; empty without simulcast.
    pub layers: Vec<Rid>,
    pub meters: Vec<RateMeter>,
    /// Per layer: holes in what arrived, for asking a keyframe when NACK cannot fill them.
    pub gaps: Vec<Gaps>,
    /// Viewers fed by this track: (viewer peer, slot index).
    pub subscribers: Vec<(PeerId, usize)>,
    pub keyframes: KeyframeThrottle,
}

impl TrackIn {
    pub fn layer_index(&self, rid: Option<Rid>) -> Option<usize> {
        match rid {
            None => self.layers.is_empty().then_some(0),
            Some(r) => self.layers.iter().position(|l| *l == r),
        }
    }

    pub fn layer_rid(&self, index: usize) -> Option<Rid> {
        self.layers.get(index).copied()
    }
}

/// What a viewer's slot carries.
#[derive(Debug, Clone)]
pub struct Feed {
    pub publisher: PeerId,
    pub participant: ParticipantId,
    pub track: Mid,
    /// The layer being forwarded; `None` until the first keyframe arrived.
    pub current: Option<Option<Rid>>,
    /// The layer wanted; a switch happens on its next keyframe.
    pub target: Option<Rid>,
    /// Header rewriting (sequence number, RTP time, picture id) so a layer switch keeps the
    /// viewer's stream running on.
    pub rewrite: super::rewrite::Rewrite,
    /// Payload params of the last forwarded data, and the viewer's matching payload type.
    pub pt: Option<(PayloadParams, Pt)>,
}

/// A receiving m-line in a viewer's session.
#[derive(Debug, Clone)]
pub struct Slot {
    pub mid: Mid,
    pub kind: MediaKind,
    pub feed: Option<Feed>,
    /// Highest layer index the tile showing this slot needs.
    pub tile_max: usize,
}

#[derive(Debug)]
pub struct Peer {
    pub id: PeerId,
    pub participant: ParticipantId,
    pub role: PeerRole,
    pub rtc: Rtc,
    pub timeout: Instant,
    pub connected: bool,
    /// The path of the last datagram from this peer (see [`super::Media::path_closed`]).
    pub heard_from: Option<(Protocol, SocketAddr)>,
    /// When the last datagram arrived (or the peer was created).
    pub last_rx: Instant,
    pub tracks_in: Vec<TrackIn>,
    pub slots: Vec<Slot>,
    /// Whether media is sent to this viewer (the stage's broadcast gate).
    pub receives: bool,
    /// str0m's latest GCC estimate towards this viewer (`--bwe gcc`).
    pub gcc_estimate_bps: Option<u64>,
    /// A viewer's bandwidth estimator fed by its TWCC feedback (`--bwe feedback`, see
    /// [`super::estimate`]).
    pub estimator: Option<super::estimate::Estimator>,
    /// What the viewer would use with nothing limiting it (every video at its tile's layer).
    pub desired_bps: u64,
    /// A relay's peer to its origin: the pending offer and what each slot carries.
    pub upstream: Option<Upstream>,
    /// RTP writes queued for this viewer, done when it is next driven (on whichever thread
    /// drives it, see `drive`).
    pub(super) writes: Vec<(Mid, str0m::rtp::RtpWrite)>,
    /// What driving this peer produced and the room has not yet taken (see `drive`): the
    /// buffers are kept between wake-ups.
    pub(super) outbox: Vec<Transmit>,
    pub(super) inbox: Vec<Event>,
    /// str0m timeouts handled while driving, for the room's counters.
    pub(super) timeouts_handled: u64,
    /// RTP writes done while driving (those whose stream still existed).
    pub(super) writes_done: u64,
    /// RTP written to str0m since the peer was last driven, not yet made ready to send
    /// (see `drive::step`).
    pub(super) written: bool,
}

impl Peer {
    /// The bandwidth estimate towards this viewer, whichever estimator makes it.
    pub fn estimate_bps(&self) -> Option<u64> {
        self.estimator
            .as_ref()
            .map(super::estimate::Estimator::estimate_bps)
            .or(self.gcc_estimate_bps)
    }

    /// Write one RTP packet to the stream of slot `mid` (packetized, encrypted and sent when
    /// the peer is next polled). A stream gone since (renegotiated away) takes nothing.
    pub(super) fn write_rtp(&mut self, mid: Mid, write: str0m::rtp::RtpWrite) {
        if let Some(stream) = self.rtc.direct_api().stream_tx_by_mid(mid, None) {
            stream.write_rtp(write);
            self.writes_done += 1;
            self.written = true;
        }
    }

    pub fn video_feeds(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.kind == MediaKind::Video && s.feed.is_some())
            .count()
    }
}
