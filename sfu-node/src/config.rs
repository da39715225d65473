//! What one sfu-node process serves: the room's identity, kind, policies and limits.
//!
//! The operator sets these through arguments or environment variables (see `main.rs`);
//! the local mode builds a [`RoomConfig`] directly.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The product's kinds of live room (PRODUCT.md §2, §4, §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomKind {
    /// A roundtable inside an event.
    Session,
    /// An event's stage together with its private backstage.
    Stage,
    /// A standalone meeting room.
    Room,
}

impl std::str::FromStr for RoomKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "session" => Ok(RoomKind::Session),
            "stage" => Ok(RoomKind::Stage),
            "room" => Ok(RoomKind::Room),
            other => Err(Error::Config(format!(
                "unknown room kind {other:?}: use session, stage or room"
            ))),
        }
    }
}

/// Who may go on camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharePolicy {
    /// Anyone who may watch may share.
    Open,
    /// Others ask; a moderator lets them on camera.
    Moderated,
    /// Only holders of the `share` grant (the listed people) may share.
    InviteOnly,
}

impl std::str::FromStr for SharePolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "open" => Ok(SharePolicy::Open),
            "moderated" => Ok(SharePolicy::Moderated),
            "invite_only" | "inviteonly" => Ok(SharePolicy::InviteOnly),
            other => Err(Error::Config(format!(
                "unknown share policy {other:?}: use open, moderated or invite-only"
            ))),
        }
    }
}

/// A room's theme (PRODUCT.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    Meeting,
    /// Attendees do not publish; only hosts (and holders of `share`) present.
    Webinar,
}

impl std::str::FromStr for Theme {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "meeting" => Ok(Theme::Meeting),
            "webinar" => Ok(Theme::Webinar),
            other => Err(Error::Config(format!(
                "unknown theme {other:?}: use meeting or webinar"
            ))),
        }
    }
}

/// The most people on camera in a session or room.
pub const MAX_ON_CAMERA: u32 = 20;
/// Watchers allowed while at most [`WIDE_WATCH_ON_CAMERA`] are on camera.
pub const MAX_WATCHERS_SMALL: u32 = 500;
/// Watchers allowed when on-camera is raised above [`WIDE_WATCH_ON_CAMERA`].
pub const MAX_WATCHERS_LARGE: u32 = 150;
/// The on-camera limit up to which 500 may watch.
pub const WIDE_WATCH_ON_CAMERA: u32 = 10;
/// Speakers on the backstage screen.
pub const BACKSTAGE_SPEAKERS: u32 = 5;
/// Screen sharing is offered while fewer speakers than this are on the backstage screen.
pub const SCREEN_SHARE_BELOW: u32 = 5;

/// Limits the room enforces, derived from its kind and configured on-camera maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub max_on_camera: u32,
    /// Watchers of the room, those served by relay pods included.
    pub max_watchers: u32,
    /// Watchers this pod sends media to itself: the product's per-pod cap at most.
    pub pod_watchers: u32,
}

impl Limits {
    /// Derive the limits; `max_watchers` may lower (never raise) the product's cap.
    pub fn new(kind: RoomKind, max_on_camera: u32, max_watchers: Option<u32>) -> Result<Self> {
        let (on_camera, cap) = match kind {
            RoomKind::Stage => (BACKSTAGE_SPEAKERS, MAX_WATCHERS_SMALL),
            RoomKind::Session | RoomKind::Room => {
                if !(1..=MAX_ON_CAMERA).contains(&max_on_camera) {
                    return Err(Error::Config(format!(
                        "max on camera must be between 1 and {MAX_ON_CAMERA}, got {max_on_camera}"
                    )));
                }
                let cap = if max_on_camera <= WIDE_WATCH_ON_CAMERA {
                    MAX_WATCHERS_SMALL
                } else {
                    MAX_WATCHERS_LARGE
                };
                (max_on_camera, cap)
            }
        };
        let max_watchers = match max_watchers {
            None => cap,
            Some(w) if w <= cap => w,
            Some(w) => {
                return Err(Error::Config(format!(
                    "max watchers {w} exceeds {cap}, the cap for {on_camera} on camera"
                )));
            }
        };
        Ok(Limits {
            max_on_camera: on_camera,
            max_watchers,
            pod_watchers: max_watchers,
        })
    }

