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
use roundtable_control_plane::catalog::{find_session, find_stage};
use roundtable_crds::Autoscaling;
use roundtable_crds::live_room::{Kind, LiveRoom};
use roundtable_operator::controller::observe::read_stats;
use roundtable_operator::plan::decide::{PodState, room_desired};
use roundtable_operator::plan::pod::{share_policy_arg, theme_arg};
use roundtable_operator::plan::relay::{
    ObservedRelay, RelaySpec, autoscale, relay_name, status as relay_status,
};
use roundtable_operator::plan::schedule::{Desired, desired};
use sfu_node::relay::{Origin, serve_relay};

/// How long an empty room keeps its SFU when the Room does not say.
const ROOM_IDLE: SignedDuration = SignedDuration::from_secs(300);

/// How often the runner looks at the manifests and the rooms.
const TICK: Duration = Duration::from_secs(1);

/// The sfu-node settings of a room: the same values the operator passes to a pod's sfu-node
/// (`SFU_KIND`, `SFU_SHARE_POLICY`, `SFU_THEME`, `SFU_MAX_WATCHERS`, `SFU_RELAYED_WATCHERS`,
/// …), parsed as sfu-node parses them. Above one server's cap (autoscaling on) the room takes
/// its `max_watchers` and relays serve the rest, as in a cluster.
pub fn room_config(room: &LiveRoom) -> Result<RoomConfig, sfu_node::Error> {
    let kind: RoomKind = room.kind.as_str().parse()?;
    let mut config = RoomConfig::new(room.room_id(), kind);
    config.share_policy = share_policy_arg(room.share_policy).parse()?;
    config.theme = theme_arg(room.theme).parse()?;
    config.locked = room.locked;
    let on_camera = room.max_on_camera.max(1) as u32;
    let direct = room
        .max_watchers
        .min(roundtable_crds::limits::watcher_cap(room.max_on_camera))
        .max(1) as u32;
    config.limits = if room.max_watchers > direct as i32 {
        Limits::relayed(kind, on_camera, room.max_watchers as u32)?
    } else {
        Limits::new(kind, on_camera, Some(direct))?
    };
    Ok(config)
}

/// What a room's manifest asks of its relays (`spec.relays`, `spec.autoscaling`): sessions and
/// stages have relays, rooms do not.
fn relay_request(
    catalog: &LocalCatalog,
    room: &LiveRoom,
) -> Option<(Option<i32>, Option<Autoscaling>)> {
    let (ns, name) = (room.namespace.as_str(), room.name.as_str());
    match room.kind {
        Kind::Session => {
            find_session(catalog, ns, name).map(|s| (s.spec.relays, s.spec.autoscaling.clone()))
        }
        Kind::Stage => {
            find_stage(catalog, ns, name).map(|s| (s.spec.relays, s.spec.autoscaling.clone()))
        }
        Kind::Room => None,
    }
}

/// A relay of a running session or stage: an embedded sfu-node in relay mode that serves
/// watchers from the room's origin server, as a relay pod does in a cluster.
struct RelayServer {
    name: String,
    http: SocketAddr,
    admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<sfu_node::Result<()>>,
    /// `watching` from its last `/stats`; None when they could not be read.
    watching: Option<i32>,
}

impl Drop for RelayServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

