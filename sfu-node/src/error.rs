//! The crate's one error type.

use crate::rules::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("join token: {0}")]
    Token(String),
    #[error("join token is for room {token_room:?}, this is {room:?}")]
    WrongRoom { token_room: String, room: String },
    #[error("SDP: {0}")]
    Sdp(String),
    #[error("WebRTC: {0}")]
    Rtc(#[from] str0m::RtcError),
    #[error("no such peer connection")]
    UnknownPeer,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("the room task has stopped")]
    RoomGone,
    #[error("recorder: {0}")]
    Recorder(String),
    #[error("this is a relay: publish to the room's origin")]
    PublishAtOrigin,
    #[error("origin: {0}")]
    Origin(String),
}

impl Error {
    /// A short label per variant, for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Refused(r) => r.code(),
            Error::Token(_) => "token",
            Error::WrongRoom { .. } => "wrong_room",
            Error::Sdp(_) => "sdp",
            Error::Rtc(_) => "rtc",
            Error::UnknownPeer => "unknown_peer",
            Error::Io(_) => "io",
            Error::RoomGone => "room_gone",
            Error::Recorder(_) => "recorder",
            Error::PublishAtOrigin => "publish_at_origin",
            Error::Origin(_) => "origin",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
