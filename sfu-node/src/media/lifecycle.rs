//! Peers coming and going: accepting an SDP offer, closing a participant's connections,
//! and forgetting a peer (its tracks stop feeding their viewers, its slots leave their
//! tracks' subscribers).

use std::time::Instant;

use str0m::bwe::Bitrate;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::net::TcpType;
use str0m::{Candidate, Rtc};

use super::{
    Bwe, Media, MediaEvent, Peer, PeerId, PeerRole, estimate, offer, peer_config, upstream,
};
use crate::vocab::ParticipantId;
use crate::{Error, Result};

impl Media {
    /// An Rtc from `builder` announcing this room's UDP host candidate, and with `tcp` (and
    /// [`super::MediaConfig::tcp`]) its passive ICE-TCP candidate at the same address, which
    /// str0m ranks below UDP (RFC 6544's type preference for TCP host candidates).
    pub(super) fn with_host_candidate(
        &self,
        builder: str0m::RtcConfig,
        now: Instant,
        tcp: bool,
    ) -> Result<Rtc> {
        let mut rtc = builder.build(now);
        fn bad(e: impl std::fmt::Display) -> Error {
            Error::Config(format!("advertised address: {e}"))
        }
        let candidate = Candidate::host(self.config.advertise, "udp").map_err(bad)?;
        rtc.add_local_candidate(candidate);
        if tcp && self.config.tcp {
            let candidate = Candidate::builder()
                .tcp()
                .host(self.config.advertise)
                .tcptype(TcpType::Passive)
                .build()
                .map_err(bad)?;
            rtc.add_local_candidate(candidate);
        }
        Ok(rtc)
    }

    /// Adds a new peer (nothing received, no tracks or slots yet) and lets it start.
    pub(super) fn insert_peer(
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
                heard_from: None,
                last_rx: now,
                tracks_in: Vec::new(),
                slots: Vec::new(),
                receives: true,
                gcc_estimate_bps: None,
                estimator: (role == PeerRole::View && self.config.bwe == Bwe::Feedback)
                    .then(|| estimate::Estimator::new(self.config.initial_estimate_bps)),
                desired_bps: 0,
                upstream,
                writes: Vec::new(),
                outbox: Vec::new(),
                inbox: Vec::new(),
                timeouts_handled: 0,
                writes_done: 0,
                written: false,
            },
        );
        self.drive(now, id);
        self.flush(now);
        id
    }

    /// Accept an SDP offer from a publisher (WHIP) or viewer (WHEP); returns the answer.
    pub fn add_peer(
        &mut self,
        now: Instant,
        participant: ParticipantId,
        role: PeerRole,
        offer_sdp: &str,
    ) -> Result<(PeerId, String)> {
        let offer = SdpOffer::from_sdp_string(offer_sdp).map_err(|e| {
            // The parser's own words name its internals; the client gets a sentence.
            tracing::info!(error = %e, "an offer that is not SDP");
            Error::Sdp("the body is not an SDP offer".into())
        })?;
        offer::check(offer_sdp)
            .map_err(|why| Error::Sdp(format!("the SDP offer is refused: {why}")))?;
        let mut builder = peer_config().set_ice_lite(true);
        if role == PeerRole::View && self.config.bwe == Bwe::Gcc {
            builder = builder.enable_bwe(Some(Bitrate::bps(self.config.initial_estimate_bps)));
        }
        let mut rtc = self.with_host_candidate(builder, now, true)?;
        let answer = accept_offer(&mut rtc, offer)?;
        let id = self.insert_peer(now, participant, role, rtc, None);
        Ok((id, answer.to_sdp_string()))
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

    pub(super) fn close_where(&mut self, now: Instant, f: impl Fn(&Peer) -> bool) {
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

    pub(super) fn remove_peer(&mut self, now: Instant, id: PeerId) {
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

/// str0m's `accept_offer`, with its panics turned into a refusal. str0m 0.25 asserts on some
/// offers it has parsed (a payload type given two different formats in two m-lines panics in
/// `update_params`; found by `bench/fuzz sdp_offer`). The `Rtc` is new and only this call holds
/// it, so a panic leaves nothing half-changed in the room: it is dropped and the offer refused.
pub(super) fn accept_offer(rtc: &mut Rtc, offer: SdpOffer) -> Result<SdpAnswer> {
    let accepted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rtc.sdp_api().accept_offer(offer)
    }));
    match accepted {
        Ok(answer) => Ok(answer?),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            tracing::info!(why, "str0m panicked on an offer; refused");
            Err(Error::Sdp("the SDP offer could not be negotiated".into()))
        }
    }
}
