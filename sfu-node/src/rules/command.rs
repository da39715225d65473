//! Commands from a participant's room-events channel, routed to the rule they concern; a
//! refusal goes back to the sender.

use super::{ClientCommand, ParticipantId, Refusal, Rules, ServerEvent};

impl Rules {
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

    pub(super) fn dispatch(
        &mut self,
        from: ParticipantId,
        command: ClientCommand,
        at_ms: u64,
    ) -> Result<(), Refusal> {
        let actor = self.member(from)?;
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
}
