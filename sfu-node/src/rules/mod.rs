//! The room's rules as a plain synchronous state machine: who is in, who may be on camera,
//! limits, moderation, chat, the locked-room lobby, the stage's broadcast gate and draining.
//!
//! Model: every call is an input (`join`, `command`, `go_on_camera`, `leave`, `handle_timeout`)
//! with `now` passed in; what the room wants done comes out of [`Rules::poll_output`] as
//! messages for one participant or effects on media. No I/O, no clock, no str0m.
//!
//! Invariants:
//! - at most `limits.max_on_camera` participants are [`ParticipantState::OnCamera`];
//! - a join is refused once `limits.max_watchers` are watching or waiting in the lobby (hosts,
//!   recorders and relays excepted);
//! - one join token's subject is in the room at most [`MAX_JOINS_PER_USER`] times at once, and
//!   waits in a locked room's lobby at most once; the lobby holds at most [`MAX_LOBBY`];
//! - a participant chats at most [`CHAT_BURST`] messages per [`CHAT_WINDOW_MS`];
//! - counts are pushed to every admitted participant exactly when they change;
//! - a participant taken off camera yields [`RulesOutput::StopMedia`] in the same call.
//!
//! Where things are: [`Rules`] itself is here; `roster` who is in (joining, leaving, counts);
//! `limits` who may come in; `lobby` a locked room's lobby; `camera` going on camera and
//! screen sharing; `moderation` share requests and removals; `chat`; `stage` the broadcast
//! gate; `drain` shutting down; `command` routing clients' commands; `output` what comes
//! out and to whom; `protocol` the messages on the wire; `identity`, `refusal` and
//! `attendance` the vocabulary of all of these. The rules never see the media core: the
//! words both share are in [`crate::vocab`].

mod attendance;
mod camera;
mod chat;
mod command;
mod drain;
mod identity;
mod limits;
mod lobby;
mod moderation;
mod output;
mod protocol;
mod refusal;
mod roster;
mod stage;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

pub use attendance::{Attendance, AttendanceLog};
pub use chat::{CHAT_BURST, CHAT_WINDOW_MS, ChatHistory, ChatMessage, ChatPace, MAX_CHAT_CHARS};
pub use identity::{Grants, Identity, Profile};
pub use limits::{MAX_JOINS_PER_USER, MAX_LOBBY};
pub use output::RulesOutput;
pub use protocol::{ClientCommand, ParticipantInfo, ServerEvent};
pub use refusal::Refusal;
pub use roster::{Counts, Participant, ParticipantState};

pub use crate::vocab::ParticipantId;

use crate::config::RoomConfig;
use roster::Area;

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

    /// Peak counts and unique joiners since the room started.
    pub fn attendance(&self) -> Attendance {
        self.attendance.summary()
    }

    pub fn poll_output(&mut self) -> Option<RulesOutput> {
        self.out.pop_front()
    }
}
