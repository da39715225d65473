//! A test-only node agent: a tiny fake kubelet that lets the real kube-scheduler place pods
//! on Nodes it registers and runs each pod bound to them as local processes.
//!
//! Model:
//! - [`NodeAgent::start`] registers each [`NodeSpec`] as a Node (capacity, labels, taints, a
//!   Ready condition, an `InternalIP`) and keeps it alive with a Lease in `kube-node-lease`
//!   renewed every 5 s, as the kubelet does, so kube-controller-manager's node lifecycle
//!   controller keeps it Ready. [`NodeAgent::stop`] (or dropping the agent) stops the pods'
//!   processes, deletes the pods bound to its nodes and then the Nodes.
//! - The agent runs on its own thread with its own tokio runtime, so it outlives no test and
//!   depends on no test's runtime; it holds its own admin client.
//! - Each pod bound to one of its nodes gets a loopback address of its own,
//!   `127.0.<node>.<n>`: `<node>` numbers the nodes of this test process from 1 (the node's
//!   `InternalIP` is `127.0.<node>.1`) and `<n>` runs from 2 to 254, reusing addresses of
//!   pods that are gone. Linux routes all of 127.0.0.0/8 to the loopback interface, so
//!   nothing needs configuring. The address is reported as both `status.podIP` and
//!   `status.hostIP`: there is no NAT, so the pod's processes listen on their
//!   `containerPort`s on that address, and a `hostPort` is reachable only where it equals
//!   the `containerPort` (the usual case for media servers).
//!   A pod with `hostNetwork: true` has the node's address instead (`127.0.<node>.1`),
//!   as on a real node, so a process on the host's network is reached at the node's
//!   `InternalIP`.
//! - Each container is a local process (see [`ImageMap`] for how an image becomes a program)
//!   started with the pod's environment and `$(VAR)`-expanded arguments, in a scratch
//!   directory, under the same watchdog as the control plane so it dies with the test
//!   process. Its output goes to [`NodeAgent::log_path`].
//! - Status is written with server-side apply (field manager `roundtable-node-agent`):
//!   phase Pending → Running → Succeeded/Failed, conditions `PodReadyToStartContainers`,
//!   `Initialized`, `ContainersReady` and `Ready` (honouring readiness gates), container
//!   statuses with waiting/running/terminated state, `lastState`, `restartCount`, `started`
//!   and `ready`, and `startTime`.
//! - Readiness probes (`httpGet`, `tcpSocket`) hit the pod IP with periods, timeouts and
//!   initial delays capped at 1 s; without a probe a container is ready once started.
//! - `restartPolicy` is honoured with a 1 s back-off doubling to 10 s (the kubelet's is 10 s
//!   to 5 min). A pod being deleted gets SIGTERM, up to its grace period, then SIGKILL, and
//!   is then deleted with grace period 0, as a kubelet finishes a deletion.
//!
//! - Volumes: a `persistentVolumeClaim` is a folder per claim ([`NodeAgent::volume_path`]),
//!   an `emptyDir` a folder per pod; paths under a `mountPath` in the container's env and
//!   args are rewritten to the folder (there is no mount namespace).
//!
//! Not modelled: init containers (the pod stays Pending, `Initialized=False`), other volumes,
//! liveness and startup probes, `exec`/gRPC readiness probes (the container never becomes
//! ready and the agent says so on stderr), resource limits, `resourceFieldRef` and
//! `fileKeyRef` env, Events, image pull policies.
//!
//! ```no_run
//! # async fn example() -> roundtable_e2e::Result<()> {
//! use std::time::Duration;
//! use roundtable_e2e::Cluster;
//! use roundtable_e2e::node_agent::{self, ImageMap, NodeAgent, NodeSpec};
//!
//! let cluster = Cluster::shared().await?;
//! cluster.start_scheduler().await?;
//! let ns = cluster.namespace("sfu-placement").await?;
//! let sfu_node = node_agent::workspace_binary("sfu-node", "sfu-node").await?;
//! let images = ImageMap::new().map("sfu-node", sfu_node);
//! let nodes = vec![
//!     NodeSpec::new(format!("{}-a", ns.name)).label("pool", &ns.name),
//!     NodeSpec::new(format!("{}-b", ns.name)).label("pool", &ns.name).cpu("2"),
//! ];
//! let agent = NodeAgent::start(cluster, nodes, images).await?;
//! // ... create a LiveEvent whose SFU pods select `pool=<ns>`, then:
//! let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::default_namespaced(ns.client);
//! let pod = node_agent::wait_for_pod(&pods, "sfu-0", Duration::from_secs(60), "ready",
//!     node_agent::is_ready).await?;
//! agent.stop().await?;
//! # Ok(()) }
//! ```

