//! The local mode's catalog: the manifests from disk, what people changed in the UI on top of
//! them, and the live status the local runner reports — the same view the control plane gets
//! from Kubernetes in a cluster.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use roundtable_crds::{
    LiveEvent, LiveEventPhase, LiveEventStatus, LivePhase, Room, RoomPhase, RoomStatus, Session,
    SessionStatus, Stage, StageStatus,
};
use tokio::sync::Notify;

use crate::catalog::{Catalog, CatalogError, Change, JOIN_REQUESTED};
use crate::manifests::Manifests;

type Key = (String, String);

fn key_of<K: kube::Resource>(k: &K) -> Key {
    (
        k.meta().namespace.clone().unwrap_or_default(),
        k.meta().name.clone().unwrap_or_default(),
    )
}

/// What the runner observed of one live room.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub phase: Option<LivePhase>,
    pub room_phase: Option<RoomPhase>,
    pub endpoint: Option<String>,
    pub watching: i32,
    pub on_camera: i32,
    pub peak_watching: i32,
    pub peak_on_camera: i32,
    pub unique_joiners: Option<i32>,
    pub broadcasting: bool,
    pub started_at: Option<jiff::Timestamp>,
    pub last_active: Option<jiff::Timestamp>,
    /// What the session's recorder reports.
    pub recordings: Vec<roundtable_crds::RecordingSummary>,
    /// Relays of a session or stage that are ready, and each relay with its endpoint and
    /// watchers, as the operator reports relay pods.
    pub relays: i32,
    pub relay_pods: Vec<roundtable_crds::RelayPod>,
    /// Watchers one relay takes.
    pub watchers_per_pod: Option<i32>,
}

/// Changes made in the UI, kept on top of the manifests (until the process ends).
#[derive(Debug, Default)]
struct Overlay {
    created: Vec<Session>,
    started: HashSet<Key>,
    deleted: HashSet<Key>,
    broadcasting: HashMap<Key, bool>,
    stage_lifecycle: HashMap<Key, roundtable_crds::Lifecycle>,
    locked: HashMap<Key, bool>,
    wake: HashMap<Key, jiff::Timestamp>,
    /// Rooms made on dashboards (kept in the store by the control plane, handed back here
    /// at start-up), and their passcodes by room.
    kept_rooms: Vec<Room>,
    passcodes: HashMap<Key, String>,
}

#[derive(Debug, Default)]
struct State {
    manifests: Manifests,
    overlay: Overlay,
    /// By `kind:namespace:name` (the SFU room id).
    observed: HashMap<String, Observed>,
    /// When the runner last looked (events' phases follow it).
    now: jiff::Timestamp,
    views: Views,
}

impl State {
    fn events_phase_at(&self, now: jiff::Timestamp) -> Vec<LiveEventPhase> {
        self.manifests
            .events
            .iter()
            .map(|e| event_phase(e, now))
            .collect()
    }
}

/// An event's phase at `now`, from its start and end.
fn event_phase(event: &LiveEvent, now: jiff::Timestamp) -> LiveEventPhase {
    if now < event.spec.start.0 {
        LiveEventPhase::Upcoming
    } else if now < event.spec.end.0 {
        LiveEventPhase::Live
    } else {
        LiveEventPhase::Ended
    }
}

#[derive(Debug, Default, Clone)]
struct Views {
    events: Vec<Arc<LiveEvent>>,
    sessions: Vec<Arc<Session>>,
    stages: Vec<Arc<Stage>>,
    rooms: Vec<Arc<Room>>,
}

/// The local catalog; the runner is woken through [`LocalCatalog::changed`].
#[derive(Debug, Default)]
pub struct LocalCatalog {
    state: RwLock<State>,
    /// Notified when something people did needs the runner (a Start, a room wanted).
    pub changed: Notify,
}

fn time(t: Option<jiff::Timestamp>) -> Option<Time> {
    t.map(Time)
}

