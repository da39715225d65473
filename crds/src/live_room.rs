//! One view of the three kinds that get an SFU pod: sessions, stages and rooms.
//!
//! The operator's planning and the control plane both work on [`LiveRoom`], so sizing, pods,
//! status and who may join are decided once for every kind.

use jiff::Timestamp;

use crate::{
    Lifecycle, LiveEvent, Room, RoomTheme, Session, SfuPodSettings, SharePolicy, Stage, limits,
};

/// The times that decide a room's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub lifecycle: Lifecycle,
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    /// The end of the event the room belongs to, if known.
    pub event_end: Option<Timestamp>,
}

/// The kinds of live room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Session,
    Stage,
    Room,
}

impl Kind {
    /// Lower-case name, as used in labels, pod names and sfu-node's `--kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Session => "session",
            Kind::Stage => "stage",
            Kind::Room => "room",
        }
    }
}

/// What the planning code needs to know about one session, stage or room.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRoom {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    /// The LiveEvent it belongs to (sessions and stages).
    pub event: Option<String>,
    /// Schedule of sessions and stages; rooms run on demand and have none.
    pub lifecycle: Lifecycle,
    pub start: Option<jiff::Timestamp>,
    pub end: Option<jiff::Timestamp>,
    pub max_on_camera: i32,
    pub max_watchers: i32,
    pub share_policy: SharePolicy,
    pub theme: RoomTheme,
    pub locked: bool,
    /// Pod settings of a room itself (sessions and stages take their event's).
    pub own_settings: Option<SfuPodSettings>,
}

impl LiveRoom {
    /// The identity of the room that join tokens name and signalling URLs carry
    /// (`/rooms/<id>/whip`): `<kind>:<namespace>:<name>`, one URL path segment.
    pub fn room_id(&self) -> String {
        format!("{}:{}:{}", self.kind.as_str(), self.namespace, self.name)
    }

    /// The schedule window, with the event's end as the fallback end.
    pub fn window(&self, event: Option<&LiveEvent>) -> Window {
        Window {
            lifecycle: self.lifecycle,
            start: self.start,
            end: self.end,
            event_end: event.map(|e| e.spec.end.0),
        }
    }

    /// The SFU pod settings in force: the room's own, else its event's.
    pub fn settings(&self, event: Option<&LiveEvent>) -> SfuPodSettings {
        self.own_settings
            .clone()
            .or_else(|| event.and_then(|e| e.spec.sfu.clone()))
            .unwrap_or_default()
    }
}

fn namespace_and_name(meta: &kube::api::ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

impl From<&Session> for LiveRoom {
    fn from(session: &Session) -> Self {
        let (namespace, name) = namespace_and_name(&session.metadata);
        let spec = &session.spec;
        LiveRoom {
            kind: Kind::Session,
            namespace,
            name,
            event: Some(spec.event.clone()),
            lifecycle: spec.lifecycle,
            start: spec.start.as_ref().map(|t| t.0),
            end: spec.end.as_ref().map(|t| t.0),
            max_on_camera: spec.max_participants,
            max_watchers: spec.effective_watchers(),
            share_policy: spec.share.policy,
            theme: RoomTheme::Meeting,
            locked: false,
            own_settings: None,
        }
    }
}

impl From<&Stage> for LiveRoom {
    fn from(stage: &Stage) -> Self {
        let (namespace, name) = namespace_and_name(&stage.metadata);
        let spec = &stage.spec;
        LiveRoom {
            kind: Kind::Stage,
            namespace,
            name,
            event: Some(spec.event.clone()),
            lifecycle: spec.lifecycle,
            start: spec.start.as_ref().map(|t| t.0),
            end: spec.end.as_ref().map(|t| t.0),
            max_on_camera: spec.backstage.max_speakers,
            max_watchers: stage.spec.effective_watchers(),
            // Backstage: registered people ask to share; an organiser accepts.
            share_policy: SharePolicy::Moderated,
            theme: RoomTheme::Meeting,
            locked: false,
            own_settings: None,
        }
    }
}

impl From<&Room> for LiveRoom {
    fn from(room: &Room) -> Self {
        let (namespace, name) = namespace_and_name(&room.metadata);
        let spec = &room.spec;
        LiveRoom {
            kind: Kind::Room,
            namespace,
            name,
            event: None,
            lifecycle: Lifecycle::Started,
            start: None,
            end: None,
            max_on_camera: spec.max_participants,
            max_watchers: limits::effective_watchers(spec.max_participants, spec.max_watchers),
            share_policy: SharePolicy::Open,
            theme: spec.theme,
            locked: spec.locked,
            own_settings: spec.sfu.clone(),
        }
    }
}
