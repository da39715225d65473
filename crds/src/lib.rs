//! The `roundtable.dev/v1alpha1` API: the custom resources infrastructure teams declare.
//!
//! - [`LiveEvent`]: an event, with its ticket types, organisers and the defaults for the SFU pods
//!   it spawns.
//! - [`Session`]: a roundtable inside an event — a parallel live video room with its own rules for
//!   who goes on camera and who watches.
//! - [`Stage`]: the event's main stage with its private backstage.
//! - [`Room`]: a standalone meeting room owned by a host, at `/<host>/<slug>`.
//!
//! Sessions and stages scale their watchers out over relay pods ([`relays`]) through the
//! `scale` subresource (`spec.relays`, `status.relays`, `status.selector`).
//!
//! Every rule that concerns one object alone lives in the schema (bounds, enums and CEL
//! `x-kubernetes-validations`), so the API server refuses a bad spec with a message that says
//! what to fix; cross-object rules (a ticket type missing from the event) are the operator's.
//! The limits that the media server also enforces are plain functions in [`limits`], so the
//! schema, the operator and the SFU agree on one number.

#![forbid(unsafe_code)]
// kube-derive takes each printer column as its own `printcolumn(...)`; clippy reads repeated
// `type_ = "string"` inside them as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod common;
pub mod generate;
pub mod limits;
pub mod live_event;
pub mod live_room;
pub mod relays;
pub mod room;
pub mod session;
pub mod stage;

pub use common::{
    BandwidthEstimation, Lifecycle, MediaNetwork, MoveState, NetworkMode, Placement, PodMove,
    PodRestart, RecordingStorage, SfuPodSettings, SharePolicy, WatchPolicy,
};
pub use live_event::{LiveEvent, LiveEventPhase, LiveEventSpec, LiveEventStatus, TicketType};
pub use relays::{Autoscaling, RelayPod};
pub use room::{Room, RoomPhase, RoomSpec, RoomStatus, RoomTheme};
pub use session::{
    LivePhase, RecordingState, RecordingSummary, Session, SessionSpec, SessionStatus,
};
pub use stage::{Backstage, Stage, StageSpec, StageStatus};

/// The API group of every Roundtable kind.
pub const GROUP: &str = "roundtable.dev";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
