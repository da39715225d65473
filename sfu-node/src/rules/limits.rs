//! How many may be in the room, and who may come in: the watcher limit (hosts, recorders
//! and relays excepted), joins per token subject, the lobby's size. (The on-camera limit is
//! checked where people go on camera, see [`super::camera`].)

use super::{Identity, ParticipantState, Refusal, Rules};

/// How many times one join token's subject (a person, or a guest's join) may be in the room
/// at once: a few tabs or devices. Recorders and relays are not limited.
pub const MAX_JOINS_PER_USER: usize = 4;

/// How many may wait in a locked room's lobby at once; every host is told of each.
pub const MAX_LOBBY: usize = 50;

impl Rules {
    /// Whether `identity` may come in now and, if so, whether it waits in the lobby. Refused:
    /// while draining, without a grant that enters, past [`MAX_JOINS_PER_USER`], a second
    /// wait in the lobby, a full lobby, a full room (hosts and hidden participants excepted).
    pub(super) fn admission(&self, identity: &Identity) -> Result<bool, Refusal> {
        if self.is_draining() {
            return Err(Refusal::Draining);
        }
        if !identity.grants.enters() {
            return Err(Refusal::NotAllowed);
        }
        let grants = identity.grants;
        let exempt = grants.host || grants.hidden();
        let same_user = || {
            self.participants
                .values()
                .filter(|p| p.identity.user == identity.user)
        };
        if !grants.hidden() && same_user().count() >= MAX_JOINS_PER_USER {
            return Err(Refusal::TooManyJoins {
                max: MAX_JOINS_PER_USER,
            });
        }
        let lobby = self.joins_lobby(identity);
        let waiting = self
            .participants
            .values()
            .filter(|p| p.state == ParticipantState::Lobby)
            .count();
        if lobby && same_user().any(|p| p.state == ParticipantState::Lobby) {
            return Err(Refusal::AlreadyWaiting);
        }
        if lobby && waiting >= MAX_LOBBY {
            return Err(Refusal::LobbyFull { max: MAX_LOBBY });
        }
        let occupied = self.counts().watching as usize + waiting;
        if !exempt && occupied >= self.config.limits.max_watchers as usize {
            return Err(Refusal::RoomFull {
                max: self.config.limits.max_watchers,
            });
        }
        Ok(lobby)
    }
}
