//! A locked room's lobby: who waits in it, hosts admitting or turning joiners away, locking
//! and unlocking.

use super::{Identity, ParticipantId, ParticipantState, Refusal, Rules, RulesOutput, ServerEvent};

impl Rules {
    /// Whether a join by `identity` would wait in the lobby of a locked room.
    pub fn joins_lobby(&self, identity: &Identity) -> bool {
        self.config.locked && !identity.grants.host && !identity.grants.hidden()
    }

    pub(super) fn resolve_join(
        &mut self,
        host: ParticipantId,
        target: ParticipantId,
        accept: bool,
    ) -> Result<(), Refusal> {
        let h = self.member(host)?;
        if !h.identity.grants.host {
            return Err(Refusal::NotHost);
        }
        let p = self.member(target)?;
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

    pub(super) fn lock(&mut self, host: ParticipantId, locked: bool) -> Result<(), Refusal> {
        if !self.participants[&host].identity.grants.host {
            return Err(Refusal::NotHost);
        }
        if self.config.locked != locked {
            self.config.locked = locked;
            self.send_all(ServerEvent::Locked { locked });
        }
        Ok(())
    }
}
