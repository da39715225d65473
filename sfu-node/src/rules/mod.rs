//! The room's rules as a plain synchronous state machine: who is in, who may be on camera,
//! limits, moderation, chat, the locked-room lobby, the stage's broadcast gate and draining.
//!
//! Model: every call is an input (`join`, `command`, `go_on_camera`, `leave`, `handle_timeout`)
//! with `now` passed in; what the room wants done comes out of [`Rules::poll_output`] as
//! messages for one participant or effects on media. No I/O, no clock, no str0m.
//!
//! Invariants:
//! - at most `limits.max_on_camera` participants are [`ParticipantState::OnCamera`];
//! - a join is refused once `limits.max_watchers` are watching (hosts, recorders and relays
//!   excepted);
//! - counts are pushed to every admitted participant exactly when they change;
//! - a participant taken off camera yields [`RulesOutput::StopMedia`] in the same call.

mod attendance;
mod chat;
mod identity;
mod protocol;
mod refusal;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use attendance::{Attendance, AttendanceLog};
pub use chat::{ChatHistory, ChatMessage, MAX_CHAT_CHARS};
pub use identity::{Grants, Identity, Profile};
pub use protocol::{ClientCommand, ParticipantInfo, ServerEvent};
pub use refusal::Refusal;

use crate::config::{RoomConfig, RoomKind, SCREEN_SHARE_BELOW, SharePolicy, Theme};

/// A participant's id within this room process (one per join, not per user).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ParticipantId(pub u64);

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantState {
    /// Waiting for a host to admit them into a locked room.
    Lobby,
    Watching,
    /// Asked a moderator to share audio and video.
    Requested,
    /// A moderator said yes; they may go on camera.
    Approved,
    OnCamera,
}

/// Live counts shown at the top of the room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub watching: u32,
    pub on_camera: u32,
    /// Whether "share screen" is offered (greyed out on a full backstage).
    pub screen_share_available: bool,
}

#[derive(Debug, Clone)]
pub struct Participant {
    pub id: ParticipantId,
    pub identity: Identity,
    pub state: ParticipantState,
    pub screen_sharing: bool,
}

impl Participant {
    fn info(&self) -> ParticipantInfo {
        ParticipantInfo {
            id: self.id,
            profile: self.identity.profile.clone(),
        }
    }

    fn admitted(&self) -> bool {
        self.state != ParticipantState::Lobby
    }

    fn hidden(&self) -> bool {
        self.identity.grants.hidden()
    }

    fn area(&self) -> Area {
        if self.identity.backstage {
            Area::Backstage
        } else {
            Area::Main
        }
    }
}

/// The two audiences of a stage room; other rooms only have `Main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Area {
    Main,
    Backstage,
}

/// What the room wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum RulesOutput {
    /// Deliver an event to one participant's room-events channel.
    Send(ParticipantId, ServerEvent),
    /// Stop every track this participant publishes, for everyone, now.
    StopMedia(ParticipantId),
    /// Close this participant's connections; they are no longer in the room.
    Disconnect(ParticipantId, Refusal),
    /// The stage's broadcast gate opened or closed.
    GateChanged { open: bool },
}

#[derive(Debug)]
pub struct Rules {
    config: RoomConfig,
    participants: BTreeMap<ParticipantId, Participant>,
    next_id: u64,
    chats: [ChatHistory; 2],
    chat_seq: u64,
    broadcasting: bool,
    drain_deadline: Option<Instant>,
    last_counts: Counts,
    attendance: AttendanceLog,
    out: VecDeque<RulesOutput>,
}

impl Rules {
    pub fn new(config: RoomConfig) -> Self {
        let chats = [
            ChatHistory::new(config.chat_history),
            ChatHistory::new(config.chat_history),
        ];
        let mut rules = Rules {
            config,
            participants: BTreeMap::new(),
            next_id: 1,
            chats,
            chat_seq: 0,
            broadcasting: false,
            drain_deadline: None,
            last_counts: Counts::default(),
            attendance: AttendanceLog::default(),
            out: VecDeque::new(),
        };
        rules.last_counts = rules.counts();
        rules
    }

