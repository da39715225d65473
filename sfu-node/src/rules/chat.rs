//! A bounded chat history per audience, so late joiners see the recent conversation.

use std::collections::VecDeque;

use serde::Serialize;

use super::ParticipantId;

pub const MAX_CHAT_CHARS: usize = 2000;

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
