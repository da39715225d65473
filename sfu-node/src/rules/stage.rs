//! The stage's broadcast gate: the audience receives the backstage's media only while a
//! backstage moderator has it live; other rooms' media always flows to admitted people.

use super::{
    Area, Participant, ParticipantId, ParticipantState, Refusal, Rules, RulesOutput, ServerEvent,
};
use crate::config::RoomKind;

impl Rules {
    pub fn broadcasting(&self) -> bool {
        self.broadcasting
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

    pub(super) fn broadcast(&mut self, from: ParticipantId, live: bool) -> Result<(), Refusal> {
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
            // Who is on camera, and how many, appear to the audience or go with the broadcast.
            self.tell_audience_who_is_on_camera(live);
            self.send_counts();
        }
        Ok(())
    }

    /// The audience hears of the speakers when the broadcast starts (each on camera) and that
    /// they left when it stops; the backstage knew all along.
    fn tell_audience_who_is_on_camera(&mut self, live: bool) {
        let speakers: Vec<_> = self
            .participants
            .values()
            .filter(|p| p.state == ParticipantState::OnCamera)
            .map(Participant::info)
            .collect();
        let audience: Vec<_> = self
            .participants
            .values()
            .filter(|p| p.admitted() && p.area() != Area::Backstage)
            .map(|p| p.id)
            .collect();
        for to in audience {
            for speaker in &speakers {
                let event = if live {
                    ServerEvent::OnCamera {
                        participant: speaker.clone(),
                    }
                } else {
                    ServerEvent::OffCamera {
                        participant: speaker.id,
                        removed: false,
                    }
                };
                self.send(to, event);
            }
        }
    }
}
