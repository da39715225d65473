//! Who is in the room: each participant's state and audience, the live counts pushed to
//! everyone when they change, and joining, the welcome and leaving.

use serde::Serialize;

use super::{
    ChatPace, Identity, ParticipantId, ParticipantInfo, Refusal, Rules, RulesOutput, ServerEvent,
};
use crate::config::{RoomKind, SCREEN_SHARE_BELOW};

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
    pub(super) chat_pace: ChatPace,
}

impl Participant {
    pub(super) fn info(&self) -> ParticipantInfo {
        ParticipantInfo {
            id: self.id,
            profile: self.identity.profile.clone(),
        }
    }

    pub(super) fn admitted(&self) -> bool {
        self.state != ParticipantState::Lobby
    }

    pub(super) fn hidden(&self) -> bool {
        self.identity.grants.hidden()
    }

    pub(super) fn area(&self) -> Area {
        if self.identity.backstage {
            Area::Backstage
        } else {
            Area::Main
        }
    }
}

/// The two audiences of a stage room; other rooms only have `Main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Area {
    Main,
    Backstage,
}

impl Rules {
    /// Participant `id`, or the refusal for an id that is not in the room.
    pub(super) fn member(&self, id: ParticipantId) -> Result<&Participant, Refusal> {
        self.participants
            .get(&id)
            .ok_or(Refusal::UnknownParticipant)
    }

    pub(super) fn member_mut(&mut self, id: ParticipantId) -> Result<&mut Participant, Refusal> {
        self.participants
            .get_mut(&id)
            .ok_or(Refusal::UnknownParticipant)
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

    /// The counts participant `p` is told: on a stage off air, the audience hears of nobody on
    /// camera (the speakers rehearsing in the backstage are nobody's business until the
    /// broadcast starts); everyone else, and everyone once on air, the room's counts.
    pub(super) fn counts_for(&self, p: &Participant, counts: Counts) -> Counts {
        if !self.hears_of_camera(p) {
            Counts {
                on_camera: 0,
                ..counts
            }
        } else {
            counts
        }
    }

    /// Whether `p` is told who is on camera: everyone except a stage's audience while off air.
    pub(super) fn hears_of_camera(&self, p: &Participant) -> bool {
        self.config.kind != RoomKind::Stage || self.broadcasting || p.area() == Area::Backstage
    }

    pub fn is_on_camera(&self, id: ParticipantId) -> bool {
        self.participants
            .get(&id)
            .is_some_and(|p| p.state == ParticipantState::OnCamera)
    }

    /// Enter the room as a watcher (or into the lobby of a locked room).
    pub fn join(&mut self, identity: Identity) -> Result<ParticipantId, Refusal> {
        let lobby = self.admission(&identity)?;
        let id = ParticipantId(self.next_id);
        self.next_id += 1;
        let participant = Participant {
            id,
            identity,
            state: if lobby {
                ParticipantState::Lobby
            } else {
                ParticipantState::Watching
            },
            screen_sharing: false,
            chat_pace: ChatPace::default(),
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

    /// A participant's events socket dropped (the control plane proxying it restarted, a
    /// network blip) and a new one asks to carry on as `id`: allowed for the same user in the
    /// same run of the room. They get the room as it is now (a welcome, or the lobby's
    /// waiting message), as at a first join; their media peers were never touched.
    pub fn resume(&mut self, id: ParticipantId, user: &str, instance: u64) -> Result<(), Refusal> {
        let same = self
            .participants
            .get(&id)
            .is_some_and(|p| p.identity.user == user);
        if instance != self.config.instance || !same {
            return Err(Refusal::NotResumable);
        }
        if self.participants[&id].admitted() {
            self.welcome(id);
        } else {
            self.send(
                id,
                ServerEvent::Waiting {
                    message: Refusal::WaitingForHost.to_string(),
                },
            );
        }
        Ok(())
    }

    /// The participant left (closed the page, or their connections died).
    pub fn leave(&mut self, id: ParticipantId) {
        let Some(p) = self.participants.remove(&id) else {
            return;
        };
        match p.state {
            ParticipantState::OnCamera => {
                self.out.push_back(RulesOutput::StopMedia(id));
                self.send_camera_news(ServerEvent::OffCamera {
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

    pub(super) fn welcome(&mut self, id: ParticipantId) {
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
            instance: self.config.instance,
            kind: self.config.kind,
            share_policy: self.config.share_policy,
            theme: self.config.theme,
            locked: self.config.locked,
            state: p.state,
            counts: self.counts_for(p, self.counts()),
            on_camera: if self.hears_of_camera(p) {
                pending(ParticipantState::OnCamera, None)
            } else {
                Vec::new()
            },
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

    pub(super) fn push_counts(&mut self) {
        let counts = self.counts();
        self.attendance.observe(&counts);
        if counts != self.last_counts {
            self.last_counts = counts;
            self.send_counts();
        }
    }

    /// Tells every admitted participant the counts they may know ([`Rules::counts_for`]).
    pub(super) fn send_counts(&mut self) {
        let counts = self.last_counts;
        let told: Vec<_> = self
            .participants
            .values()
            .filter(|p| p.admitted())
            .map(|p| (p.id, self.counts_for(p, counts)))
            .collect();
        for (id, c) in told {
            self.send(id, ServerEvent::Counts(c));
        }
    }
}
