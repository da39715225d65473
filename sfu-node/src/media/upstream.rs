//! A relay's peer to its origin: the relay's side of one relay hop.
//!
//! The relay offers (full ICE; the origin is ICE-lite) many receive-only slots. The origin
//! fills them with every layer of every track, one layer per slot, and says in `track`
//! events which origin track and which layer each slot carries. The slots of one origin track
//! make one "virtual" simulcast [`TrackIn`] on the upstream peer, so local viewers are fed,
//! switched between layers and get keyframes exactly as from a publisher; a keyframe
//! request for a layer goes to the origin as a PLI on that layer's slot.

use std::collections::BTreeMap;
use std::time::Instant;

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid, Rid};

use super::loss::Gaps;
use super::{KeyframeThrottle, Media, PeerId, PeerRole, RateMeter, Source, TrackIn, rank_rids};
use crate::vocab::ParticipantId;
use crate::{Error, Result};

/// What one upstream slot carries: a layer of a virtual track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The virtual track's mid on the upstream peer.
    pub track: Mid,
    pub rid: Option<Rid>,
}

/// What the origin's `track` event to the relay says: layer `rid` of `publisher`'s `source`
/// `kind` track now arrives in upstream `slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginTrack {
    pub slot: Mid,
    pub publisher: ParticipantId,
    pub source: Source,
    pub kind: MediaKind,
    pub rid: Option<Rid>,
}

/// The upstream peer's negotiation state and slot routes.
#[derive(Debug, Default)]
pub struct Upstream {
    pending: Option<SdpPendingOffer>,
    routes: BTreeMap<Mid, Route>,
}

impl Upstream {
    pub fn route(&self, slot: Mid) -> Option<Route> {
        self.routes.get(&slot).copied()
    }

    /// The upstream slot carrying layer `rid` of virtual track `track`.
    pub fn slot_of(&self, track: Mid, rid: Option<Rid>) -> Option<Mid> {
        self.routes
            .iter()
            .find(|(_, r)| r.track == track && r.rid == rid)
            .map(|(slot, _)| *slot)
    }
}

/// One virtual track per origin participant, source and kind.
fn virtual_mid(publisher: ParticipantId, source: Source, kind: MediaKind) -> Mid {
    let s = match source {
        Source::Camera => 'c',
        Source::Screen => 's',
    };
    let k = match kind {
        MediaKind::Audio => 'a',
        MediaKind::Video => 'v',
    };
    Mid::from(format!("o{}{s}{k}", publisher.0).as_str())
}

impl Media {
    /// Start the relay's peer to its origin: an offer with `audio` and `video` receive-only
    /// slots, to POST to the origin's WHEP endpoint.
    pub fn add_upstream(
        &mut self,
        now: Instant,
        participant: ParticipantId,
        audio: usize,
        video: usize,
    ) -> Result<(PeerId, String)> {
        // Full ICE: the origin is ICE-lite.
        // The link to the origin stays on UDP.
        let mut rtc = self.with_host_candidate(super::peer_config(), now, false)?;
        let mut api = rtc.sdp_api();
        for (kind, n) in [(MediaKind::Audio, audio), (MediaKind::Video, video)] {
            for _ in 0..n {
                api.add_media(kind, Direction::RecvOnly, None, None, None);
            }
        }
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| Error::Sdp("an upstream needs at least one slot".into()))?;
        let upstream = Upstream {
            pending: Some(pending),
            routes: BTreeMap::new(),
        };
        let id = self.insert_peer(now, participant, PeerRole::Upstream, rtc, Some(upstream));
        Ok((id, offer.to_sdp_string()))
    }

    /// The origin's answer to [`Media::add_upstream`]'s offer.
    pub fn accept_upstream_answer(
        &mut self,
        now: Instant,
        peer: PeerId,
        answer: &str,
    ) -> Result<()> {
        let answer = SdpAnswer::from_sdp_string(answer).map_err(|e| Error::Sdp(e.to_string()))?;
        let p = self.peers.get_mut(&peer).ok_or(Error::UnknownPeer)?;
        let pending = p
            .upstream
            .as_mut()
            .and_then(|u| u.pending.take())
            .ok_or(Error::UnknownPeer)?;
        p.rtc.sdp_api().accept_answer(pending, answer)?;
        self.drive(now, peer);
        self.flush(now);
        Ok(())
    }

    /// The origin put a layer of one of its tracks into an upstream slot.
    pub fn upstream_track(&mut self, now: Instant, peer: PeerId, placed: OriginTrack) {
        let OriginTrack {
            slot,
            publisher,
            source,
            kind,
            rid,
        } = placed;
        let track = virtual_mid(publisher, source, kind);
        let Some(up) = self.peers.get(&peer).and_then(|p| p.upstream.as_ref()) else {
            return;
        };
        if up.route(slot).is_some_and(|r| r.track != track) {
            self.upstream_track_ended(now, peer, slot);
        }
        let p = self.peers.get_mut(&peer).expect("checked");
        p.upstream
            .as_mut()
            .expect("checked")
            .routes
            .insert(slot, Route { track, rid });
        match p.tracks_in.iter_mut().find(|t| t.mid == track) {
            Some(t) => {
                if let Some(rid) = rid.filter(|r| !t.layers.contains(r)) {
                    t.layers.push(rid);
                    t.layers = rank_rids(&t.layers);
                    t.meters = vec![RateMeter::default(); t.layers.len()];
                    t.gaps = vec![Gaps::default(); t.layers.len()];
                }
            }
            None => p.tracks_in.push(TrackIn {
                mid: track,
                participant: publisher,
                source,
                kind,
                layers: rid.into_iter().collect(),
                meters: vec![RateMeter::default()],
                gaps: vec![Gaps::default()],
                subscribers: Vec::new(),
                keyframes: KeyframeThrottle::default(),
            }),
        }
        self.rebalance(now);
        self.flush(now);
    }

    /// Upstream `slot` carries nothing any more; a virtual track without layers ends.
    pub fn upstream_track_ended(&mut self, now: Instant, peer: PeerId, slot: Mid) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(up) = p.upstream.as_mut() else {
            return;
        };
        let Some(route) = up.routes.remove(&slot) else {
            return;
        };
        if up.routes.values().any(|r| r.track == route.track) {
            if let Some(t) = p.tracks_in.iter_mut().find(|t| t.mid == route.track) {
                t.layers.retain(|l| Some(*l) != route.rid);
                t.meters = vec![RateMeter::default(); t.layers.len().max(1)];
                t.gaps = vec![Gaps::default(); t.layers.len().max(1)];
            }
            return;
        }
        let Some(pos) = p.tracks_in.iter().position(|t| t.mid == route.track) else {
            return;
        };
        let ended = p.tracks_in.remove(pos);
        self.end_feeds(peer, ended.mid, &ended.subscribers);
        self.rebalance(now);
        self.flush(now);
    }
}
