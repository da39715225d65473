//! What the room wants done ([`RulesOutput`]), and to whom events go: one participant,
//! everyone admitted, an audience's moderators, the hosts.

use super::{Area, Participant, ParticipantId, Refusal, Rules, ServerEvent};

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

impl Rules {
    pub(super) fn send(&mut self, to: ParticipantId, event: ServerEvent) {
        self.out.push_back(RulesOutput::Send(to, event));
    }

    /// `event` to every admitted participant `to` picks, in id order.
    fn send_where(&mut self, event: ServerEvent, to: impl Fn(&Participant) -> bool) {
        let ids: Vec<_> = self
            .participants
            .values()
            .filter(|p| p.admitted() && to(p))
            .map(|p| p.id)
            .collect();
        for id in ids {
            self.send(id, event.clone());
        }
    }

    pub(super) fn send_all(&mut self, event: ServerEvent) {
        self.send_where(event, |_| true);
    }

    /// Who went on or off camera, to those who may know ([`Rules::hears_of_camera`]).
    pub(super) fn send_camera_news(&mut self, event: ServerEvent) {
        let told: Vec<_> = self
            .participants
            .values()
            .filter(|p| p.admitted() && self.hears_of_camera(p))
            .map(|p| p.id)
            .collect();
        for id in told {
            self.send(id, event.clone());
        }
    }

    pub(super) fn send_moderators(&mut self, area: Area, event: ServerEvent) {
        self.send_where(event, |p| p.identity.grants.moderates() && p.area() == area);
    }

    pub(super) fn send_hosts(&mut self, event: ServerEvent) {
        self.send_where(event, |p| p.identity.grants.host);
    }
}
