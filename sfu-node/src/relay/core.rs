//! The relay's sans-IO core: its [`Media`] (the upstream peer and local viewers), the
//! watchers connected through it, and leaving the pool.
//!
//! Room rules live at the origin; here a watcher is only an origin participant id (from the
//! origin's `welcome`) with the user of their token, counted against this relay's capacity.
//! Inputs take `now`; outputs are datagrams, events for watchers' sockets and the news that
//! the upstream peer closed.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Deserialize;
use str0m::media::{MediaKind, Mid, Rid};
use str0m::net::{Protocol, Transmit};

use crate::config::RoomConfig;
use crate::media::{Media, MediaConfig, MediaEvent, OriginTrack, PeerId, PeerRole, Source};
use crate::room::{RoomStatus, UpstreamState};
use crate::rules::{Attendance, Counts, ParticipantId, Refusal, ServerEvent};
use crate::{Error, Result};

/// How long watchers told to reconnect keep their sockets before the relay closes them.
pub const LEAVE_NOTICE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq)]
pub enum RelayOutput {
    Send(ParticipantId, ServerEvent),
    /// Close this watcher's events socket.
    Close(ParticipantId),
    /// The media peer to the origin is gone; the link reconnects.
    UpstreamClosed,
}

/// The events the relay reads from its own events socket at the origin.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OriginEvent {
    Welcome {
        counts: OnCamera,
    },
    Counts(OnCamera),
    Track {
        mid: String,
        participant: ParticipantId,
        kind: String,
        source: Source,
        #[serde(default)]
        rid: Option<String>,
    },
    TrackEnded {
        mid: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct OnCamera {
    on_camera: u32,
}

#[derive(Debug)]
struct Watcher {
    user: String,
}

#[derive(Debug)]
pub struct Relay {
    config: RoomConfig,
    media: Media,
    watchers: BTreeMap<ParticipantId, Watcher>,
    upstream: Option<PeerId>,
    upstream_connected: bool,
    on_camera: u32,
    peak_watching: u32,
    /// Set on SIGTERM: when watchers' sockets close.
    leaving: Option<Instant>,
    out: VecDeque<RelayOutput>,
}

impl Relay {
    pub fn new(config: RoomConfig, media: MediaConfig) -> Self {
        Relay {
            config,
            media: Media::new(media),
            watchers: BTreeMap::new(),
            upstream: None,
            upstream_connected: false,
            on_camera: 0,
            peak_watching: 0,
            leaving: None,
            out: VecDeque::new(),
        }
    }

    /// Where the media core's worker threads send (see [`Media::set_direct_send`]).
    pub fn set_direct_send(&mut self, sink: std::sync::Arc<dyn crate::media::DirectSend>) {
        self.media.set_direct_send(sink);
    }

    pub fn media(&self) -> &Media {
        &self.media
    }

    pub fn watching(&self) -> u32 {
        self.watchers.len() as u32
    }

    /// A watcher's proxied events socket got the origin's welcome as `id`.
    pub fn join(&mut self, id: ParticipantId, user: &str) -> Result<(), Refusal> {
        if self.leaving.is_some() {
            return Err(Refusal::Draining);
        }
        let max = self.config.limits.max_watchers;
        if self.watching() >= max {
            return Err(Refusal::RoomFull { max });
        }
        self.watchers.insert(
            id,
            Watcher {
                user: user.to_string(),
            },
        );
        self.peak_watching = self.peak_watching.max(self.watching());
        Ok(())
    }

    /// Their events socket closed.
    pub fn leave(&mut self, now: Instant, id: ParticipantId) {
        if self.watchers.remove(&id).is_some() {
            self.media.close_participant(now, id);
            self.finish_if_left(now);
            self.pump();
        }
    }

    /// WHEP from a watcher with an open events socket on this relay (same token subject).
    pub fn view(
        &mut self,
        now: Instant,
        user: &str,
        participant: ParticipantId,
        offer: &str,
    ) -> Result<(ParticipantId, PeerId, String)> {
        let w = self
            .watchers
            .get(&participant)
            .ok_or(Refusal::UnknownParticipant)?;
        if w.user != user {
            return Err(Refusal::NotAllowed.into());
        }
        let (peer, answer) = self
            .media
            .add_peer(now, participant, PeerRole::View, offer)?;
        self.pump();
        Ok((participant, peer, answer))
    }

    /// The watcher shows `mid` at this size (their `view` command).
    pub fn set_view(&mut self, now: Instant, id: ParticipantId, mid: &str, w: u32, h: u32) {
        self.media.set_view(now, id, mid, w, h);
        self.pump();
    }

    /// WHEP `DELETE` by the holder of `user`'s token.
    pub fn delete_peer(&mut self, now: Instant, user: &str, peer: PeerId) -> Result<()> {
        let owner = self.media.peer(peer).ok_or(Error::UnknownPeer)?.participant;
        if self.watchers.get(&owner).is_none_or(|w| w.user != user) {
            return Err(Error::UnknownPeer);
        }
        self.media.close_peer(now, peer);
        self.pump();
        Ok(())
    }

    /// Start a media peer to the origin, where this relay is participant `relay`; returns the
    /// offer. Slots: three layers of a camera and a screen, and their audio, for everyone who
    /// may be on camera.
    pub fn start_upstream(&mut self, now: Instant, relay: ParticipantId) -> Result<String> {
        self.serving()?;
        self.drop_upstream(now);
        let tracks = 2 * self.config.limits.max_on_camera as usize;
        let (peer, offer) = self.media.add_upstream(now, relay, tracks, 3 * tracks)?;
        self.upstream = Some(peer);
        self.pump();
        Ok(offer)
    }

    pub fn upstream_answer(&mut self, now: Instant, answer: &str) -> Result<()> {
        let peer = self.upstream.ok_or(Error::UnknownPeer)?;
        let result = self.media.accept_upstream_answer(now, peer, answer);
        self.pump();
        result
    }

    /// A message from the relay's own events socket at the origin.
    pub fn origin_event(&mut self, now: Instant, text: &str) {
        let Ok(event) = serde_json::from_str::<OriginEvent>(text) else {
            return;
        };
        match event {
            OriginEvent::Welcome { counts } | OriginEvent::Counts(counts) => {
                self.on_camera = counts.on_camera;
            }
            OriginEvent::Track {
                mid,
                participant,
                kind,
                source,
                rid,
            } => {
                let kind = match kind.as_str() {
                    "audio" => MediaKind::Audio,
                    "video" => MediaKind::Video,
                    _ => return,
                };
                if let Some(peer) = self.upstream {
                    let placed = OriginTrack {
                        slot: Mid::from(mid.as_str()),
                        publisher: participant,
                        source,
                        kind,
                        rid: rid.as_deref().map(Rid::from),
                    };
                    self.media.upstream_track(now, peer, placed);
                }
            }
            OriginEvent::TrackEnded { mid } => {
                if let Some(peer) = self.upstream {
                    self.media
                        .upstream_track_ended(now, peer, Mid::from(mid.as_str()));
                }
            }
            OriginEvent::Other => {}
        }
        self.pump();
    }

    /// The events socket to the origin dropped: end the media peer too, and what it fed.
    pub fn upstream_lost(&mut self, now: Instant) {
        self.drop_upstream(now);
        self.pump();
    }

    /// Make the upstream offer only while serving.
    fn serving(&self) -> Result<()> {
        match self.leaving {
            Some(_) => Err(Refusal::Draining.into()),
            None => Ok(()),
        }
    }

    /// SIGTERM: refuse joins, tell every watcher to reconnect, close them [`LEAVE_NOTICE`]
    /// later.
    pub fn begin_leave(&mut self, now: Instant) {
        if self.leaving.is_some() {
            return;
        }
        self.leaving = Some(now + LEAVE_NOTICE);
        for id in self.watchers.keys() {
            self.out.push_back(RelayOutput::Send(
                *id,
                ServerEvent::Reconnect {
                    reason: "relay_leaving".into(),
                },
            ));
        }
        self.finish_if_left(now);
        self.pump();
    }

    /// Left the pool, every watcher is gone and so is the upstream.
    pub fn is_done(&self) -> bool {
        self.leaving.is_some() && self.watchers.is_empty() && self.upstream.is_none()
    }

    /// Once leaving with nobody left to serve, hang up on the origin (DTLS close).
    fn finish_if_left(&mut self, now: Instant) {
        if self.leaving.is_some() && self.watchers.is_empty() {
            self.drop_upstream(now);
        }
    }

    /// A packet on the media port; true if a peer (a watcher, or the upstream) took it.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        datagram: &[u8],
    ) -> bool {
        let taken = self.media.handle_receive(now, proto, source, datagram);
        self.pump();
        taken
    }

    /// A connection on the media port closed (see [`crate::media::Media::path_closed`]).
    pub fn path_closed(&mut self, now: Instant, proto: Protocol, remote: SocketAddr) {
        self.media.path_closed(now, proto, remote);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.media.handle_timeout(now);
        if self.leaving.is_some_and(|t| t <= now) {
            let ids: Vec<_> = self.watchers.keys().copied().collect();
            for id in ids {
                self.watchers.remove(&id);
                self.media.close_participant(now, id);
                self.out.push_back(RelayOutput::Close(id));
            }
        }
        self.finish_if_left(now);
        self.pump();
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let leave = self.leaving.filter(|_| !self.watchers.is_empty());
        match (self.media.poll_timeout(), leave) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.media.poll_transmit()
    }

    pub fn poll_output(&mut self) -> Option<RelayOutput> {
        self.out.pop_front()
    }

    pub fn status(&self) -> RoomStatus {
        let counts = Counts {
            watching: self.watching(),
            on_camera: self.on_camera,
            screen_share_available: false,
        };
        RoomStatus {
            room: self.config.room.clone(),
            kind: self.config.kind,
            limits: self.config.limits,
            counts,
            attendance: Attendance {
                peak_watching: self.peak_watching,
                ..Attendance::default()
            },
            participants: self.watching(),
            broadcasting: false,
            draining: self.leaving.is_some(),
            media: self.media.stats(),
            relays_connected: 0,
            relay: true,
            upstream: Some(if self.upstream_connected {
                UpstreamState::Connected
            } else {
                UpstreamState::Connecting
            }),
            tcp: Default::default(),
        }
    }

    fn drop_upstream(&mut self, now: Instant) {
        if let Some(peer) = self.upstream.take() {
            self.upstream_connected = false;
            self.media.close_peer(now, peer);
        }
    }

    fn pump(&mut self) {
        while let Some(e) = self.media.poll_event() {
            match e {
                MediaEvent::Connected { peer, .. } if Some(peer) == self.upstream => {
                    self.upstream_connected = true;
                }
                MediaEvent::Closed { peer, .. } if Some(peer) == self.upstream => {
                    self.upstream = None;
                    self.upstream_connected = false;
                    self.out.push_back(RelayOutput::UpstreamClosed);
                }
                MediaEvent::Track { .. } | MediaEvent::TrackEnded { .. } => {
                    if let Some((viewer, told)) = e.to_viewer() {
                        self.out.push_back(RelayOutput::Send(viewer, told));
                    }
                }
                MediaEvent::Connected { .. } | MediaEvent::Closed { .. } => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use super::*;
    use crate::config::{Limits, RoomKind};

    fn relay(capacity: u32) -> Relay {
        let mut config = RoomConfig::new("r1", RoomKind::Session);
        config.limits = Limits::new(RoomKind::Session, 10, Some(capacity)).unwrap();
        let addr: SocketAddr = (Ipv4Addr::new(10, 0, 0, 2), 5000).into();
        Relay::new(config, MediaConfig::new(addr))
    }

    fn outputs(r: &mut Relay) -> Vec<RelayOutput> {
        std::iter::from_fn(|| r.poll_output()).collect()
    }

    #[test]
    fn capacity_is_this_relays_own_watchers() {
        let mut r = relay(2);
        r.join(ParticipantId(7), "a").unwrap();
        r.join(ParticipantId(9), "b").unwrap();
        assert_eq!(
            r.join(ParticipantId(11), "c"),
            Err(Refusal::RoomFull { max: 2 })
        );
        r.leave(Instant::now(), ParticipantId(7));
        r.join(ParticipantId(11), "c").unwrap();
        let s = r.status();
        assert_eq!((s.counts.watching, s.attendance.peak_watching), (2, 2));
        assert!(s.relay);
        assert_eq!(s.upstream, Some(UpstreamState::Connecting));
    }

    #[test]
    fn media_is_only_for_a_watcher_with_an_events_socket_here() {
        let mut r = relay(5);
        r.join(ParticipantId(7), "a").unwrap();
        let now = Instant::now();
        let err = r.view(now, "a", ParticipantId(8), "v=0").unwrap_err();
        assert!(matches!(err, Error::Refused(Refusal::UnknownParticipant)));
        let err = r.view(now, "mallory", ParticipantId(7), "v=0").unwrap_err();
        assert!(matches!(err, Error::Refused(Refusal::NotAllowed)));
    }

    #[test]
    fn leaving_asks_everyone_to_reconnect_then_closes_them_a_second_later() {
        let mut r = relay(5);
        let t0 = Instant::now();
        r.join(ParticipantId(7), "a").unwrap();
        r.join(ParticipantId(9), "b").unwrap();
        r.begin_leave(t0);
        let reconnect = ServerEvent::Reconnect {
            reason: "relay_leaving".into(),
        };
        assert_eq!(
            outputs(&mut r),
            vec![
                RelayOutput::Send(ParticipantId(7), reconnect.clone()),
                RelayOutput::Send(ParticipantId(9), reconnect),
            ]
        );
        assert_eq!(r.join(ParticipantId(11), "c"), Err(Refusal::Draining));
        assert!(r.start_upstream(t0, ParticipantId(1)).is_err());
        assert_eq!(r.poll_timeout(), Some(t0 + LEAVE_NOTICE));
        r.handle_timeout(t0 + LEAVE_NOTICE - Duration::from_millis(1));
        assert!(outputs(&mut r).is_empty() && !r.is_done());
        r.handle_timeout(t0 + LEAVE_NOTICE);
        assert_eq!(
            outputs(&mut r),
            vec![
                RelayOutput::Close(ParticipantId(7)),
                RelayOutput::Close(ParticipantId(9)),
            ]
        );
        assert!(r.is_done());
    }

    #[test]
    fn on_camera_count_follows_the_origin() {
        let mut r = relay(5);
        let now = Instant::now();
        r.origin_event(
            now,
            r#"{"type":"welcome","you":1,"counts":{"watching":4,"on_camera":2}}"#,
        );
        assert_eq!(r.status().counts.on_camera, 2);
        r.origin_event(now, r#"{"type":"counts","watching":5,"on_camera":3}"#);
        r.origin_event(now, r#"{"type":"chat","text":"not for the relay"}"#);
        assert_eq!(r.status().counts.on_camera, 3);
        assert_eq!(r.status().counts.watching, 0, "watchers of this relay only");
    }
}
