//! The local mode's runner: what the operator and kubelet do in a cluster, in one process.
//! Sessions and stages go live by the same schedule ([`roundtable_operator::plan::schedule`]), rooms start on
//! demand and stop when idle ([`roundtable_operator::plan::decide::room_desired`]); each live room is an
//! embedded sfu-node server on loopback, and its `/stats` feed the status pages show.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kube::Resource;
use roundtable_crds::{LivePhase, RoomPhase};
use sfu_node::recorder::{RecorderConfig, RecordingInfo};
use sfu_node::server::{Listeners, ServerConfig, bind_media, serve};
use sfu_node::{Limits, RoomConfig, RoomKind};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use roundtable_control_plane::manifest_catalog::{LocalCatalog, Observed};
use roundtable_control_plane::manifests;

use super::MediaAddrs;
use roundtable_control_plane::Catalog;
use roundtable_crds::live_room::{Kind, LiveRoom};
use roundtable_operator::controller::observe::read_stats;
use roundtable_operator::plan::decide::room_desired;
use roundtable_operator::plan::pod::{share_policy_arg, theme_arg};
use roundtable_operator::plan::schedule::{Desired, desired};

/// How long an empty room keeps its SFU when the Room does not say.
const ROOM_IDLE: SignedDuration = SignedDuration::from_secs(300);

/// How often the runner looks at the manifests and the rooms.
const TICK: Duration = Duration::from_secs(1);

/// The sfu-node settings of a room: the same values the operator passes to a pod's sfu-node
/// (`SFU_KIND`, `SFU_SHARE_POLICY`, `SFU_THEME`, …), parsed as sfu-node parses them. Local
/// mode runs one process per room and no relays, so the watcher limit is one pod's cap even
/// when autoscaling would let relays take more.
pub fn room_config(room: &LiveRoom) -> Result<RoomConfig, sfu_node::Error> {
    let kind: RoomKind = room.kind.as_str().parse()?;
    let mut config = RoomConfig::new(room.room_id(), kind);
    config.share_policy = share_policy_arg(room.share_policy).parse()?;
    config.theme = theme_arg(room.theme).parse()?;
    config.locked = room.locked;
    config.limits = Limits::new(
        kind,
        room.max_on_camera.max(1) as u32,
        Some(
            room.max_watchers
                .min(roundtable_crds::limits::watcher_cap(room.max_on_camera))
                .max(1) as u32,
        ),
    )?;
    Ok(config)
}

struct Running {
    room: LiveRoom,
    http: SocketAddr,
    admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<sfu_node::Result<()>>,
    observed: Observed,
}

/// A session's recorder: it outlives the session's SFU while it composes the MP4.
struct Recorder {
    stop: Option<oneshot::Sender<()>>,
    status: watch::Receiver<Vec<RecordingInfo>>,
    task: JoinHandle<sfu_node::Result<Vec<RecordingInfo>>>,
    folder: String,
    /// Whether its end was logged.
    done: bool,
}

