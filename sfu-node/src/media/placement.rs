//! Which track feeds which viewer slot: publishers' m-lines become [`TrackIn`]s, viewers'
//! m-lines become [`Slot`]s, and every track is placed into a free slot of its kind of each
//! viewer (every layer of it, each into its own slot, for a relay).

use std::time::Instant;

use str0m::media::{Direction, MediaKind, Mid, Rid};

use super::loss::Gaps;
use super::{
    Feed, KeyframeThrottle, Media, MediaEvent, PeerId, PeerRole, RateMeter, Slot, Source, TrackIn,
    rank_rids,
};
use crate::vocab::ParticipantId;

impl Media {
    pub(super) fn on_media_added(
        &mut self,
        now: Instant,
        id: PeerId,
        added: str0m::media::MediaAdded,
    ) {
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
                    gaps: vec![Gaps::default(); layers.len().max(1)],
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

    /// Place the room's tracks into free slots of the same kind: a viewer gets each track
    /// once, a relay each layer of each track (see [`feeds_wanted`]).
    pub(super) fn rebalance(&mut self, now: Instant) {
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
                    let viewer = self.peers.get(&vid).expect("listed");
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
                    let rid = match role {
                        PeerRole::View if *kind == MediaKind::Video && !layers.is_empty() => {
                            self.start_layer(vid, idx, *pid, *mid).or(rid)
                        }
                        _ => rid,
                    };
                    let viewer = self.peers.get_mut(&vid).expect("listed");
                    viewer.slots[idx].feed = Some(Feed {
                        publisher: *pid,
                        participant: *participant,
                        track: *mid,
                        current: None,
                        target: rid,
                        rewrite: Default::default(),
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

    /// `publisher`'s track `track` stops feeding its `subscribers`: their slots are freed and
    /// each viewer is told.
    pub(super) fn end_feeds(
        &mut self,
        publisher: PeerId,
        track: Mid,
        subscribers: &[(PeerId, usize)],
    ) {
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
}

/// The layers of a track (`layers` lowest first, empty without simulcast) one receiving peer
/// is fed, each into a slot of its own. A viewer gets one slot, here the lowest layer, which
/// `Media::start_layer` raises to what its tile and estimate allow. A relay gets every
/// layer, each slot pinned to its layer, so its own viewers can switch.
pub fn feeds_wanted(role: PeerRole, layers: &[Rid]) -> Vec<Option<Rid>> {
    match role {
        PeerRole::Relay if !layers.is_empty() => layers.iter().copied().map(Some).collect(),
        _ => vec![layers.first().copied()],
    }
}