impl LocalCatalog {
    /// The catalog of `manifests` as seen at `now` (the events' phases).
    pub fn new(manifests: Manifests, now: jiff::Timestamp) -> Self {
        let catalog = LocalCatalog::default();
        catalog.state.write().expect("catalog lock").now = now;
        catalog.replace_manifests(manifests);
        catalog
    }

    /// New manifests from disk (UI changes stay on top).
    pub fn replace_manifests(&self, manifests: Manifests) {
        let mut state = self.state.write().expect("catalog lock");
        state.manifests = manifests;
        rebuild(&mut state);
    }

    /// What the runner saw at `now`, by room id; rooms not listed have no SFU running.
    pub fn set_observed(&self, observed: HashMap<String, Observed>, now: jiff::Timestamp) {
        let mut state = self.state.write().expect("catalog lock");
        let phases_may_change = state.events_phase_at(now) != state.events_phase_at(state.now);
        state.now = now;
        if state.observed != observed || phases_may_change {
            state.observed = observed;
            rebuild(&mut state);
        }
    }

    /// When someone last asked to join each room.
    pub fn wake_requests(&self) -> HashMap<Key, jiff::Timestamp> {
        self.state
            .read()
            .expect("catalog lock")
            .overlay
            .wake
            .clone()
    }

    fn update(
        &self,
        f: impl FnOnce(&mut State) -> Result<(), CatalogError>,
    ) -> Result<(), CatalogError> {
        let mut state = self.state.write().expect("catalog lock");
        f(&mut state)?;
        rebuild(&mut state);
        drop(state);
        self.changed.notify_one();
        Ok(())
    }

    fn secret_value(&self, namespace: &str, name: &str, key: &str) -> Option<String> {
        let state = self.state.read().expect("catalog lock");
        let kept = state.overlay.kept_rooms.iter().find(|r| {
            r.metadata.namespace.as_deref() == Some(namespace)
                && crate::catalog::passcode_secret(r.metadata.name.as_deref().unwrap_or_default())
                    == name
        });
        if let Some(room) = kept
            && key == crate::catalog::PASSCODE_KEY
        {
            return state.overlay.passcodes.get(&key_of(room)).cloned();
        }
        state
            .manifests
            .secrets
            .get(&format!("{namespace}/{name}"))
            .and_then(|d| d.get(key))
            .map(|v| v.trim_end().to_string())
    }
}

fn room_id(kind: &str, key: &Key) -> String {
    format!("{kind}:{}:{}", key.0, key.1)
}

