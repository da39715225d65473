//! The room: rules and media glued into the one sans-IO state machine the shell drives.
//!
//! Every input takes `now`; outputs are datagrams ([`Room::poll_transmit`]), messages for
//! participants' event channels ([`Room::poll_output`]) and the next timeout. A participant
//! exists while they have an events channel or a peer connection; publishing or viewing
//! without an events channel (plain WHIP/WHEP clients) joins implicitly.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use str0m::net::{Protocol, Transmit};

use crate::config::{Limits, RoomConfig, RoomKind};
use crate::ice_tcp::TcpStats;
use crate::media::{Media, MediaConfig, MediaEvent, MediaStats, PeerId, PeerRole, Source};
use crate::rules::{
    Attendance, ClientCommand, Counts, Identity, ParticipantId, ParticipantState, Refusal, Rules,
    RulesOutput, ServerEvent,
};
use crate::{Error, Result};

/// How long people asked to re-join elsewhere (the room moves) keep their sockets before
/// the room closes them; the same notice a leaving relay gives.
pub const LEAVE_NOTICE: Duration = crate::relay::core::LEAVE_NOTICE;

#[derive(Debug, Clone, PartialEq)]
pub enum RoomOutput {
    Send(ParticipantId, ServerEvent),
    /// Close this participant's events channel.
    Close(ParticipantId),
}

#[derive(Debug, Default)]
struct Presence {
    events: bool,
    peers: Vec<PeerId>,
}

/// What the operator and `/stats` see.
#[derive(Debug, Clone, Serialize)]
pub struct RoomStatus {
    pub room: String,
    pub kind: RoomKind,
    pub limits: Limits,
    pub counts: Counts,
    /// Peak watching, peak on camera and unique joiners since the room started.
    #[serde(flatten)]
    pub attendance: Attendance,
    pub participants: u32,
    pub broadcasting: bool,
    pub draining: bool,
    pub media: MediaStats,
    /// At an origin: relays connected (hidden participants, not in `counts`).
    pub relays_connected: u32,
    /// Whether this process is a relay; then `counts.watching` is its own watchers.
    pub relay: bool,
    /// A relay's link to its origin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamState>,
    /// ICE-TCP connections and traffic on the media port (kept by the shell, which owns the
    /// connections; zero from the core itself).
    pub tcp: TcpStats,
}

/// Whether a relay's events socket and media peer to its origin are both up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamState {
    Connecting,
    Connected,
}

#[derive(Debug)]
pub struct Room {
    rules: Rules,
    media: Media,
    presence: HashMap<ParticipantId, Presence>,
    out: VecDeque<RoomOutput>,
}

