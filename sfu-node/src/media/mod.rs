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
//!
//! Where things are: [`Media`] itself is here; `drive` is the state machine's inputs and outputs
//! and the dispatch of what str0m emits; `lifecycle` peers arriving and leaving (`offer` what an
//! offer must satisfy first); `placement` which track feeds which slot; `forward` the media itself
//! (RTP packets, each looked at once and written to every viewer with `rewrite`'s header fields)
//! and the viewer's gate; `layer` simulcast layer choice; `keyframe` throttled keyframe requests;
//! `loss` holes in a publisher's layer that NACK did not fill; `upstream` a relay's peer to its
//! origin; `workers` the threads that drive peers when a room has more than one; [`estimate`] a
//! viewer's bandwidth from TWCC feedback; `peer` the per-connection state; `event`, `config` and
//! `stats` what goes in and out.

mod config;
mod drive;
pub mod estimate;
mod event;
mod forward;
mod keyframe;
mod layer;
mod lifecycle;
mod loss;
mod offer;
mod peer;
mod placement;
mod rewrite;
mod stats;
#[cfg(test)]
mod tests;
mod upstream;
mod workers;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use str0m::media::{Mid, Rid};
use str0m::net::{Protocol, Transmit};

pub use config::{Bwe, MediaConfig};
pub use event::MediaEvent;
pub use keyframe::{KEYFRAME_REQUEST_INTERVAL, KeyframeThrottle};
pub use layer::{RateMeter, choose_layer, desired_bps, max_layer_for_tile, rank_rids, video_share};
pub use peer::{Feed, Peer, PeerId, PeerRole, Slot, TrackIn};
pub use placement::feeds_wanted;
pub use stats::MediaStats;
pub use upstream::{OriginTrack, Route, Upstream};

pub use crate::vocab::Source;

use config::{install_crypto, peer_config};

/// Sends UDP datagrams at once, from whichever thread drives a peer: a room driven on several
/// threads sends each thread's datagrams from that thread (see `workers`), not all from its own.
pub trait DirectSend: Send + Sync + std::fmt::Debug {
    /// Send what can go now of `datagrams`, without waiting; returns how many of the first
    /// ones were dealt with (sent, or refused and dropped). The rest stay queued for
    /// [`Media::poll_transmit`].
    fn send_now(&self, datagrams: &[Transmit]) -> usize;
}

#[derive(Debug)]
pub struct Media {
    config: MediaConfig,
    peers: BTreeMap<PeerId, Peer>,
    next_peer: u64,
    /// The peer that took the last packet from an address, by transport (a UDP and a TCP
    /// source may share an address).
    by_addr: HashMap<(Protocol, SocketAddr), PeerId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<MediaEvent>,
    dirty: Vec<PeerId>,
    stats: MediaStats,
    stat_marks: HashMap<(PeerId, Mid, Option<Rid>, bool), u64>,
    ingress_loss: HashMap<PeerId, f32>,
    next_layer_check: Option<Instant>,
    /// Viewers were written to at this time and wait to be driven (see `drive`).
    pending_at: Option<Instant>,
    /// Events appeared while driving them, for the room to take on its next wake-up.
    events_at: Option<Instant>,
    workers: workers::Workers,
    direct: Option<std::sync::Arc<dyn DirectSend>>,
}

impl Media {
    pub fn new(config: MediaConfig) -> Self {
        install_crypto();
        Media {
            workers: workers::Workers::new(config.threads),
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
            pending_at: None,
            events_at: None,
            direct: None,
        }
    }

    /// Where worker threads send their peers' UDP datagrams (without it, everything goes
    /// through [`Media::poll_transmit`]).
    pub fn set_direct_send(&mut self, sink: std::sync::Arc<dyn DirectSend>) {
        self.direct = Some(sink);
    }

    pub fn config(&self) -> &MediaConfig {
        &self.config
    }

    pub fn peer(&self, id: PeerId) -> Option<&Peer> {
        self.peers.get(&id)
    }

    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }
}