/// Applies the overlay and the observations to the manifests.
fn rebuild(state: &mut State) {
    let o = &state.overlay;
    let observed = &state.observed;
    let mut sessions: Vec<Session> = state
        .manifests
        .sessions
        .iter()
        .chain(o.created.iter())
        .filter(|s| !o.deleted.contains(&key_of(*s)))
        .cloned()
        .collect();
    for s in &mut sessions {
        let key = key_of(s);
        if o.started.contains(&key) {
            s.spec.lifecycle = roundtable_crds::Lifecycle::Started;
        }
        let seen = observed
            .get(&room_id("session", &key))
            .cloned()
            .unwrap_or_default();
        let mut status = SessionStatus {
            phase: Some(seen.phase.unwrap_or(LivePhase::Scheduled)),
            observed_generation: s.metadata.generation,
            endpoint: seen.endpoint,
            on_camera: Some(seen.on_camera),
            watching: Some(seen.watching),
            peak_on_camera: Some(seen.peak_on_camera),
            peak_watching: Some(seen.peak_watching),
            unique_joiners: seen.unique_joiners,
            started_at: time(seen.started_at),
            recordings: seen.recordings,
            relays: Some(seen.relays),
            relay_pods: seen.relay_pods,
            watchers_per_pod: seen.watchers_per_pod,
            ..SessionStatus::default()
        };
        if status.recordings.is_empty()
            && let Some(old) = &s.status
        {
            status.recordings = old.recordings.clone();
        }
        s.status = Some(status);
    }
    let mut stages = state.manifests.stages.clone();
    for s in &mut stages {
        let key = key_of(s);
        if let Some(on) = o.broadcasting.get(&key) {
            s.spec.broadcasting = *on;
        }
        if let Some(lifecycle) = o.stage_lifecycle.get(&key) {
            s.spec.lifecycle = *lifecycle;
        }
        let seen = observed
            .get(&room_id("stage", &key))
            .cloned()
            .unwrap_or_default();
        s.status = Some(StageStatus {
            phase: Some(seen.phase.unwrap_or(LivePhase::Scheduled)),
            observed_generation: s.metadata.generation,
            live: Some(seen.broadcasting),
            endpoint: seen.endpoint,
            on_camera: Some(seen.on_camera),
            watching: Some(seen.watching),
            peak_watching: Some(seen.peak_watching),
            relays: Some(seen.relays),
            relay_pods: seen.relay_pods,
            watchers_per_pod: seen.watchers_per_pod,
            ..StageStatus::default()
        });
    }
    let mut rooms = state.manifests.rooms.clone();
    rooms.extend(o.kept_rooms.iter().cloned());
    for r in &mut rooms {
        let key = key_of(r);
        if let Some(locked) = o.locked.get(&key) {
            r.spec.locked = *locked;
        }
        if let Some(at) = o.wake.get(&key) {
            r.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(JOIN_REQUESTED.into(), at.to_string());
        }
        let seen = observed
            .get(&room_id("room", &key))
            .cloned()
            .unwrap_or_default();
        r.status = Some(RoomStatus {
            phase: Some(seen.room_phase.unwrap_or(RoomPhase::Idle)),
            observed_generation: r.metadata.generation,
            path: Some(format!("/{}/{}", r.spec.host, r.spec.slug)),
            endpoint: seen.endpoint,
            on_camera: Some(seen.on_camera),
            watching: Some(seen.watching),
            last_active: time(seen.last_active),
            ..RoomStatus::default()
        });
    }
    let now = state.now;
    let mut events = state.manifests.events.clone();
    for e in &mut events {
        let (ns, name) = key_of(e);
        let mine: Vec<&Session> = sessions
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(&ns) && s.spec.event == name)
            .collect();
        let live = mine
            .iter()
            .filter(|s| s.status.as_ref().and_then(|st| st.phase) == Some(LivePhase::Live))
            .count();
        let phase = event_phase(e, now);
        e.status = Some(LiveEventStatus {
            phase: Some(phase),
            observed_generation: e.metadata.generation,
            sessions: Some(mine.len() as i32),
            sessions_live: Some(live as i32),
            watching: Some(
                mine.iter()
                    .filter_map(|s| s.status.as_ref()?.watching)
                    .sum(),
            ),
            on_camera: Some(
                mine.iter()
                    .filter_map(|s| s.status.as_ref()?.on_camera)
                    .sum(),
            ),
            ..LiveEventStatus::default()
        });
    }
    state.views = Views {
        events: events.into_iter().map(Arc::new).collect(),
        sessions: sessions.into_iter().map(Arc::new).collect(),
        stages: stages.into_iter().map(Arc::new).collect(),
        rooms: rooms.into_iter().map(Arc::new).collect(),
    };
}

impl Catalog for LocalCatalog {
    fn events(&self) -> Vec<Arc<LiveEvent>> {
        self.state
            .read()
            .expect("catalog lock")
            .views
            .events
            .clone()
    }
    fn sessions(&self) -> Vec<Arc<Session>> {
        self.state
            .read()
            .expect("catalog lock")
            .views
            .sessions
            .clone()
    }
    fn stages(&self) -> Vec<Arc<Stage>> {
        self.state
            .read()
            .expect("catalog lock")
            .views
            .stages
            .clone()
    }
    fn rooms(&self) -> Vec<Arc<Room>> {
        self.state.read().expect("catalog lock").views.rooms.clone()
    }

