//! The controllers: thin I/O around [`crate::plan`].
//!
//! One controller per kind. Sessions, stages and rooms share one reconcile ([`live`]); each
//! owns its SFU pod and disruption budget (watched with `.owns()`) — sessions and stages also
//! their relay pods ([`relays`]) — and is reconciled again when its LiveEvent changes.
//! Reconciles are triggered by spec (generation) and annotation changes, never by the
//! operator's own status writes, and requeue themselves while live to read the pods' counts.

pub mod event;
pub mod kinds;
pub mod live;
pub mod observe;
pub mod recording;
pub mod relays;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Predicate, WatchStreamExt, predicates, watcher};
use kube::{Api, Client, ResourceExt};
use roundtable_crds::{LiveEvent, Room, Session, Stage};
use tracing::{info, warn};

use crate::config::OperatorConfig;
use crate::metrics::Metrics;
use crate::plan::decide::Restarts;
use crate::plan::pod::{APP, LABEL_APP};
use crate::{Error, FIELD_MANAGER};
use kinds::LiveKind;
use roundtable_crds::live_room::{Kind, LiveRoom};

/// What this process last wrote to an object's status: newer than the watch cache right
/// after the write.
#[derive(Debug, Clone)]
pub struct Written {
    pub phase: roundtable_crds::LivePhase,
    pub restarts: Restarts,
    /// The `Degraded` message while a lost pod is being replaced.
    pub degraded: Option<String>,
    /// The move written last (`status.move`).
    pub pod_move: Option<roundtable_crds::PodMove>,
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// The one namespace watched, or every namespace.
    pub namespace: Option<String>,
    pub config: OperatorConfig,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub http: reqwest::Client,
    /// Every SFU pod watched, for finding a room's pod and picking hostPorts.
    pub sfu_pods: Store<Pod>,
    /// Every LiveEvent, Session and Stage watched (the event rollup reads these, not the API).
    pub events: Store<LiveEvent>,
    pub sessions: Store<Session>,
    pub stages: Store<Stage>,
    /// The cluster's nodes, for the most CPU one node can give an SFU pod; empty when the
    /// operator may not read nodes (then `--sfu-max-cores` alone bounds a pod).
    pub nodes: Store<Node>,
    live: Mutex<HashMap<(Kind, String, String), bool>>,
    /// Rooms whose pod this process has seen, to tell a replacement from a first start.
    pub pods_seen: Mutex<std::collections::HashSet<String>>,
    /// hostPorts this process gave new SFU pods lately, and when: concurrent reconciles
    /// read the same pod cache, and a pod just created may not be in it yet.
    pub ports_picked: Mutex<Vec<(u16, std::time::Instant)>>,
    /// Consecutive failed reconciles per object, for the retry backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The phase and restarts this process last wrote per object (by uid), newer than the
    /// watch cache right after a write.
    written: Mutex<HashMap<String, Written>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// What the SFU pods of a room placed by `settings` are made with: the configuration, with
    /// `--sfu-max-cores` lowered to what the largest node they may run on can give a pod (a pod
    /// asking more would never be scheduled). Nodes their `nodeSelector` excludes, and cordoned
    /// ones, do not count; with no such node known, the configuration stands.
    pub fn pod_config(
        &self,
        settings: &roundtable_crds::SfuPodSettings,
    ) -> std::borrow::Cow<'_, OperatorConfig> {
        let nodes = self.nodes.state();
        let cores = crate::plan::sizing::cores_for_placement(
            nodes.iter().map(|n| n.as_ref()),
            settings.placement.as_ref(),
        );
        match cores {
            Some(cores) if cores < self.config.sfu_max_cores => {
                std::borrow::Cow::Owned(OperatorConfig {
                    sfu_max_cores: cores,
                    ..self.config.clone()
                })
            }
            _ => std::borrow::Cow::Borrowed(&self.config),
        }
    }

    /// Counts a failed reconcile of `key` and returns how long to wait before the retry.
    pub fn failed(&self, key: String) -> Duration {
        let mut failures = self.failures.lock().expect("not poisoned");
        let count = failures.entry(key).or_default();
        *count += 1;
        crate::plan::backoff::retry_after(*count)
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("not poisoned").remove(key);
    }

    /// The phase and restarts this process last wrote for `obj`.
    pub fn last_written<K: kube::Resource>(&self, obj: &K) -> Option<Written> {
        let uid = obj.meta().uid.as_ref()?;
        self.written.lock().expect("not poisoned").get(uid).cloned()
    }

    /// Remembers the phase and restarts written for `obj`.
    pub fn remember_written<K: kube::Resource>(&self, obj: &K, written: Written) {
        if let Some(uid) = obj.meta().uid.clone() {
            self.written
                .lock()
                .expect("not poisoned")
                .insert(uid, written);
        }
    }

    /// An API over the watched namespace (or all of them).
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        match &self.namespace {
            Some(namespace) => Api::namespaced(self.client.clone(), namespace),
            None => Api::all(self.client.clone()),
        }
    }

    /// Remembers whether a room is live (and its counts) for the metrics.
    pub fn record_room(&self, room: &LiveRoom, counts: Option<(i32, i32)>) {
        self.metrics
            .room(&room.namespace, room.kind.as_str(), &room.name, counts);
        let mut live = self.live.lock().expect("not poisoned");
        live.insert(
            (room.kind, room.namespace.clone(), room.name.clone()),
            counts.is_some(),
        );
        let count = live
            .iter()
            .filter(|((kind, ..), is_live)| *kind == room.kind && **is_live)
            .count();
        self.metrics.live_rooms(room.kind.as_str(), count as i64);
    }
}