/// Runs the local rooms until dropped.
pub struct Runner {
    catalog: Arc<LocalCatalog>,
    paths: Vec<PathBuf>,
    /// Where embedded SFUs listen.
    media: MediaAddrs,
    token_key: Vec<u8>,
    running: HashMap<String, Running>,
    http: reqwest::Client,
    fingerprint: Vec<(PathBuf, u64, Option<std::time::SystemTime>)>,
    /// The schedule's verdict for sessions and stages that are not running.
    phases: HashMap<String, LivePhase>,
    /// Where recordings go: `<dir>/<event's recording claim>/<session>/`.
    recordings_dir: PathBuf,
    recorders: HashMap<String, Recorder>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("running", &self.running.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Runner {
    pub fn new(
        catalog: Arc<LocalCatalog>,
        paths: Vec<PathBuf>,
        media: MediaAddrs,
        token_key: Vec<u8>,
        recordings_dir: PathBuf,
    ) -> Self {
        Runner {
            catalog,
            paths,
            media,
            token_key,
            running: HashMap::new(),
            http: reqwest::Client::new(),
            fingerprint: Vec::new(),
            phases: HashMap::new(),
            recordings_dir,
            recorders: HashMap::new(),
        }
    }

    /// Loops until the future is dropped; then stops every room.
    pub async fn run(mut self) {
        loop {
            self.tick().await;
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = self.catalog.changed.notified() => {}
            }
        }
    }

    /// Re-reads changed manifests, starts and stops rooms, and reports what it sees.
    pub async fn tick(&mut self) {
        self.reload();
        let now = Timestamp::now();
        let wanted = self.wanted(now);
        let stale: Vec<String> = self
            .running
            .keys()
            .filter(|id| !wanted.contains_key(*id))
            .cloned()
            .collect();
        for id in stale {
            if let Some(mut r) = self.running.remove(&id) {
                info!(room = %id, "stopping");
                if let Some(stop) = r.stop.take() {
                    let _ = stop.send(());
                }
                // Draining lets connected people leave; the task ends on its own.
            }
            // The session's recorder hears the room draining, closes the recording for good
            // and composes it, as it does in a cluster; it is only stopped when this process
            // ends (then what was captured is composed and a later run continues it).
        }
        for (id, room) in wanted {
            if !self.running.contains_key(&id) {
                match self.start(room).await {
                    Ok(running) => {
                        info!(room = %id, http = %running.http, "started");
                        self.running.insert(id, running);
                    }
                    Err(e) => warn!(room = %id, error = %e, "could not start the room"),
                }
            }
        }
        self.record();
        self.observe(now).await;
    }

    /// Starts a recorder for each running session with recording on.
    fn record(&mut self) {
        let sessions = self.catalog.sessions();
        let events = self.catalog.events();
        for (id, running) in &self.running {
            if running.room.kind != Kind::Session || self.recorders.contains_key(id) {
                continue;
            }
            let Some(session) = sessions.iter().find(|s| {
                s.metadata.namespace.as_deref() == Some(&running.room.namespace)
                    && s.metadata.name.as_deref() == Some(&running.room.name)
            }) else {
                continue;
            };
            if !session.spec.recording {
                continue;
            }
            let claim = events
                .iter()
                .find(|e| {
                    e.metadata.namespace.as_deref() == Some(&running.room.namespace)
                        && e.metadata.name.as_deref() == Some(&session.spec.event)
                })
                .and_then(|e| e.spec.recording_storage.as_ref())
                .map_or("recordings".to_string(), |r| {
                    r.persistent_volume_claim.clone()
                });
            let folder = roundtable_operator::plan::recording::folder(&running.room);
            let mut config = RecorderConfig::new(
                running.http,
                id,
                &self.token_key,
                self.recordings_dir.join(&claim).join(&folder),
            );
            config.file_prefix = format!("{folder}-");
            let (status_tx, status) = watch::channel(Vec::new());
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(sfu_node::recorder::run_with_status(
                config,
                status_tx,
                async move {
                    let _ = stopped.await;
                },
            ));
            info!(room = %id, "recording");
            self.recorders.insert(
                id.clone(),
                Recorder {
                    stop: Some(stop),
                    status,
                    task,
                    folder,
                    done: false,
                },
            );
        }
    }

    fn reload(&mut self) {
        let files = match manifests::files(&self.paths) {
            Ok(f) => f,
            Err(e) => return warn!(error = %e, "reading the manifests"),
        };
        let fingerprint = manifests::fingerprint(&files);
        if fingerprint == self.fingerprint {
            return;
        }
        match manifests::load(&files) {
            Ok(m) => {
                if !self.fingerprint.is_empty() {
                    info!("manifests changed; reloaded");
                }
                self.catalog.replace_manifests(m);
            }
            Err(e) => warn!(error = %e, "the manifests have an error; keeping the last good ones"),
        }
        self.fingerprint = fingerprint;
    }

    /// The rooms that should have an SFU now, by room id.
    fn wanted(&mut self, now: Timestamp) -> HashMap<String, LiveRoom> {
        let mut wanted = HashMap::new();
        self.phases.clear();
        let events = self.catalog.events();
        let event_of = |ns: &str, name: &str| {
            events
                .iter()
                .find(|e| {
                    e.meta().namespace.as_deref() == Some(ns)
                        && e.meta().name.as_deref() == Some(name)
                })
                .cloned()
        };
        let scheduled = self
            .catalog
            .sessions()
            .iter()
            .map(|s| LiveRoom::from(&**s))
            .chain(self.catalog.stages().iter().map(|s| LiveRoom::from(&**s)))
            .collect::<Vec<_>>();
        for room in scheduled {
            let event = room
                .event
                .as_deref()
                .and_then(|e| event_of(&room.namespace, e));
            let id = room.room_id();
            match desired(room.window(event.as_deref()), now, SignedDuration::ZERO) {
                Desired::Live { .. } => {
                    self.phases.insert(id.clone(), LivePhase::Starting);
                    wanted.insert(id, room);
                }
                Desired::Waiting { .. } => {
                    self.phases.insert(id, LivePhase::Scheduled);
                }
                Desired::Over(_) => {
                    self.phases.insert(id, LivePhase::Ended);
                }
            }
        }
        let wakes = self.catalog.wake_requests();
        for r in self.catalog.rooms() {
            let room = LiveRoom::from(&*r);
            let id = room.room_id();
            let requested = wakes
                .get(&(room.namespace.clone(), room.name.clone()))
                .copied();
            let last_active = self.running.get(&id).and_then(|x| x.observed.last_active);
            let idle = r
                .spec
                .idle_timeout_seconds
                .map_or(ROOM_IDLE, |s| SignedDuration::from_secs(s.into()));
            if let Desired::Live { .. } = room_desired(requested, last_active, idle, now) {
                wanted.insert(id, room);
            }
        }
        wanted
    }

    async fn start(&self, room: LiveRoom) -> anyhow::Result<Running> {
        let config = ServerConfig {
            room: room_config(&room)?,
            advertise: None,
            token_key: self.token_key.clone(),
            drain_grace: Duration::from_secs(30),
            initial_estimate_bps: 1_500_000,
            bwe: Default::default(),
        };
        // ICE-TCP on the UDP port number, for attendees whose networks drop UDP.
        let (udp, tcp) = bind_media(self.media.udp, 0).await?;
        let listeners = Listeners {
            udp,
            tcp: Some(tcp),
            http: TcpListener::bind((self.media.signalling, 0)).await?,
            admin: TcpListener::bind((self.media.signalling, 0)).await?,
        };
        let http = listeners.http.local_addr()?;
        let admin = listeners.admin.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(config, listeners, async move {
            let _ = stopped.await;
        }));
        Ok(Running {
            room,
            http,
            admin,
            stop: Some(stop),
            task,
            observed: Observed {
                started_at: Some(Timestamp::now()),
                ..Observed::default()
            },
        })
    }