    fn secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, CatalogError>> {
        let value = self.secret_value(namespace, name, key);
        Box::pin(async move { Ok(value) })
    }

    fn change(&self, change: Change) -> BoxFuture<'_, Result<(), CatalogError>> {
        let result = self.update(|state| {
            let exists = |kind: &str, key: &Key| -> bool {
                match kind {
                    "session" => state.views.sessions.iter().any(|s| key_of(&**s) == *key),
                    "stage" => state.views.stages.iter().any(|s| key_of(&**s) == *key),
                    _ => state.views.rooms.iter().any(|s| key_of(&**s) == *key),
                }
            };
            match change {
                Change::CreateSession(session) => {
                    let key = key_of(&*session);
                    if exists("session", &key) {
                        return Err(CatalogError::Conflict);
                    }
                    state.overlay.deleted.remove(&key);
                    state.overlay.created.push(*session);
                }
                Change::StartSession { namespace, name } => {
                    let key = (namespace, name);
                    if !exists("session", &key) {
                        return Err(CatalogError::NotFound);
                    }
                    state.overlay.started.insert(key);
                }
                Change::DeleteSession { namespace, name } => {
                    let key = (namespace, name);
                    if !exists("session", &key) {
                        return Err(CatalogError::NotFound);
                    }
                    state.overlay.created.retain(|s| key_of(s) != key);
                    state.overlay.deleted.insert(key);
                }
                Change::Broadcast {
                    namespace,
                    name,
                    on,
                } => {
                    let key = (namespace, name);
                    if !exists("stage", &key) {
                        return Err(CatalogError::NotFound);
                    }
                    state.overlay.broadcasting.insert(key, on);
                }
                Change::StageLifecycle {
                    namespace,
                    name,
                    lifecycle,
                } => {
                    let key = (namespace, name);
                    if !exists("stage", &key) {
                        return Err(CatalogError::NotFound);
                    }
                    state.overlay.stage_lifecycle.insert(key, lifecycle);
                }
                Change::LockRoom {
                    namespace,
                    name,
                    locked,
                } => {
                    let key = (namespace, name);
                    if !exists("room", &key) {
                        return Err(CatalogError::NotFound);
                    }
                    state.overlay.locked.insert(key, locked);
                }
                Change::WakeRoom {
                    namespace,
                    name,
                    at,
                } => {
                    let key = (namespace, name);
                    if !exists("room", &key) {
                        return Err(CatalogError::NotFound);
                    }
                    state.overlay.wake.insert(key, at);
                }
                Change::PutRoom {
                    room,
                    passcode,
                    create,
                } => {
                    let key = key_of(&*room);
                    let kept = state
                        .overlay
                        .kept_rooms
                        .iter()
                        .position(|r| key_of(r) == key);
                    match (create, kept) {
                        (true, _) if exists("room", &key) => return Err(CatalogError::Conflict),
                        (true, _) => state.overlay.kept_rooms.push(*room),
                        (false, Some(i)) => state.overlay.kept_rooms[i] = *room,
                        (false, None) => return Err(CatalogError::NotFound),
                    }
                    state.overlay.locked.remove(&key);
                    match passcode {
                        Some(p) => state.overlay.passcodes.insert(key, p),
                        None => state.overlay.passcodes.remove(&key),
                    };
                }
                Change::DeleteRoom { namespace, name } => {
                    let key = (namespace, name);
                    let before = state.overlay.kept_rooms.len();
                    state.overlay.kept_rooms.retain(|r| key_of(r) != key);
                    if state.overlay.kept_rooms.len() == before {
                        return Err(CatalogError::NotFound);
                    }
                    state.overlay.passcodes.remove(&key);
                    state.overlay.locked.remove(&key);
                }
            }
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn ready(&self) -> bool {
        true
    }

    fn keeps_rooms(&self) -> bool {
        false
    }
}
