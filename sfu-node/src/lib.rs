//! Roundtable's media server: one live room (session, stage or meeting room) per process.
//!
//! Layers, from pure to I/O:
//! - [`vocab`]: the words both halves share (participant ids, camera or screen);
//! - [`rules`]: the room's rules (roles, share policies, limits, moderation, chat, lobby,
//!   broadcast gate, drain) as a synchronous state machine with time passed in;
//! - [`media`]: a sans-IO SFU owning every `str0m::Rtc` of the room; datagrams and timeouts
//!   in, datagrams and events out;
//! - [`room`]: both together, the one state machine the shell drives;
//! - [`shell`], [`send_batch`], [`ice_tcp`], [`http`], [`admin`], [`server`]: the thin tokio
//!   shell — the UDP socket (sends batched with `sendmmsg`), ICE-TCP on the same port for
//!   attendees without UDP, WHIP/WHEP signalling and the events WebSocket, the admin port,
//!   draining.
//!
//! [`relay`] is relay mode (`--origin`): the same binary serving a room's watchers from
//! another sfu-node, the room's origin.
//!
//! Join tokens are described in [`auth`]. [`recorder`] is the session recorder (its own
//! binary, `roundtable-recorder`), a hidden participant of a room.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod client;
pub mod config;
mod error;
pub mod http;
pub mod ice_tcp;
pub mod media;
pub mod metrics;
pub mod publisher;
pub mod recorder;
pub mod rejection;
pub mod relay;
pub mod room;
pub mod rules;
pub mod send_batch;
pub mod server;
pub mod shell;
pub mod vocab;

pub use config::{Limits, RoomConfig, RoomKind, SharePolicy, Theme};
pub use error::{Error, Result};