    pub fn config(&self) -> &RoomConfig {
        &self.config
    }

    pub fn participant(&self, id: ParticipantId) -> Option<&Participant> {
        self.participants.get(&id)
    }

    pub fn participants(&self) -> impl Iterator<Item = &Participant> {
        self.participants.values()
    }

    pub fn is_draining(&self) -> bool {
        self.drain_deadline.is_some()
    }

    /// Draining and everyone has left.
    pub fn is_drained(&self) -> bool {
        self.is_draining() && self.participants.is_empty()
    }

    pub fn broadcasting(&self) -> bool {
        self.broadcasting
    }

    /// Peak counts and unique joiners since the room started.
    pub fn attendance(&self) -> Attendance {
        self.attendance.summary()
    }

    pub fn counts(&self) -> Counts {
        let mut watching = 0;
        let mut on_camera = 0;
        for p in self.participants.values() {
            if !p.admitted() || p.hidden() {
                continue;
            }
            if p.state == ParticipantState::OnCamera {
                on_camera += 1;
            } else {
                watching += 1;
            }
        }
        Counts {
            watching,
            on_camera,
            screen_share_available: self.config.kind != RoomKind::Stage
                || on_camera < SCREEN_SHARE_BELOW,
        }
    }

    /// Whether `viewer` is sent the room's media: admitted, and on a stage the audience only
    /// while the backstage is broadcast.
    pub fn receives_media(&self, viewer: ParticipantId) -> bool {
        let Some(p) = self.participants.get(&viewer) else {
            return false;
        };
        p.admitted()
            && (self.config.kind != RoomKind::Stage
                || p.area() == Area::Backstage
                || self.broadcasting)
    }

    pub fn is_on_camera(&self, id: ParticipantId) -> bool {
        self.participants
            .get(&id)
            .is_some_and(|p| p.state == ParticipantState::OnCamera)
    }

