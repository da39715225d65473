//! What the media core tells the room: peers connecting and closing, tracks placed in and
//! gone from a viewer's m-lines; and what the viewer's client is told of those.

use str0m::media::{MediaKind, Mid, Rid};

use super::{PeerId, PeerRole, Source};
use crate::rules::ServerEvent;
use crate::vocab::ParticipantId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    Connected {
        peer: PeerId,
        participant: ParticipantId,
    },
    Closed {
        peer: PeerId,
        participant: ParticipantId,
        role: PeerRole,
    },
    /// A viewer's `mid` now carries `publisher`'s track.
    Track {
        viewer: ParticipantId,
        mid: Mid,
        publisher: ParticipantId,
        kind: MediaKind,
        source: Source,
        /// For a relay's pinned slot: the one layer it carries (`Some(None)` without
        /// simulcast); `None` for a viewer, whose layer follows its bandwidth.
        rid: Option<Option<Rid>>,
    },
    TrackEnded {
        viewer: ParticipantId,
        mid: Mid,
    },
}

impl MediaEvent {
    /// What a viewer's (or relay's) client is told of this event: a track placed in, or gone
    /// from, one of its m-lines. `None` for what the room handles itself. (The rules'
    /// protocol speaks strings, not str0m's types.)
    pub fn to_viewer(&self) -> Option<(ParticipantId, ServerEvent)> {
        match *self {
            MediaEvent::Track {
                viewer,
                mid,
                publisher,
                kind,
                source,
                rid,
            } => Some((
                viewer,
                ServerEvent::Track {
                    mid: mid.to_string(),
                    participant: publisher,
                    kind: match kind {
                        MediaKind::Audio => "audio",
                        MediaKind::Video => "video",
                    }
                    .to_string(),
                    source: source.as_str().to_string(),
                    rid: rid.map(|r| r.map(|r| r.to_string())),
                },
            )),
            MediaEvent::TrackEnded { viewer, mid } => Some((
                viewer,
                ServerEvent::TrackEnded {
                    mid: mid.to_string(),
                },
            )),
            MediaEvent::Connected { .. } | MediaEvent::Closed { .. } => None,
        }
    }
}