mod cargo;
mod container;
mod env;
mod image;
mod ips;
mod node;
mod pod;
mod probe;
mod status;
mod volume;
mod wait;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::{oneshot, watch};

pub use cargo::{PREBUILT_ENV, workspace_binary};
pub use image::{Entrypoint, ImageMap};
pub use node::NodeSpec;
pub use wait::{is_ready, wait_for_pod};

use crate::cluster::{Cluster, say};
use crate::error::{Error, Result};
use ips::Ips;
use node::Registered;
use pod::PodContext;

/// The field manager of every write the agent makes.
pub const FIELD_MANAGER: &str = "roundtable-node-agent";
/// Lease renewal and node status refresh period.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long the agent waits for its pods to stop when it stops.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Numbers the nodes of this test process: the third octet of their addresses.
static NEXT_NODE: AtomicU32 = AtomicU32::new(1);

/// A running node agent; see the module docs. Stops on [`NodeAgent::stop`] or drop.
#[derive(Debug)]
pub struct NodeAgent {
    nodes: Vec<(String, Ipv4Addr)>,
    dir: PathBuf,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl NodeAgent {
    /// Registers `nodes` and starts running the pods bound to them. Returns once every node
    /// is registered and Ready. Node names must be unique among the nodes alive in the
    /// cluster; an existing Node of the same name is taken over.
    pub async fn start(cluster: &Cluster, nodes: Vec<NodeSpec>, images: ImageMap) -> Result<Self> {
        let config = cluster.admin_config()?;
        let dir = cluster.dir().join("node-agent");
        let (ready_tx, ready_rx) = oneshot::channel();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let agent_dir = dir.clone();
        let thread = std::thread::Builder::new()
            .name("node-agent".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::Io {
                        context: "building the node agent's runtime".into(),
                        source: e,
                    })?;
                runtime.block_on(agent(
                    config,
                    nodes,
                    images,
                    agent_dir,
                    ready_tx,
                    shutdown_rx,
                ))
            })
            .map_err(|e| Error::Io {
                context: "starting the node agent's thread".into(),
                source: e,
            })?;
        match ready_rx.await {
            Ok(Ok(nodes)) => Ok(Self {
                nodes,
                dir,
                shutdown,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
                Err(e)
            }
            Err(_) => {
                let joined = tokio::task::spawn_blocking(move || thread.join()).await;
                Err(match joined {
                    Ok(Ok(Err(e))) => e,
                    _ => Error::StartFailed("the node agent's thread ended during start-up".into()),
                })
            }
        }
    }

    /// Names and `InternalIP`s of the agent's nodes, in the order given.
    pub fn nodes(&self) -> &[(String, Ipv4Addr)] {
        &self.nodes
    }

    /// Where the output of a container of a pod goes (appended across restarts).
    pub fn log_path(&self, namespace: &str, pod: &str, container: &str) -> PathBuf {
        log_file(&self.dir, namespace, pod, container)
    }

    /// The local folder that stands for a PersistentVolumeClaim of `namespace` (see the
    /// module docs on volumes).
    pub fn volume_path(&self, namespace: &str, claim: &str) -> PathBuf {
        volume::claim_dir(&self.dir, namespace, claim)
    }