fn error_policy<K: LiveKind>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let retry = ctx.failed(failure_key::<K>(&obj));
    report_failure(obj.as_ref(), K::CONTROLLER, error, retry, &ctx);
    Action::requeue(retry)
}

/// A reconcile that failed for a reason outside what status already reports (the API server
/// unreachable, a conflict): logged, and recorded as a Warning Event `ReconcileFailed` on the
/// object so that `kubectl describe` shows it too. The caller retries after `retry`.
pub fn report_failure<K>(
    obj: &K,
    controller: &str,
    error: &Error,
    retry: Duration,
    ctx: &Arc<Context>,
) where
    K: kube::Resource<DynamicType = ()>,
{
    warn!(
        kind = controller,
        namespace = %obj.namespace().unwrap_or_default(),
        name = %obj.name_any(),
        %error,
        ?retry,
        "reconcile failed"
    );
    let event = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Warning,
        reason: "ReconcileFailed".into(),
        note: Some(format!("{error}; retrying in {}s", retry.as_secs())),
        action: "Reconcile".into(),
        secondary: None,
    };
    let reference = obj.object_ref(&());
    let ctx = ctx.clone();
    tokio::spawn(async move {
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            warn!(error = %e, "could not record an Event");
        }
    });
}

/// The key of an object in the failure counts.
pub fn failure_key<K: kube::Resource>(obj: &K) -> String
where
    K::DynamicType: Default,
{
    format!(
        "{}/{}/{}",
        K::kind(&Default::default()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Whether a watch's event says its list was refused for want of permission (which retrying
/// will not change).
fn refused_list<T>(event: &Result<T, watcher::Error>) -> bool {
    matches!(
        event,
        Err(watcher::Error::InitialListFailed(kube::Error::Api(status))) if status.is_forbidden()
    )
}

/// How long the operator waits for the nodes' cache at start before reconciling without it.
const NODES_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs every controller until `shutdown` resolves or one of them stops.
pub async fn run(
    client: Client,
    config: OperatorConfig,
    metrics: Arc<Metrics>,
    namespace: Option<String>,
    shutdown: crate::Shutdown,
    concurrency: u16,
) {
    let (sfu_pods, pod_writer) = reflector::store();
    let (events, event_writer) = reflector::store();
    let (sessions, session_writer) = reflector::store();
    let (stages, stage_writer) = reflector::store();
    let (nodes, node_writer) = reflector::store();
    let ctx = Arc::new(Context {
        client: client.clone(),
        namespace,
        config,
        metrics,
        recorder: Recorder::new(client.clone(), Reporter::from(FIELD_MANAGER)),
        http: reqwest::Client::new(),
        sfu_pods: sfu_pods.clone(),
        events: events.clone(),
        sessions: sessions.clone(),
        stages: stages.clone(),
        nodes,
        live: Mutex::new(HashMap::new()),
        failures: Mutex::new(HashMap::new()),
        written: Mutex::new(HashMap::new()),
        pods_seen: Mutex::new(Default::default()),
        ports_picked: Mutex::new(Vec::new()),
    });
    let pod_selector = watcher::Config::default().labels(&format!("{LABEL_APP}={APP}"));
    let pod_reflector = watcher(ctx.api::<Pod>(), pod_selector)
        .default_backoff()
        .reflect(pod_writer)
        .for_each(|_| futures::future::ready(()));
    let event_reflector = watcher(ctx.api::<LiveEvent>(), watcher::Config::default())
        .default_backoff()
        .reflect(event_writer)
        .for_each(|_| futures::future::ready(()));
    // Where nodes may not be read (the chart's namespaced install has a Role, not a
    // ClusterRole), the watch ends at the first refusal instead of retrying for ever: the cache
    // then stays empty, `--sfu-max-cores` alone bounds a pod, and nobody waits for it below.
    let node_reflector = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|node: &mut Node| {
            // Only the allocatable CPU is read: the rest is not kept.
            node.managed_fields_mut().clear();
            if let Some(status) = node.status.as_mut() {
                status.images = None;
                status.conditions = None;
            }
        })
        .reflect(node_writer)
        .take_while(|event| {
            let refused = refused_list(event);
            if refused {
                info!("nodes may not be read: SFU pods are sized by --sfu-max-cores alone");
            }
            futures::future::ready(!refused)
        })
        .for_each(|_| futures::future::ready(()));
    let reflectors = tokio::spawn(futures::future::join3(
        pod_reflector,
        event_reflector,
        node_reflector,
    ));
    // Reconciles read events and pods from these caches: start once they are filled.
    let _ = futures::future::join(sfu_pods.wait_until_ready(), events.wait_until_ready()).await;
    // Pods are sized by the largest node: wait a little for the nodes too, but not for ever
    // (a refused watch ends at once, above, and this returns then).
    let _ = tokio::time::timeout(NODES_WAIT, ctx.nodes.wait_until_ready()).await;

    let controllers: Vec<BoxFuture<'static, ()>> = vec![
        live_controller::<Session>(
            &ctx,
            sessions,
            session_writer,
            shutdown.clone(),
            concurrency,
            |s| Some(s.spec.event.clone()),
        ),
        live_controller::<Stage>(
            &ctx,
            stages,
            stage_writer,
            shutdown.clone(),
            concurrency,
            |s| Some(s.spec.event.clone()),
        ),
        {
            let (rooms, room_writer) = reflector::store();
            live_controller::<Room>(
                &ctx,
                rooms,
                room_writer,
                shutdown.clone(),
                concurrency,
                |_| None,
            )
        },
        event::controller(ctx.clone(), shutdown.clone(), concurrency),
    ];
    info!("controllers running");
    futures::future::join_all(controllers).await;
    reflectors.abort();
}

/// A controller for one kind with an SFU pod. `event_of` names the LiveEvent an object
/// belongs to, so that a change of the event reconciles its sessions or stage.
fn live_controller<K: LiveKind>(
    ctx: &Arc<Context>,
    reader: Store<K>,
    writer: reflector::store::Writer<K>,
    shutdown: crate::Shutdown,
    concurrency: u16,
    event_of: fn(&K) -> Option<String>,
) -> BoxFuture<'static, ()> {
    let trigger = watcher(ctx.api::<K>(), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::annotations),
            Default::default(),
        );
    let store = reader.clone();
    let owned = watcher::Config::default().labels(&format!("{LABEL_APP}={APP}"));
    Controller::for_stream(trigger, reader)
        .owns(ctx.api::<Pod>(), owned.clone())
        .owns(ctx.api::<PodDisruptionBudget>(), owned.clone())
        .owns(ctx.api::<Service>(), owned)
        .owns(
            ctx.api::<Job>(),
            watcher::Config::default().labels(&format!(
                "{LABEL_APP}={}",
                crate::plan::recording::RECORDER_APP
            )),
        )
        .watches(
            ctx.api::<LiveEvent>(),
            watcher::Config::default(),
            move |event| {
                let namespace = event.namespace();
                let name = event.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|obj| {
                        obj.namespace() == namespace
                            && event_of(obj).as_deref() == Some(name.as_str())
                    })
                    .map(|obj| ObjectRef::from(obj.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(live::reconcile::<K>, error_policy::<K>, ctx.clone())
        .for_each(|_| futures::future::ready(()))
        .boxed()
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    #[test]
    fn only_a_forbidden_list_ends_a_watch() {
        let failed = |status: Status| -> Result<(), watcher::Error> {
            Err(watcher::Error::InitialListFailed(kube::Error::Api(
                Box::new(status),
            )))
        };
        // The chart's namespaced install: a Role, so listing nodes is forbidden.
        assert!(refused_list(&failed(
            Status::failure("nodes is forbidden", "Forbidden").with_code(403)
        )));
        // Anything else is retried: the API server down for a while, a timeout.
        assert!(!refused_list(&failed(
            Status::failure("try again", "ServiceUnavailable").with_code(503)
        )));
        assert!(!refused_list(&failed(
            Status::failure("timeout", "Timeout").with_code(504)
        )));
        assert!(!refused_list::<()>(&Ok(())));
    }
}
