//! Roundtable's media server: one live room (session, stage or meeting room) per process.
//!
//! Layers, from pure to I/O:
//! - [`rules`]: the room's rules (roles, share policies, limits, moderation, chat, lobby,
//!   broadcast gate, drain) as a synchronous state machine with time passed in;
//! - [`media`]: a sans-IO SFU owning every `str0m::Rtc` of the room; packets and timeouts in,
//!   transmits and events out;
//! - [`room`]: both together — the one state machine the shell drives;
//! - [`server`] and friends: the thin tokio shell (UDP socket, axum signalling, admin port).
#![forbid(unsafe_code)]

pub mod config;
mod error;
pub mod media;
pub mod rules;

pub use config::{Limits, RoomConfig, RoomKind, SharePolicy, Theme};
pub use error::{Error, Result};