    /// Limits of an origin whose watchers relay pods may serve: the room takes
    /// `room_watchers` (which may exceed one pod's cap), this pod itself serves at most the cap.
    pub fn relayed(kind: RoomKind, max_on_camera: u32, room_watchers: u32) -> Result<Self> {
        let pod = Limits::new(kind, max_on_camera, None)?;
        Ok(Limits {
            max_watchers: room_watchers,
            pod_watchers: pod.pod_watchers.min(room_watchers),
            ..pod
        })
    }
}

/// Everything the room rules need to know about the room.
#[derive(Debug, Clone, Serialize)]
pub struct RoomConfig {
    /// The room's identity; join tokens must name it.
    pub room: String,
    pub kind: RoomKind,
    pub share_policy: SharePolicy,
    pub theme: Theme,
    pub locked: bool,
    pub limits: Limits,
    /// Chat messages kept for late joiners.
    pub chat_history: usize,
    /// Which run of the room this is, told in every welcome: a page whose events socket
    /// dropped may resume its participant only in the same run (a replaced pod numbers its
    /// participants afresh). The server picks it at random when it starts.
    pub instance: u64,
}

impl RoomConfig {
    /// A room with the product's defaults: open, meeting theme, unlocked, 10 on camera.
    pub fn new(room: impl Into<String>, kind: RoomKind) -> Self {
        RoomConfig {
            room: room.into(),
            kind,
            share_policy: SharePolicy::Open,
            theme: Theme::Meeting,
            locked: false,
            limits: Limits::new(kind, 10, None).expect("default limits are valid"),
            chat_history: 100,
            instance: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watcher_cap_follows_on_camera_limit() {
        let l = Limits::new(RoomKind::Session, 10, None).unwrap();
        assert_eq!((l.max_on_camera, l.max_watchers), (10, 500));
        let l = Limits::new(RoomKind::Session, 11, None).unwrap();
        assert_eq!((l.max_on_camera, l.max_watchers), (11, 150));
        let l = Limits::new(RoomKind::Room, 20, None).unwrap();
        assert_eq!(l.max_watchers, 150);
        let l = Limits::new(RoomKind::Session, 1, Some(40)).unwrap();
        assert_eq!(l.max_watchers, 40);
    }

    #[test]
    fn a_relayed_room_takes_more_watchers_than_its_origin_serves_itself() {
        let l = Limits::relayed(RoomKind::Session, 10, 2000).unwrap();
        assert_eq!((l.max_watchers, l.pod_watchers), (2000, 500));
        let l = Limits::relayed(RoomKind::Session, 12, 600).unwrap();
        assert_eq!((l.max_watchers, l.pod_watchers), (600, 150));
        let l = Limits::relayed(RoomKind::Stage, 5, 80).unwrap();
        assert_eq!((l.max_watchers, l.pod_watchers), (80, 80));
        assert!(
            Limits::new(RoomKind::Session, 10, Some(2000)).is_err(),
            "not without relays"
        );
    }

    #[test]
    fn out_of_range_limits_are_refused_with_a_reason() {
        for bad in [0, 21] {
            let e = Limits::new(RoomKind::Session, bad, None).unwrap_err();
            assert!(e.to_string().contains("between 1 and 20"), "{e}");
        }
        let e = Limits::new(RoomKind::Session, 15, Some(200)).unwrap_err();
        assert!(e.to_string().contains("exceeds 150"), "{e}");
    }

    #[test]
    fn backstage_has_five_speakers_and_500_watchers() {
        let l = Limits::new(RoomKind::Stage, 10, None).unwrap();
        assert_eq!((l.max_on_camera, l.max_watchers), (5, 500));
    }

    #[test]
    fn policies_parse_from_operator_spelling() {
        assert_eq!(
            "invite-only".parse::<SharePolicy>().unwrap(),
            SharePolicy::InviteOnly
        );
        assert_eq!(
            "Moderated".parse::<SharePolicy>().unwrap(),
            SharePolicy::Moderated
        );
        assert_eq!("stage".parse::<RoomKind>().unwrap(), RoomKind::Stage);
        assert!("arena".parse::<RoomKind>().is_err());
    }
}
