//! Why the room said no. Every refusal is a clear message a person can act on.

use serde::Serialize;

/// A rule the room enforced. `code()` is stable for clients and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Refusal {
    #[error("this room is full: {max} people are already watching")]
    RoomFull { max: u32 },
    #[error(
        "everyone who can be on camera already is ({max} of {max}); try again when someone leaves"
    )]
    CameraFull { max: u32 },
    #[error("your ticket does not let you into this room")]
    NotAllowed,
    #[error("only invited speakers can share audio and video here")]
    InviteOnly,
    #[error("ask a moderator first: request to share audio and video")]
    NeedsApproval,
    #[error("in a webinar only the hosts present; attendees watch and chat")]
    Webinar,
    #[error("the stage shows the backstage; attendees cannot share audio and video")]
    StageAudience,
    #[error("screen sharing is available while at most {max} speakers are on screen")]
    ScreenShareFull { max: u32 },
    #[error("go on camera before sharing your screen")]
    NotOnCamera,
    #[error("only moderators can do that")]
    NotModerator,
    #[error("only hosts can do that")]
    NotHost,
    #[error("no such participant in this room")]
    UnknownParticipant,
    #[error("this room no longer holds your connection: join again")]
    NotResumable,
    #[error("that person has not asked")]
    NoRequest,
    #[error("this room is locked: wait until a host lets you in")]
    WaitingForHost,
    #[error("a host declined your request to join")]
    JoinDenied,
    #[error("this room is closing and takes no new joins")]
    Draining,
    #[error("a chat message must have between 1 and {max} characters")]
    ChatLength { max: usize },
    #[error("you are already on camera")]
    AlreadyOnCamera,
    #[error("that person is not on camera")]
    TargetNotOnCamera,
    #[error("only a stage broadcasts its backstage")]
    NoStage,
    #[error("you are already in this room {max} times; close another tab or device first")]
    TooManyJoins { max: usize },
    #[error("you already asked to join: wait until a host lets you in")]
    AlreadyWaiting,
    #[error("too many people are waiting to join ({max}); try again in a minute")]
    LobbyFull { max: usize },
    #[error("you are sending messages too quickly; wait {wait_s} seconds")]
    ChatTooFast { wait_s: u64 },
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::RoomFull { .. } => "room_full",
            Refusal::CameraFull { .. } => "camera_full",
            Refusal::NotAllowed => "not_allowed",
            Refusal::InviteOnly => "invite_only",
            Refusal::NeedsApproval => "needs_approval",
            Refusal::Webinar => "webinar",
            Refusal::StageAudience => "stage_audience",
            Refusal::ScreenShareFull { .. } => "screen_share_full",
            Refusal::NotOnCamera => "not_on_camera",
            Refusal::NotModerator => "not_moderator",
            Refusal::NotHost => "not_host",
            Refusal::UnknownParticipant => "unknown_participant",
            Refusal::NotResumable => "not_resumable",
            Refusal::NoRequest => "no_request",
            Refusal::WaitingForHost => "waiting_for_host",
            Refusal::JoinDenied => "join_denied",
            Refusal::Draining => "draining",
            Refusal::ChatLength { .. } => "chat_length",
            Refusal::AlreadyOnCamera => "already_on_camera",
            Refusal::TargetNotOnCamera => "target_not_on_camera",
            Refusal::NoStage => "no_stage",
            Refusal::TooManyJoins { .. } => "too_many_joins",
            Refusal::AlreadyWaiting => "already_waiting",
            Refusal::LobbyFull { .. } => "lobby_full",
            Refusal::ChatTooFast { .. } => "chat_too_fast",
        }
    }
}