    /// The output of a container so far; empty if it never started.
    pub fn log(&self, namespace: &str, pod: &str, container: &str) -> String {
        std::fs::read_to_string(self.log_path(namespace, pod, container)).unwrap_or_default()
    }

    /// Sends `signal` (`KILL`, `TERM`, …) to the running process of `container` in the pod
    /// `pod` (whose uid is `uid`), as `kill -s` on a node would: a SIGKILL is a crash the agent
    /// notices and reports like any other exit. Fails if the container has no process.
    pub async fn signal(
        &self,
        namespace: &str,
        pod: &str,
        uid: &str,
        container: &str,
        signal: &str,
    ) -> Result<()> {
        let pidfile = self
            .dir
            .join("pods")
            .join(format!("{namespace}_{pod}_{uid}"))
            .join(container)
            .join(".pid");
        let pid = std::fs::read_to_string(&pidfile).unwrap_or_default();
        let pid = pid.trim();
        let sent = !pid.is_empty()
            && tokio::process::Command::new("kill")
                .args(["-s", signal, pid])
                .status()
                .await
                .is_ok_and(|s| s.success());
        if sent {
            Ok(())
        } else {
            Err(Error::Command {
                command: format!(
                    "kill -s {signal} (container {container} of pod {namespace}/{pod})"
                ),
                detail: format!("no running process recorded in {}", pidfile.display()),
            })
        }
    }

    /// Stops every pod's processes (SIGTERM, 2 s, SIGKILL), deletes the pods bound to the
    /// agent's nodes, then the Nodes and their Leases.
    pub async fn stop(mut self) -> Result<()> {
        let _ = self.shutdown.send(true);
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Ok(result)) => result,
            _ => Err(Error::Command {
                command: "node agent".into(),
                detail: "its thread panicked".into(),
            }),
        }
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub(crate) fn log_file(dir: &Path, namespace: &str, pod: &str, container: &str) -> PathBuf {
    dir.join("logs")
        .join(format!("{namespace}_{pod}_{container}.log"))
}

struct PodHandle {
    updates: watch::Sender<Option<Pod>>,
    task: tokio::task::JoinHandle<()>,
}

