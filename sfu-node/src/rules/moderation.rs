//! Moderation: requests to share audio and video, reaching the moderators of the
//! requester's audience; approving, denying, withdrawing; taking someone off camera.

use super::{
    Participant, ParticipantId, ParticipantState, Refusal, Rules, RulesOutput, ServerEvent,
};

impl Rules {
    pub(super) fn request_share(&mut self, id: ParticipantId) -> Result<(), Refusal> {
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

    pub(super) fn withdraw_request(&mut self, id: ParticipantId) -> Result<(), Refusal> {
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

    pub(super) fn moderator(&self, id: ParticipantId) -> Result<&Participant, Refusal> {
        let p = self.member(id)?;
        if !p.identity.grants.moderates() {
            return Err(Refusal::NotModerator);
        }
        Ok(p)
    }

    pub(super) fn resolve_share(
        &mut self,
        moderator: ParticipantId,
        target: ParticipantId,
        approve: bool,
    ) -> Result<(), Refusal> {
        self.moderator(moderator)?;
        let p = self.member(target)?;
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

    pub(super) fn remove_from_camera(
        &mut self,
        moderator: ParticipantId,
        target: ParticipantId,
    ) -> Result<(), Refusal> {
        self.moderator(moderator)?;
        let p = self.member_mut(target)?;
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
        self.send_camera_news(ServerEvent::OffCamera {
            participant: target,
            removed: true,
        });
        Ok(())
    }
}