    pub fn poll_output(&mut self) -> Option<RulesOutput> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.drain_deadline
            .filter(|_| !self.participants.is_empty())
    }

    /// Whether a join by `identity` would wait in the lobby of a locked room.
    pub fn joins_lobby(&self, identity: &Identity) -> bool {
        self.config.locked && !identity.grants.host && !identity.grants.hidden()
    }

    /// Enter the room as a watcher (or into the lobby of a locked room).
    pub fn join(&mut self, identity: Identity) -> Result<ParticipantId, Refusal> {
        if self.is_draining() {
            return Err(Refusal::Draining);
        }
        if !identity.grants.enters() {
            return Err(Refusal::NotAllowed);
        }
        let grants = identity.grants;
        let exempt = grants.host || grants.hidden();
        if !exempt && self.counts().watching >= self.config.limits.max_watchers {
            return Err(Refusal::RoomFull {
                max: self.config.limits.max_watchers,
            });
        }
        let id = ParticipantId(self.next_id);
        self.next_id += 1;
        let lobby = self.joins_lobby(&identity);
        let participant = Participant {
            id,
            identity,
            state: if lobby {
                ParticipantState::Lobby
            } else {
                ParticipantState::Watching
            },
            screen_sharing: false,
        };
        let info = participant.info();
        self.participants.insert(id, participant);
        if lobby {
            self.send(
                id,
                ServerEvent::Waiting {
                    message: Refusal::WaitingForHost.to_string(),
                },
            );
            self.send_hosts(ServerEvent::JoinRequested { participant: info });
        } else {
            self.welcome(id);
        }
        self.push_counts();
        Ok(id)
    }

    /// The participant left (closed the page, or their connections died).
    pub fn leave(&mut self, id: ParticipantId) {
        let Some(p) = self.participants.remove(&id) else {
            return;
        };
        match p.state {
            ParticipantState::OnCamera => {
                self.out.push_back(RulesOutput::StopMedia(id));
                self.send_all(ServerEvent::OffCamera {
                    participant: id,
                    removed: false,
                });
            }
            ParticipantState::Requested => self.send_moderators(
                p.area(),
                ServerEvent::ShareRequestResolved {
                    participant: id,
                    approved: false,
                },
            ),
            ParticipantState::Lobby => self.send_hosts(ServerEvent::JoinResolved {
                participant: id,
                accepted: false,
            }),
            ParticipantState::Watching | ParticipantState::Approved => {}
        }
        self.push_counts();
    }

    /// Handle a command from a participant's room-events channel. A refusal is also sent
    /// back to them as [`ServerEvent::Refused`].
    pub fn command(
        &mut self,
        from: ParticipantId,
        command: ClientCommand,
        at_ms: u64,
    ) -> Result<(), Refusal> {
        let result = self.dispatch(from, command, at_ms);
        if let Err(refusal) = &result {
            self.send(
                from,
                ServerEvent::Refused {
                    code: refusal.code().to_string(),
                    message: refusal.to_string(),
                },
            );
        }
        self.push_counts();
        result
    }

    fn dispatch(
        &mut self,
        from: ParticipantId,
        command: ClientCommand,
        at_ms: u64,
    ) -> Result<(), Refusal> {
        let actor = self
            .participants
            .get(&from)
            .ok_or(Refusal::UnknownParticipant)?;
        if !actor.admitted() {
            return Err(Refusal::WaitingForHost);
        }
        match command {
            ClientCommand::RequestShare => self.request_share(from),
            ClientCommand::WithdrawRequest => self.withdraw_request(from),
            ClientCommand::ApproveShare { participant } => {
                self.resolve_share(from, participant, true)
            }
            ClientCommand::DenyShare { participant } => {
                self.resolve_share(from, participant, false)
            }
            ClientCommand::RemoveFromCamera { participant } => {
                self.remove_from_camera(from, participant)
            }
            ClientCommand::StopCamera => {
                self.stop_camera(from);
                Ok(())
            }
            ClientCommand::Admit { participant } => self.resolve_join(from, participant, true),
            ClientCommand::Deny { participant } => self.resolve_join(from, participant, false),
            ClientCommand::Lock { locked } => self.lock(from, locked),
            ClientCommand::Chat { text } => self.chat(from, text, at_ms),
            ClientCommand::Broadcast { live } => self.broadcast(from, live),
            // Media concerns; the room core routes these to the media side.
            ClientCommand::View { .. } => Ok(()),
        }
    }

    /// Check whether `id` may go on camera right now without changing anything.
    pub fn check_on_camera(&self, id: ParticipantId) -> Result<(), Refusal> {
        let p = self
            .participants
            .get(&id)
            .ok_or(Refusal::UnknownParticipant)?;
        match p.state {
            ParticipantState::Lobby => return Err(Refusal::WaitingForHost),
            ParticipantState::OnCamera => return Err(Refusal::AlreadyOnCamera),
            _ => {}
        }
        self.may_share(p)?;
        let approved = p.state == ParticipantState::Approved;
        let g = p.identity.grants;
        match self.effective_policy() {
            SharePolicy::Open => {}
            SharePolicy::Moderated => {
                if !(approved || g.moderates() || g.share) {
                    return Err(Refusal::NeedsApproval);
                }
            }
            SharePolicy::InviteOnly => {
                if !(g.share || g.moderates()) {
                    return Err(Refusal::InviteOnly);
                }
            }
        }
        let max = self.config.limits.max_on_camera;
        if self.counts().on_camera >= max {
            return Err(Refusal::CameraFull { max });
        }
        Ok(())
    }

    /// Put `id` on camera: called when their publishing connection is accepted.
    pub fn go_on_camera(&mut self, id: ParticipantId) -> Result<(), Refusal> {
        self.check_on_camera(id)?;
        let p = self.participants.get_mut(&id).expect("checked above");
        p.state = ParticipantState::OnCamera;
        let info = p.info();
        self.send_all(ServerEvent::OnCamera { participant: info });
        self.push_counts();
        Ok(())
    }

    /// Leave the screen (by choice, or because the publishing connection ended).
    pub fn stop_camera(&mut self, id: ParticipantId) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        if p.state != ParticipantState::OnCamera {
            return;
        }
        p.state = ParticipantState::Watching;
        p.screen_sharing = false;
        self.out.push_back(RulesOutput::StopMedia(id));
        self.send_all(ServerEvent::OffCamera {
            participant: id,
            removed: false,
        });
        self.push_counts();
    }

    pub fn start_screen_share(&mut self, id: ParticipantId) -> Result<(), Refusal> {
        let on_camera = self.counts().on_camera;
        let stage = self.config.kind == RoomKind::Stage;
        let p = self
            .participants
            .get_mut(&id)
            .ok_or(Refusal::UnknownParticipant)?;
        if p.state != ParticipantState::OnCamera {
            return Err(Refusal::NotOnCamera);
        }
        if stage && on_camera >= SCREEN_SHARE_BELOW {
            return Err(Refusal::ScreenShareFull {
                max: SCREEN_SHARE_BELOW - 1,
            });
        }
        p.screen_sharing = true;
        Ok(())
    }

    pub fn stop_screen_share(&mut self, id: ParticipantId) {
        if let Some(p) = self.participants.get_mut(&id) {
            p.screen_sharing = false;
        }
    }

    /// Stop taking joins; everyone still in is disconnected at `now + grace`.
    pub fn begin_drain(&mut self, now: Instant, grace: Duration) {
        if self.is_draining() {
            return;
        }
        self.drain_deadline = Some(now + grace);
        let grace_ms = grace.as_millis() as u64;
        self.send_all(ServerEvent::Draining { grace_ms });
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.drain_deadline else {
            return;
        };
        if now < deadline {
            return;
        }
        let ids: Vec<_> = self.participants.keys().copied().collect();
        for id in ids {
            if self.is_on_camera(id) {
                self.out.push_back(RulesOutput::StopMedia(id));
            }
            self.participants.remove(&id);
            self.out
                .push_back(RulesOutput::Disconnect(id, Refusal::Draining));
        }
        self.last_counts = self.counts();
    }

    fn effective_policy(&self) -> SharePolicy {
        if self.config.kind == RoomKind::Stage {
            // Backstage: anyone with the link asks; organisers accept.
            SharePolicy::Moderated
        } else {
            self.config.share_policy
        }
    }

    /// Rules that no approval overrides.
    fn may_share(&self, p: &Participant) -> Result<(), Refusal> {
        let g = p.identity.grants;
        if g.hidden() && !(g.share || g.moderates()) {
            return Err(Refusal::NotAllowed);
        }
        if self.config.kind == RoomKind::Stage && p.area() != Area::Backstage {
            return Err(Refusal::StageAudience);
        }
        if self.config.theme == Theme::Webinar && !(g.host || g.share) {
            return Err(Refusal::Webinar);
        }
        if self.config.share_policy == SharePolicy::InviteOnly
            && self.config.kind != RoomKind::Stage
            && !(g.share || g.moderates())
        {
            return Err(Refusal::InviteOnly);
        }
        Ok(())
    }

    fn request_share(&mut self, id: ParticipantId) -> Result<(), Refusal> {
        match self.check_on_camera(id) {
            // Allowed at once: tell them to go ahead.
            Ok(()) => {
                self.send(id, ServerEvent::ShareApproved);
                Ok(())
            }
            Err(Refusal::NeedsApproval) => {
                let p = self.participants.get_mut(&id).expect("checked");
                if p.state == ParticipantState::Requested {
                    return Ok(());
                }
                p.state = ParticipantState::Requested;
                let (area, info) = (p.area(), p.info());
                self.send_moderators(area, ServerEvent::ShareRequested { participant: info });
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn withdraw_request(&mut self, id: ParticipantId) -> Result<(), Refusal> {
        let p = self.participants.get_mut(&id).expect("dispatch checked");
        if p.state != ParticipantState::Requested {
            return Err(Refusal::NoRequest);
        }
        p.state = ParticipantState::Watching;
        let area = p.area();
        self.send_moderators(
            area,
            ServerEvent::ShareRequestResolved {
                participant: id,
                approved: false,
            },
        );
        Ok(())
    }

    fn moderator(&self, id: ParticipantId) -> Result<&Participant, Refusal> {
        let p = self
            .participants
            .get(&id)
            .ok_or(Refusal::UnknownParticipant)?;
        if !p.identity.grants.moderates() {
            return Err(Refusal::NotModerator);
        }
        Ok(p)
    }

    fn resolve_share(
        &mut self,
        moderator: ParticipantId,
        target: ParticipantId,
        approve: bool,
    ) -> Result<(), Refusal> {
        self.moderator(moderator)?;
        let p = self
            .participants
            .get(&target)
            .ok_or(Refusal::UnknownParticipant)?;
        if p.state != ParticipantState::Requested {
            return Err(Refusal::NoRequest);
        }
        let area = p.area();
        if approve {
            let max = self.config.limits.max_on_camera;
            if self.counts().on_camera >= max {
                return Err(Refusal::CameraFull { max });
            }
        }
        let p = self.participants.get_mut(&target).expect("checked");
        p.state = if approve {
            ParticipantState::Approved
        } else {
            ParticipantState::Watching
        };
        self.send(
            target,
            if approve {
                ServerEvent::ShareApproved
            } else {
                ServerEvent::ShareDenied
            },
        );
        self.send_moderators(
            area,
            ServerEvent::ShareRequestResolved {
                participant: target,
                approved: approve,
            },
        );
        Ok(())
    }

    fn remove_from_camera(
        &mut self,
        moderator: ParticipantId,
        target: ParticipantId,
    ) -> Result<(), Refusal> {
        self.moderator(moderator)?;
        let p = self
            .participants
            .get_mut(&target)
            .ok_or(Refusal::UnknownParticipant)?;
        match p.state {
            ParticipantState::OnCamera => {}
            ParticipantState::Approved => {
                // Not publishing yet: withdraw the approval.
                p.state = ParticipantState::Watching;
                self.send(target, ServerEvent::RemovedFromCamera);
                return Ok(());
            }
            _ => return Err(Refusal::TargetNotOnCamera),
        }
        p.state = ParticipantState::Watching;
        p.screen_sharing = false;
        self.out.push_back(RulesOutput::StopMedia(target));
        self.send(target, ServerEvent::RemovedFromCamera);
        self.send_all(ServerEvent::OffCamera {
            participant: target,
            removed: true,
        });
        Ok(())
    }

    fn resolve_join(
        &mut self,
        host: ParticipantId,
        target: ParticipantId,
        accept: bool,
    ) -> Result<(), Refusal> {
        let h = self
            .participants
            .get(&host)
            .ok_or(Refusal::UnknownParticipant)?;
        if !h.identity.grants.host {
            return Err(Refusal::NotHost);
        }
        let p = self
            .participants
            .get(&target)
            .ok_or(Refusal::UnknownParticipant)?;
        if p.state != ParticipantState::Lobby {
            return Err(Refusal::NoRequest);
        }
        if accept {
            let max = self.config.limits.max_watchers;
            if self.counts().watching >= max {
                return Err(Refusal::RoomFull { max });
            }
            self.participants.get_mut(&target).expect("checked").state = ParticipantState::Watching;
            self.welcome(target);
        } else {
            self.participants.remove(&target);
            self.out
                .push_back(RulesOutput::Disconnect(target, Refusal::JoinDenied));
        }
        self.send_hosts(ServerEvent::JoinResolved {
            participant: target,
            accepted: accept,
        });
        Ok(())
    }

    fn lock(&mut self, host: ParticipantId, locked: bool) -> Result<(), Refusal> {
        if !self.participants[&host].identity.grants.host {
            return Err(Refusal::NotHost);
        }
        if self.config.locked != locked {
            self.config.locked = locked;
            self.send_all(ServerEvent::Locked { locked });
        }
        Ok(())
    }

    fn chat(&mut self, from: ParticipantId, text: String, at_ms: u64) -> Result<(), Refusal> {
        let trimmed = text.trim();
        let chars = trimmed.chars().count();
        if chars == 0 || chars > MAX_CHAT_CHARS {
            return Err(Refusal::ChatLength {
                max: MAX_CHAT_CHARS,
            });
        }
        let p = &self.participants[&from];
        let area = p.area();
        self.chat_seq += 1;
        let message = ChatMessage {
            seq: self.chat_seq,
            from,
            name: p.identity.profile.name.clone(),
            text: trimmed.to_string(),
            at_ms,
        };
        self.chats[area as usize].push(message.clone());
        let to: Vec<_> = self
            .participants
            .values()
            .filter(|p| p.admitted() && p.area() == area)
            .map(|p| p.id)
            .collect();
        for id in to {
            self.send(id, ServerEvent::Chat(message.clone()));
        }
        Ok(())
    }

    fn broadcast(&mut self, from: ParticipantId, live: bool) -> Result<(), Refusal> {
        if self.config.kind != RoomKind::Stage {
            return Err(Refusal::NoStage);
        }
        let p = &self.participants[&from];
        if !p.identity.grants.moderates() || p.area() != Area::Backstage {
            return Err(Refusal::NotModerator);
        }
        if self.broadcasting != live {
            self.broadcasting = live;
            self.out.push_back(RulesOutput::GateChanged { open: live });
            self.send_all(ServerEvent::Broadcast { live });
        }
        Ok(())
    }

    fn welcome(&mut self, id: ParticipantId) {
        let p = &self.participants[&id];
        if !p.hidden() {
            self.attendance.admitted(&p.identity.user);
        }
        let p = &self.participants[&id];
        let area = p.area();
        let g = p.identity.grants;
        let pending = |state: ParticipantState, only_area: Option<Area>| {
            self.participants
                .values()
                .filter(|q| q.state == state && only_area.is_none_or(|a| q.area() == a))
                .map(Participant::info)
                .collect::<Vec<_>>()
        };
        let event = ServerEvent::Welcome {
            you: id,
            room: self.config.room.clone(),
            kind: self.config.kind,
            share_policy: self.config.share_policy,
            theme: self.config.theme,
            locked: self.config.locked,
            state: p.state,
            counts: self.counts(),
            on_camera: pending(ParticipantState::OnCamera, None),
            chat: self.chats[area as usize].recent(),
            broadcasting: self.broadcasting,
            share_requests: if g.moderates() {
                pending(ParticipantState::Requested, Some(area))
            } else {
                Vec::new()
            },
            join_requests: if g.host {
                pending(ParticipantState::Lobby, None)
            } else {
                Vec::new()
            },
        };
        self.send(id, event);
    }

    fn send(&mut self, to: ParticipantId, event: ServerEvent) {
        self.out.push_back(RulesOutput::Send(to, event));
    }

    fn send_all(&mut self, event: ServerEvent) {
        let ids: Vec<_> = self
            .participants
            .values()
            .filter(|p| p.admitted())
            .map(|p| p.id)
            .collect();
        for id in ids {
            self.send(id, event.clone());
        }
    }

    fn send_moderators(&mut self, area: Area, event: ServerEvent) {
        let ids: Vec<_> = self
            .participants
            .values()
            .filter(|p| p.admitted() && p.identity.grants.moderates() && p.area() == area)
            .map(|p| p.id)
            .collect();
        for id in ids {
            self.send(id, event.clone());
        }
    }

    fn send_hosts(&mut self, event: ServerEvent) {
        let ids: Vec<_> = self
            .participants
            .values()
            .filter(|p| p.admitted() && p.identity.grants.host)
            .map(|p| p.id)
            .collect();
        for id in ids {
            self.send(id, event.clone());
        }
    }

    fn push_counts(&mut self) {
        let counts = self.counts();
        self.attendance.observe(&counts);
        if counts != self.last_counts {
            self.last_counts = counts;
            self.send_all(ServerEvent::Counts(counts));
        }
    }
}