    async fn observe(&mut self, now: Timestamp) {
        let mut seen = HashMap::new();
        for (id, running) in &mut self.running {
            if running.task.is_finished() {
                continue;
            }
            let stats = read_stats(
                &self.http,
                &running.admin.to_string(),
                Duration::from_secs(1),
            )
            .await;
            let o = &mut running.observed;
            match stats {
                Some(stats) => {
                    o.watching = stats.watching;
                    o.on_camera = stats.on_camera;
                    o.peak_watching = o
                        .peak_watching
                        .max(stats.peak_watching.unwrap_or(stats.watching));
                    o.peak_on_camera = o
                        .peak_on_camera
                        .max(stats.peak_on_camera.unwrap_or(stats.on_camera));
                    o.unique_joiners = stats.unique_joiners;
                    o.broadcasting = stats.broadcasting;
                    if o.watching + o.on_camera > 0 || o.last_active.is_none() {
                        o.last_active = Some(now);
                    }
                    o.endpoint = Some(running.http.to_string());
                    if running.room.kind == Kind::Room {
                        o.room_phase = Some(RoomPhase::Live);
                    } else {
                        o.phase = Some(LivePhase::Live);
                    }
                }
                None => warn!(room = %id, "could not read the room's stats"),
            }
            seen.insert(id.clone(), o.clone());
        }
        for (id, recorder) in &mut self.recorders {
            if !recorder.done && recorder.task.is_finished() {
                recorder.done = true;
                info!(room = %id, "the recorder finished");
            }
            let reported: Vec<roundtable_operator::plan::recording::Reported> = recorder
                .status
                .borrow()
                .iter()
                .filter_map(|info| serde_json::to_value(info).ok())
                .filter_map(|v| serde_json::from_value(v).ok())
                .collect();
            let entry = seen.entry(id.clone()).or_insert_with(|| Observed {
                phase: self.phases.get(id).copied(),
                ..Observed::default()
            });
            entry.recordings = roundtable_operator::plan::recording::summaries(
                Some(&reported),
                &[],
                &recorder.folder,
                false,
                false,
            );
        }
        for (id, phase) in &self.phases {
            seen.entry(id.clone()).or_insert_with(|| Observed {
                phase: Some(*phase),
                ..Observed::default()
            });
        }
        self.running.retain(|id, r| {
            let done = r.task.is_finished();
            if done {
                warn!(room = %id, "the room's server stopped");
            }
            !done
        });
        self.catalog.set_observed(seen, now);
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        for recorder in self.recorders.values_mut() {
            if let Some(stop) = recorder.stop.take() {
                let _ = stop.send(());
            }
        }
        for running in self.running.values_mut() {
            if let Some(stop) = running.stop.take() {
                let _ = stop.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use roundtable_crds::Session;

    use super::*;

    #[test]
    fn without_relays_a_local_room_keeps_one_pods_watcher_cap() {
        let spec = serde_yaml::from_str(
            "{event: gala, title: S, maxWatchers: 4000, autoscaling: {enabled: true}}",
        )
        .unwrap();
        let mut session = Session::new("big", spec);
        session.metadata.namespace = Some("default".into());
        let room = LiveRoom::from(&session);
        assert_eq!(
            room.max_watchers, 4000,
            "what the cluster's origin would take"
        );
        let config = room_config(&room).unwrap();
        assert_eq!(config.limits.max_watchers, 500);
    }
}