/// The agent's thread: register, report readiness to [`NodeAgent::start`], serve, clean up.
async fn agent(
    config: kube::Config,
    specs: Vec<NodeSpec>,
    images: ImageMap,
    dir: PathBuf,
    ready: oneshot::Sender<Result<Vec<(String, Ipv4Addr)>>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let client = match Client::try_from(config) {
        Ok(client) => client,
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return Ok(());
        }
    };
    let mut registered: Vec<Registered> = Vec::new();
    for spec in specs {
        let index = NEXT_NODE.fetch_add(1, Ordering::Relaxed);
        let outcome = match u8::try_from(index) {
            Ok(octet) => node::register(&client, spec, Ipv4Addr::new(127, 0, octet, 1)).await,
            Err(_) => Err(Error::Command {
                command: "node agent".into(),
                detail: "more than 255 nodes in one test process".into(),
            }),
        };
        match outcome {
            Ok(node) => registered.push(node),
            Err(e) => {
                for node in &registered {
                    let _ = node::deregister(&client, &node.spec.name).await;
                }
                let _ = ready.send(Err(e));
                return Ok(());
            }
        }
    }
    let ips: Arc<Mutex<HashMap<String, Ips>>> = Arc::new(Mutex::new(
        registered
            .iter()
            .map(|n| (n.spec.name.clone(), Ips::new(n.ip.octets()[2])))
            .collect(),
    ));
    let _ = ready.send(Ok(registered
        .iter()
        .map(|n| (n.spec.name.clone(), n.ip))
        .collect()));

    let ctx = Arc::new(PodContext {
        client: client.clone(),
        images,
        dir,
    });
    let (stop_pods, stop_pods_rx) = watch::channel(false);
    let mut pods: HashMap<String, PodHandle> = HashMap::new();
    let mut listing: Option<HashSet<String>> = None;
    let stream = watcher::watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;

    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            _ = heartbeat.tick() => {
                for node in &registered {
                    if let Err(e) = node::heartbeat(&client, node).await {
                        say(format_args!(
                            "roundtable-node-agent: heartbeat of node {}: {e}", node.spec.name
                        ));
                    }
                }
            }
            event = stream.next() => match event {
                Some(Ok(Event::Apply(pod))) => dispatch(&ctx, &ips, &mut pods, &stop_pods_rx, pod),
                Some(Ok(Event::InitApply(pod))) => {
                    if let (Some(seen), Some(uid)) = (listing.as_mut(), pod.metadata.uid.clone()) {
                        seen.insert(uid);
                    }
                    dispatch(&ctx, &ips, &mut pods, &stop_pods_rx, pod);
                }
                Some(Ok(Event::Delete(pod))) => {
                    if let Some(handle) = pod.metadata.uid.as_ref().and_then(|uid| pods.get(uid)) {
                        let _ = handle.updates.send(None);
                    }
                }
                Some(Ok(Event::Init)) => listing = Some(HashSet::new()),
                Some(Ok(Event::InitDone)) => {
                    if let Some(seen) = listing.take() {
                        for (uid, handle) in &pods {
                            if !seen.contains(uid) {
                                let _ = handle.updates.send(None);
                            }
                        }
                    }
                }
                Some(Err(e)) => say(format_args!("roundtable-node-agent: watching pods: {e}")),
                None => break,
            },
        }
    }

    let _ = stop_pods.send(true);
    let stopped = tokio::time::timeout(STOP_TIMEOUT, async {
        for (_, handle) in pods.drain() {
            let _ = handle.task.await;
        }
    })
    .await;
    let mut result = stopped.map_err(|_| Error::Command {
        command: "node agent".into(),
        detail: format!("pods did not stop within {}s", STOP_TIMEOUT.as_secs()),
    });
    for node in &registered {
        if let Err(e) = node::deregister(&client, &node.spec.name).await {
            result = result.and(Err(e));
        }
    }
    result
}

/// Hands a pod to its worker, starting one for a pod newly bound to one of our nodes.
fn dispatch(
    ctx: &Arc<PodContext>,
    ips: &Arc<Mutex<HashMap<String, Ips>>>,
    pods: &mut HashMap<String, PodHandle>,
    stop: &watch::Receiver<bool>,
    pod: Pod,
) {
    let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
        return;
    };
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    if let Some(handle) = pods.get(&uid) {
        let _ = handle.updates.send(Some(pod));
        return;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return;
    }
    // A pod on the host's network has the node's address, shared with the node's other such
    // pods, as a kubelet reports it; every other pod gets an address of its own.
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
    let ip = {
        let mut ips = ips.lock().unwrap_or_else(|e| e.into_inner());
        let Some(node_ips) = ips.get_mut(&node) else {
            return;
        };
        if host_network {
            Some(node_ips.node_ip())
        } else {
            node_ips.allocate()
        }
    };
    let Some(ip) = ip else {
        say(format_args!(
            "roundtable-node-agent: node {node} has no free pod address for {}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        ));
        return;
    };
    let (updates, updates_rx) = watch::channel(Some(pod));
    let task = tokio::spawn({
        let ctx = ctx.clone();
        let ips = ips.clone();
        let stop = stop.clone();
        async move {
            pod::run(ctx, ip, updates_rx, stop).await;
            let mut ips = ips.lock().unwrap_or_else(|e| e.into_inner());
            if let (Some(node_ips), false) = (ips.get_mut(&node), host_network) {
                node_ips.release(ip);
            }
        }
    });
    pods.insert(uid, PodHandle { updates, task });
}
