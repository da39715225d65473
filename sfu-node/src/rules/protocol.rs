//! The JSON messages on a participant's room-events WebSocket.
//!
//! Clients send [`ClientCommand`]s; the room sends [`ServerEvent`]s. Both are tagged by `type`.

use serde::{Deserialize, Serialize};

use super::chat::ChatMessage;
use super::identity::Profile;
use super::{Counts, ParticipantId, ParticipantState};
use crate::config::{RoomKind, SharePolicy, Theme};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientCommand {
    /// "Request to share audio and video" (or, where allowed, just ask to go on camera).
    RequestShare,
    WithdrawRequest,
    ApproveShare {
        participant: ParticipantId,
    },
    DenyShare {
        participant: ParticipantId,
    },
    RemoveFromCamera {
        participant: ParticipantId,
    },
    /// Leave the screen voluntarily; keep watching.
    StopCamera,
    /// A host lets a joiner into a locked room.
    Admit {
        participant: ParticipantId,
    },
    /// A host turns a joiner of a locked room away.
    Deny {
        participant: ParticipantId,
    },
    Lock {
        locked: bool,
    },
    Chat {
        text: String,
    },
    /// Stage only: start or stop showing the backstage to the audience.
    Broadcast {
        live: bool,
    },
    /// How big the client shows the video in `mid`, so the room picks a fitting layer.
    View {
        mid: String,
        width: u32,
        height: u32,
    },
}

/// A participant as others see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    pub id: ParticipantId,
    pub profile: Profile,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerEvent {
    /// Sent once a participant is in (at once, or when a host admits them).
    Welcome {
        you: ParticipantId,
        room: String,
        /// The room's run ([`crate::config::RoomConfig::instance`]), with `you` what an events
        /// socket needs to resume this participant.
        instance: u64,
        kind: RoomKind,
        share_policy: SharePolicy,
        theme: Theme,
        locked: bool,
        state: ParticipantState,
        counts: Counts,
        on_camera: Vec<ParticipantInfo>,
        chat: Vec<ChatMessage>,
        broadcasting: bool,
        /// Pending "request to share" for moderators.
        share_requests: Vec<ParticipantInfo>,
        /// Pending "ask to join" for hosts.
        join_requests: Vec<ParticipantInfo>,
    },
    /// The room is locked; a host has been asked.
    Waiting {
        message: String,
    },
    Counts(Counts),
    ShareRequested {
        participant: ParticipantInfo,
    },
    /// A request was approved, denied or withdrawn; moderators clear it from their panel.
    ShareRequestResolved {
        participant: ParticipantId,
        approved: bool,
    },
    /// You may go on camera now.
    ShareApproved,
    ShareDenied,
    OnCamera {
        participant: ParticipantInfo,
    },
    OffCamera {
        participant: ParticipantId,
        removed: bool,
    },
    /// A moderator took you off camera; your tracks have stopped.
    RemovedFromCamera,
    JoinRequested {
        participant: ParticipantInfo,
    },
    JoinResolved {
        participant: ParticipantId,
        accepted: bool,
    },
    Chat(ChatMessage),
    Broadcast {
        live: bool,
    },
    Locked {
        locked: bool,
    },
    /// The room stops taking joins; it closes after `grace_ms`.
    Draining {
        grace_ms: u64,
    },
    /// A command was refused; `message` is for people.
    Refused {
        code: String,
        message: String,
    },
    /// Media in a viewer's `mid` now carries `participant`'s `kind` track.
    Track {
        mid: String,
        participant: ParticipantId,
        kind: String,
        source: String,
        /// To a relay only: the one layer this slot carries (`null` without simulcast).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<Option<String>>,
    },
    /// Nothing flows in `mid` any more.
    TrackEnded {
        mid: String,
    },
    /// From a relay leaving the room's pool: join again (through the control plane), which
    /// picks another relay.
    Reconnect {
        reason: String,
    },
}
