//! Going on camera and sharing a screen: the room's share policy, what its kind and theme
//! allow, the on-camera limit, and leaving the screen.

use super::{
    Area, Participant, ParticipantId, ParticipantState, Refusal, Rules, RulesOutput, ServerEvent,
};
use crate::config::{RoomKind, SCREEN_SHARE_BELOW, SharePolicy, Theme};

impl Rules {
    /// Check whether `id` may go on camera right now without changing anything.
    pub fn check_on_camera(&self, id: ParticipantId) -> Result<(), Refusal> {
        let p = self.member(id)?;
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
        self.send_camera_news(ServerEvent::OnCamera { participant: info });
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
        self.send_camera_news(ServerEvent::OffCamera {
            participant: id,
            removed: false,
        });
        self.push_counts();
    }

    pub fn start_screen_share(&mut self, id: ParticipantId) -> Result<(), Refusal> {
        let on_camera = self.counts().on_camera;
        let stage = self.config.kind == RoomKind::Stage;
        let p = self.member_mut(id)?;
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

    pub(super) fn effective_policy(&self) -> SharePolicy {
        if self.config.kind == RoomKind::Stage {
            // Backstage: anyone with the link asks; organisers accept.
            SharePolicy::Moderated
        } else {
            self.config.share_policy
        }
    }

    /// Rules that no approval overrides.
    pub(super) fn may_share(&self, p: &Participant) -> Result<(), Refusal> {
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
}
