//! Chat: a bounded history per audience, so late joiners see the recent conversation; the
//! pace one participant may chat at; and the room taking a message ([`Rules::chat`]).

use std::collections::VecDeque;

use serde::Serialize;

use super::{ParticipantId, Refusal, Rules, ServerEvent};

pub const MAX_CHAT_CHARS: usize = 2000;

/// Messages one participant may send in [`CHAT_WINDOW_MS`]: a person typing quickly stays far
/// below it; a script flooding everyone's sockets does not.
pub const CHAT_BURST: usize = 5;
pub const CHAT_WINDOW_MS: u64 = 5_000;

/// One participant's recent messages, for the chat pace ([`CHAT_BURST`] per
/// [`CHAT_WINDOW_MS`], sliding).
#[derive(Debug, Clone, Default)]
pub struct ChatPace {
    sent: VecDeque<u64>,
}

impl ChatPace {
    /// Counts a message at `at_ms` (milliseconds, any epoch); Err(ms to wait) when the window
    /// is full (the refused message is not counted).
    pub fn allow(&mut self, at_ms: u64) -> Result<(), u64> {
        while self
            .sent
            .front()
            .is_some_and(|t| at_ms.saturating_sub(*t) >= CHAT_WINDOW_MS)
        {
            self.sent.pop_front();
        }
        if self.sent.len() >= CHAT_BURST {
            let oldest = self.sent.front().copied().unwrap_or(at_ms);
            return Err((oldest + CHAT_WINDOW_MS).saturating_sub(at_ms).max(1));
        }
        self.sent.push_back(at_ms);
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub seq: u64,
    pub from: ParticipantId,
    pub name: String,
    pub text: String,
    /// Unix milliseconds when the room accepted the message.
    pub at_ms: u64,
}

#[derive(Debug)]
pub struct ChatHistory {
    capacity: usize,
    messages: VecDeque<ChatMessage>,
}

impl ChatHistory {
    pub fn new(capacity: usize) -> Self {
        ChatHistory {
            capacity,
            messages: VecDeque::with_capacity(capacity.min(1024)),
        }
    }

    pub fn push(&mut self, message: ChatMessage) {
        if self.capacity == 0 {
            return;
        }
        if self.messages.len() == self.capacity {
            self.messages.pop_front();
        }
        self.messages.push_back(message);
    }

    pub fn recent(&self) -> Vec<ChatMessage> {
        self.messages.iter().cloned().collect()
    }
}

impl Rules {
    /// A message from `from` (at most [`MAX_CHAT_CHARS`], at the pace [`ChatPace`] allows),
    /// numbered, kept in its audience's history and sent to everyone admitted there.
    pub(super) fn chat(
        &mut self,
        from: ParticipantId,
        text: String,
        at_ms: u64,
    ) -> Result<(), Refusal> {
        let trimmed = text.trim();
        let chars = trimmed.chars().count();
        if chars == 0 || chars > MAX_CHAT_CHARS {
            return Err(Refusal::ChatLength {
                max: MAX_CHAT_CHARS,
            });
        }
        let p = self.participants.get_mut(&from).expect("dispatch checked");
        p.chat_pace
            .allow(at_ms)
            .map_err(|wait_ms| Refusal::ChatTooFast {
                wait_s: wait_ms.div_ceil(1000),
            })?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sixth_message_within_five_seconds_waits() {
        let mut pace = ChatPace::default();
        for i in 0..CHAT_BURST as u64 {
            assert_eq!(pace.allow(1_000 + i * 100), Ok(()));
        }
        assert_eq!(pace.allow(2_000), Err(4_000));
        assert_eq!(pace.allow(6_000), Ok(()), "the first one left the window");
        assert!(pace.allow(6_050).is_err());
    }
}