impl Room {
    pub fn new(config: RoomConfig, media: MediaConfig) -> Self {
        Room {
            rules: Rules::new(config),
            media: Media::new(media),
            presence: HashMap::new(),
            out: VecDeque::new(),
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Where the media core's worker threads send (see [`Media::set_direct_send`]).
    pub fn set_direct_send(&mut self, sink: std::sync::Arc<dyn crate::media::DirectSend>) {
        self.media.set_direct_send(sink);
    }

    pub fn media(&self) -> &Media {
        &self.media
    }

    /// A participant opened their room-events channel.
    pub fn connect(&mut self, identity: Identity) -> Result<ParticipantId, Refusal> {
        let id = self.rules.join(identity)?;
        self.presence.entry(id).or_default().events = true;
        self.pump(None);
        Ok(id)
    }

    /// A new events channel for a participant whose old one dropped while their media peers
    /// stayed up (see [`Rules::resume`]): the page carries on without re-negotiating media.
    pub fn resume(
        &mut self,
        identity: &Identity,
        id: ParticipantId,
        instance: u64,
    ) -> Result<(), Refusal> {
        self.rules.resume(id, &identity.user, instance)?;
        self.presence.entry(id).or_default().events = true;
        self.pump(None);
        Ok(())
    }

    /// Their events channel closed. A relay's media is no use without its events socket
    /// (which says what each slot carries): its peers close with it.
    pub fn disconnect(&mut self, now: Instant, id: ParticipantId) {
        let relay = self
            .rules
            .participant(id)
            .is_some_and(|p| p.identity.grants.relay);
        if let Some(p) = self.presence.get_mut(&id) {
            p.events = false;
            if relay {
                p.peers.clear();
                self.media.close_participant(now, id);
            }
        }
        self.leave_if_gone(now, id);
        self.pump(Some(now));
    }

    /// Handle a command from an events channel.
    pub fn command(&mut self, now: Instant, at_ms: u64, id: ParticipantId, cmd: ClientCommand) {
        if let ClientCommand::View { mid, width, height } = &cmd {
            self.media.set_view(now, id, mid, *width, *height);
        } else {
            let _ = self.rules.command(id, cmd, at_ms);
        }
        self.pump(Some(now));
    }

    /// A WHIP offer: go on camera (or share the screen) and publish.
    pub fn publish(
        &mut self,
        now: Instant,
        identity: Identity,
        participant: Option<ParticipantId>,
        source: Source,
        offer: &str,
    ) -> Result<(ParticipantId, PeerId, String)> {
        let (id, implicit) = self.resolve(identity, participant)?;
        let step = match source {
            Source::Camera => self.rules.go_on_camera(id),
            Source::Screen => self.rules.start_screen_share(id),
        };
        if let Err(refusal) = step {
            self.abandon(now, id, implicit);
            return Err(refusal.into());
        }
        match self
            .media
            .add_peer(now, id, PeerRole::Publish(source), offer)
        {
            Ok((peer, answer)) => {
                self.presence.entry(id).or_default().peers.push(peer);
                self.pump(Some(now));
                Ok((id, peer, answer))
            }
            Err(e) => {
                match source {
                    Source::Camera => self.rules.stop_camera(id),
                    Source::Screen => self.rules.stop_screen_share(id),
                }
                self.abandon(now, id, implicit);
                Err(e)
            }
        }
    }

    /// A WHEP offer: watch.
    pub fn view(
        &mut self,
        now: Instant,
        identity: Identity,
        participant: Option<ParticipantId>,
        offer: &str,
    ) -> Result<(ParticipantId, PeerId, String)> {
        let role = if identity.grants.relay {
            PeerRole::Relay
        } else {
            PeerRole::View
        };
        if role == PeerRole::View && !identity.grants.hidden() {
            self.check_pod_watchers()?;
        }
        let (id, implicit) = self.resolve(identity, participant)?;
        match self.media.add_peer(now, id, role, offer) {
            Ok((peer, answer)) => {
                self.presence.entry(id).or_default().peers.push(peer);
                let receives = self.rules.receives_media(id);
                self.media.set_receives(now, id, receives);
                self.pump(Some(now));
                Ok((id, peer, answer))
            }
            Err(e) => {
                self.abandon(now, id, implicit);
                Err(e)
            }
        }
    }

    /// Refuses one more watcher's media once this pod serves its own share of the room
    /// (`limits.pod_watchers`; with relays the room may hold more, served by them).
    fn check_pod_watchers(&self) -> Result<()> {
        let max = self.rules.config().limits.pod_watchers;
        let served = self
            .media
            .peers()
            .filter(|p| p.role == PeerRole::View)
            .filter(|p| {
                self.rules
                    .participant(p.participant)
                    .is_some_and(|q| !q.identity.grants.hidden())
            })
            .count();
        if served as u64 >= u64::from(max) {
            return Err(Refusal::RoomFull { max }.into());
        }
        Ok(())
    }

    /// WHIP/WHEP `DELETE`: the holder of `user`'s token ends one peer connection.
    pub fn delete_peer(&mut self, now: Instant, user: &str, peer: PeerId) -> Result<()> {
        let owner = self.media.peer(peer).ok_or(Error::UnknownPeer)?.participant;
        let same_user = self
            .rules
            .participant(owner)
            .is_some_and(|p| p.identity.user == user);
        if !same_user {
            return Err(Error::UnknownPeer);
        }
        self.media.close_peer(now, peer);
        self.pump(Some(now));
        Ok(())
    }

    /// A packet on the media port (see [`crate::media::Media::handle_receive`]); true if a
    /// peer took it.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        datagram: &[u8],
    ) -> bool {
        let taken = self.media.handle_receive(now, proto, source, datagram);
        self.pump(Some(now));
        taken
    }

    /// A connection on the media port closed (see [`crate::media::Media::path_closed`]).
    pub fn path_closed(&mut self, now: Instant, proto: Protocol, remote: SocketAddr) {
        self.media.path_closed(now, proto, remote);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.media.handle_timeout(now);
        self.rules.handle_timeout(now);
        self.pump(Some(now));
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.media.poll_timeout(), self.rules.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.media.poll_transmit()
    }

    pub fn poll_output(&mut self) -> Option<RoomOutput> {
        self.out.pop_front()
    }

    pub fn begin_drain(&mut self, now: Instant, grace: Duration) {
        self.rules.begin_drain(now, grace);
        self.pump(Some(now));
    }

    /// The room moves to another pod: everyone is asked to re-join there and closed
    /// [`LEAVE_NOTICE`] later.
    pub fn begin_leave(&mut self, now: Instant) {
        self.rules.begin_leave(now, LEAVE_NOTICE);
        self.pump(Some(now));
    }

    pub fn is_drained(&self) -> bool {
        self.rules.is_drained()
    }

    pub fn status(&self) -> RoomStatus {
        let config = self.rules.config();
        RoomStatus {
            room: config.room.clone(),
            kind: config.kind,
            limits: config.limits,
            counts: self.rules.counts(),
            attendance: self.rules.attendance(),
            participants: self.rules.participants().count() as u32,
            broadcasting: self.rules.broadcasting(),
            draining: self.rules.is_draining(),
            media: self.media.stats(),
            relays_connected: self
                .rules
                .participants()
                .filter(|p| p.identity.grants.relay)
                .count() as u32,
            relay: false,
            upstream: None,
            tcp: TcpStats::default(),
        }
    }

    /// The participant a media request acts for: the named one (same user), or a new
    /// implicit join.
    fn resolve(
        &mut self,
        identity: Identity,
        participant: Option<ParticipantId>,
    ) -> Result<(ParticipantId, bool)> {
        match participant {
            Some(id) => {
                let p = self
                    .rules
                    .participant(id)
                    .ok_or(Refusal::UnknownParticipant)?;
                if p.identity.user != identity.user {
                    return Err(Refusal::NotAllowed.into());
                }
                if p.state == ParticipantState::Lobby {
                    return Err(Refusal::WaitingForHost.into());
                }
                Ok((id, false))
            }
            None => {
                if self.rules.joins_lobby(&identity) {
                    // Asking to join needs the events channel, where the answer arrives.
                    return Err(Refusal::WaitingForHost.into());
                }
                let id = self.rules.join(identity)?;
                self.presence.entry(id).or_default();
                Ok((id, true))
            }
        }
    }

    fn abandon(&mut self, now: Instant, id: ParticipantId, implicit: bool) {
        if implicit {
            self.leave_if_gone(now, id);
        }
        self.pump(Some(now));
    }

    fn leave_if_gone(&mut self, now: Instant, id: ParticipantId) {
        let gone = self
            .presence
            .get(&id)
            .is_none_or(|p| !p.events && p.peers.is_empty());
        if gone {
            self.presence.remove(&id);
            self.rules.leave(id);
            self.media.close_participant(now, id);
        }
    }

    /// Carry outputs between rules and media until both are quiet.
    fn pump(&mut self, now: Option<Instant>) {
        loop {
            let mut progressed = false;
            while let Some(o) = self.rules.poll_output() {
                progressed = true;
                match o {
                    RulesOutput::Send(to, event) => self.out.push_back(RoomOutput::Send(to, event)),
                    RulesOutput::StopMedia(id) => {
                        if let Some(now) = now {
                            self.media.stop_publishing(now, id);
                        }
                    }
                    RulesOutput::Disconnect(id, refusal) => {
                        if let Some(now) = now {
                            self.media.close_participant(now, id);
                        }
                        self.presence.remove(&id);
                        self.out.push_back(RoomOutput::Send(
                            id,
                            ServerEvent::Refused {
                                code: refusal.code().to_string(),
                                message: refusal.to_string(),
                            },
                        ));
                        self.out.push_back(RoomOutput::Close(id));
                    }
                    RulesOutput::GateChanged { .. } => {
                        if let Some(now) = now {
                            let ids: Vec<_> = self.rules.participants().map(|p| p.id).collect();
                            for id in ids {
                                let on = self.rules.receives_media(id);
                                self.media.set_receives(now, id, on);
                            }
                        }
                    }
                }
            }
            while let Some(e) = self.media.poll_event() {
                progressed = true;
                self.on_media_event(now, e);
            }
            if !progressed {
                return;
            }
        }
    }

    fn on_media_event(&mut self, now: Option<Instant>, event: MediaEvent) {
        match event {
            MediaEvent::Connected { .. } => {}
            MediaEvent::Closed {
                peer,
                participant,
                role,
            } => {
                if let Some(p) = self.presence.get_mut(&participant) {
                    p.peers.retain(|x| *x != peer);
                }
                match role {
                    PeerRole::Publish(Source::Camera) => self.rules.stop_camera(participant),
                    PeerRole::Publish(Source::Screen) => self.rules.stop_screen_share(participant),
                    PeerRole::View | PeerRole::Relay | PeerRole::Upstream => {}
                }
                if let Some(now) = now {
                    self.leave_if_gone(now, participant);
                }
            }
            MediaEvent::Track { .. } | MediaEvent::TrackEnded { .. } => {
                if let Some((viewer, told)) = event.to_viewer() {
                    self.out.push_back(RoomOutput::Send(viewer, told));
                }
            }
        }
    }
}
