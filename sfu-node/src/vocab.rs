//! Words both halves of the room speak: who a participant is ([`ParticipantId`]) and what a
//! publisher sends ([`Source`]).
//!
//! The rules ([`crate::rules`]) and the media core ([`crate::media`]) both use them; keeping
//! them here lets the rules stay free of the media core: `media` may use `rules` (and both
//! use `vocab`), `rules` never uses `media`. Both modules re-export what they use, so
//! `rules::ParticipantId` and `media::Source` keep working.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A participant's id within this room process (one per join, not per user).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ParticipantId(pub u64);

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// What a publisher sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Camera,
    Screen,
}

impl Source {
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Camera => "camera",
            Source::Screen => "screen",
        }
    }
}