struct Running {
    room: LiveRoom,
    http: SocketAddr,
    admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<sfu_node::Result<()>>,
    observed: Observed,
    /// Its relays, by index (`<pod>-relay-<index>`).
    relays: Vec<RelayServer>,
    /// The autoscaler's relay count, which stands in for `spec.relays` once it has decided
    /// (a cluster's autoscaler writes the spec; manifests here are the user's files).
    scaled: Option<i32>,
    /// The autoscaler's pending scale-in (`status.lowerSince`).
    lower_since: Option<Timestamp>,
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
        self.relays(now).await;
        self.record();
        self.observe(now).await;
    }

    /// Starts and stops each running session's and stage's relays: `spec.relays` of them, or
    /// what the operator's autoscaler decides for the watchers its origin counts.
    async fn relays(&mut self, now: Timestamp) {
        let ids: Vec<String> = self.running.keys().cloned().collect();
        for id in ids {
            let Some(running) = self.running.get_mut(&id) else {
                continue;
            };
            let Some((replicas, autoscaling)) = relay_request(&self.catalog, &running.room) else {
                continue;
            };
            let mut spec = RelaySpec::new(
                replicas,
                autoscaling.as_ref(),
                running.room.max_on_camera,
                running.lower_since,
            );
            match (spec.policy(), running.scaled) {
                (Some(_), Some(scaled)) => spec.replicas = scaled,
                // Autoscaling turned off: `spec.relays` is the user's again.
                (None, _) => running.scaled = None,
                (Some(_), None) => {}
            }
            if let Some(scaling) = autoscale(&spec, running.observed.watching, now) {
                if let Some(to) = scaling.replicas {
                    info!(room = %id, from = spec.replicas, to, watching = running.observed.watching, "relays rescaled");
                    spec.replicas = to;
                    running.scaled = Some(to);
                }
                running.lower_since = scaling.lower_since;
            }
            running.observed.watchers_per_pod = Some(spec.watchers_per_relay);
            // A relay whose server stopped is started again below.
            running.relays.retain(|r| {
                let done = r.task.is_finished();
                if done {
                    warn!(relay = %r.name, "the relay's server stopped");
                }
                !done
            });
            let want = usize::try_from(spec.replicas).unwrap_or(0);
            while running.relays.len() > want {
                if let Some(relay) = running.relays.pop() {
                    info!(relay = %relay.name, "stopping the relay");
                }
            }
            let (room, origin) = (running.room.clone(), running.http);
            let mut started = Vec::new();
            for index in running.relays.len()..want {
                match self
                    .start_relay(&room, origin, index as u32, spec.watchers_per_relay)
                    .await
                {
                    Ok(relay) => {
                        info!(relay = %relay.name, http = %relay.http, "relay started");
                        started.push(relay);
                    }
                    Err(e) => {
                        warn!(room = %id, index, error = %e, "could not start a relay");
                        break;
                    }
                }
            }
            if let Some(running) = self.running.get_mut(&id) {
                running.relays.extend(started);
            }
        }
    }

    /// Relay `index` of `room`, serving at most `watchers` from the origin at `origin`.
    async fn start_relay(
        &self,
        room: &LiveRoom,
        origin: SocketAddr,
        index: u32,
        watchers: i32,
    ) -> anyhow::Result<RelayServer> {
        let sized = LiveRoom {
            max_watchers: watchers,
            ..room.clone()
        };
        let (config, listeners, http, admin) = self.bind_server(&sized).await?;
        let origin = Origin::parse(&format!("http://{origin}"))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_relay(config, origin, listeners, async move {
            let _ = stopped.await;
        }));
        Ok(RelayServer {
            name: relay_name(room, index),
            http,
            admin,
            stop: Some(stop),
            task,
            watching: None,
        })
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

    /// The settings and bound sockets of an embedded sfu-node for `room` (an origin, or a relay
    /// sized for its share), with its signalling and admin addresses.
    async fn bind_server(
        &self,
        room: &LiveRoom,
    ) -> anyhow::Result<(ServerConfig, Listeners, SocketAddr, SocketAddr)> {
        // ICE-TCP on the UDP port number, for attendees whose networks drop UDP.
        let (udp, tcp) = bind_media(self.media.udp, 0).await?;
        let port = udp.local_addr()?.port();
        let config = ServerConfig {
            room: room_config(room)?,
            // Behind a 1:1 NAT the same port at its public address.
            advertise: self.media.advertise.map(|ip| SocketAddr::new(ip, port)),
            token_key: self.token_key.clone(),
            drain_grace: Duration::from_secs(30),
            initial_estimate_bps: 1_500_000,
            bwe: Default::default(),
            threads: 1,
        };
        let listeners = Listeners {
            udp,
            tcp: Some(tcp.into()),
            http: TcpListener::bind((self.media.signalling, 0)).await?.into(),
            admin: TcpListener::bind((self.media.signalling, 0)).await?,
        };
        let http = listeners.http.local_addr()?;
        let admin = listeners.admin.local_addr()?;
        Ok((config, listeners, http, admin))
    }

    async fn start(&self, room: LiveRoom) -> anyhow::Result<Running> {
        let (config, listeners, http, admin) = self.bind_server(&room).await?;
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
            relays: Vec::new(),
            scaled: None,
            lower_since: None,
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
            for relay in &mut running.relays {
                relay.watching =
                    read_stats(&self.http, &relay.admin.to_string(), Duration::from_secs(1))
                        .await
                        .map(|stats| stats.watching);
            }
            // As the operator reports relay pods: ready once their stats answer.
            let (relays, relay_pods) = relay_status(
                &running
                    .relays
                    .iter()
                    .enumerate()
                    .map(|(index, r)| ObservedRelay {
                        index: index as u32,
                        name: r.name.clone(),
                        state: PodState::Running {
                            ready: r.watching.is_some(),
                        },
                        endpoint: Some(r.http.to_string()),
                        watching: r.watching,
                    })
                    .collect::<Vec<_>>(),
            );
            o.relays = relays;
            o.relay_pods = relay_pods;
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

    fn session(spec: &str) -> LiveRoom {
        let mut session = Session::new("big", serde_yaml::from_str(spec).unwrap());
        session.metadata.namespace = Some("default".into());
        LiveRoom::from(&session)
    }

    #[test]
    fn above_one_servers_cap_the_origin_takes_the_room_and_serves_one_servers_share() {
        let room =
            session("{event: gala, title: S, maxWatchers: 4000, autoscaling: {enabled: true}}");
        assert_eq!(room.max_watchers, 4000, "what the cluster's origin takes");
        let limits = room_config(&room).unwrap().limits;
        assert_eq!(limits.max_watchers, 4000, "the room, relays included");
        assert_eq!(limits.pod_watchers, 500, "this server itself");
    }

    #[test]
    fn within_one_servers_cap_the_origin_serves_everyone() {
        let limits = room_config(&session("{event: gala, title: S, maxWatchers: 120}"))
            .unwrap()
            .limits;
        assert_eq!((limits.max_watchers, limits.pod_watchers), (120, 120));
        // Without autoscaling, relays do not raise the cap (as in a cluster).
        let fixed = session("{event: gala, title: S, maxWatchers: 4000, relays: 2}");
        assert_eq!(room_config(&fixed).unwrap().limits.max_watchers, 500);
    }
}
