//! One pod bound to one of the agent's nodes: start its containers as local processes,
//! probe them, restart them per `restartPolicy`, report status, and finish its deletion.
//!
//! Each pod has its own task. It wakes on every change of the pod object, on agent
//! shutdown, and every [`TICK`] to look at processes and probes.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;

use super::container::Process;
use super::env::{self, Sources};
use super::image::{self, ImageMap};
use super::probe::{self, ProbePlan, Readiness};
use super::status::{self, Conditions, ContainerView, State, Terminated};
use super::volume;
use super::{FIELD_MANAGER, log_file};
use crate::cluster::say;

const TICK: Duration = Duration::from_millis(100);
/// Retry period for a container that could not start (unmapped image, missing Secret).
const RETRY: Duration = Duration::from_secs(1);
/// Restart back-off: the kubelet's doubles from 10 s to 5 min; tests want it shorter.
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// The kubelet's minimum grace period for stopping a container.
const MIN_GRACE: Duration = Duration::from_secs(2);
/// Grace for containers when the agent itself stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What every pod worker shares.
pub(crate) struct PodContext {
    pub(crate) client: Client,
    pub(crate) images: ImageMap,
    pub(crate) dir: PathBuf,
}

impl std::fmt::Debug for PodContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodContext")
            .field("images", &self.images)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

struct Run {
    spec: Container,
    view: ContainerView,
    process: Option<Process>,
    started_at: Timestamp,
    probe: Option<ProbePlan>,
    readiness: Readiness,
    next_probe: Instant,
    /// When to (re)start the container; `None` while it runs or once it is finished.
    start_at: Option<Instant>,
    backoff: Duration,
    starts: i32,
}

impl Run {
    fn new(spec: Container) -> Self {
        Self {
            view: ContainerView::new(&spec.name, spec.image.as_deref().unwrap_or_default()),
            spec,
            process: None,
            started_at: Timestamp::now(),
            probe: None,
            readiness: Readiness::default(),
            next_probe: Instant::now(),
            start_at: Some(Instant::now()),
            backoff: BACKOFF_START,
            starts: 0,
        }
    }

    fn waiting(&mut self, reason: &str, message: String) {
        self.view.state = State::Waiting {
            reason: reason.to_owned(),
            message,
        };
        self.start_at = Some(Instant::now() + RETRY);
    }
}

/// A pod's identity, for messages and writes.
struct Names {
    namespace: String,
    name: String,
    uid: String,
}

impl std::fmt::Display for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Runs the pod until it is deleted or the agent stops. `updates` holds the latest pod
/// object, or `None` once the pod is gone from the API.
pub(crate) async fn run(
    ctx: Arc<PodContext>,
    ip: Ipv4Addr,
    mut updates: watch::Receiver<Option<Pod>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(mut pod) = take_latest(&mut updates) else {
        return;
    };
    let names = Names {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
    };
    let spec = pod.spec.clone().unwrap_or_default();
    let restart_policy = spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    let init_error = spec
        .init_containers
        .as_ref()
        .is_some_and(|c| !c.is_empty())
        .then_some("init containers are not supported by the test node agent");
    let mut runs: Vec<Run> = spec.containers.iter().cloned().map(Run::new).collect();
    if let Some(message) = init_error {
        for run in &mut runs {
            run.view.state = State::Waiting {
                reason: "PodInitializing".into(),
                message: message.into(),
            };
            run.start_at = None;
        }
    }
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &names.namespace);
    let start_time = Timestamp::now();
    let mut conditions = Conditions::default();
    let mut last_sent: Option<serde_json::Value> = None;

    loop {
        // The agent dropped its side: it is stopping.
        if updates.has_changed().is_err() {
            stop_all(&names, &mut runs, SHUTDOWN_GRACE).await;
            return;
        }
        // `changed()` below marks the value seen, so always read the latest.
        match take_latest(&mut updates) {
            Some(latest) => pod = latest,
            None => {
                stop_all(&names, &mut runs, grace(&pod)).await;
                return;
            }
        }
        if *shutdown.borrow() {
            stop_all(&names, &mut runs, grace(&pod).min(SHUTDOWN_GRACE)).await;
            finish_deletion(&pods, &names).await;
            return;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            stop_all(&names, &mut runs, grace(&pod)).await;
            let views: Vec<ContainerView> = runs.iter().map(|r| r.view.clone()).collect();
            let now = Timestamp::now();
            status::observe_conditions(&mut conditions, &views, init_error, false, now);
            let body = status_body(ip, start_time, &views, &conditions, init_error);
            let _ = write_status(&pods, &names, body).await;
            finish_deletion(&pods, &names).await;
            return;
        }

        let mut local = pod.clone();
        let status = local.status.get_or_insert_with(Default::default);
        status.pod_ip = Some(ip.to_string());
        status.host_ip = Some(ip.to_string());
        for run in &mut runs {
            step(&ctx, &names, &local, &restart_policy, run).await;
        }

        let views: Vec<ContainerView> = runs.iter().map(|r| r.view.clone()).collect();
        let gates_ready = readiness_gates_ready(&pod);
        status::observe_conditions(
            &mut conditions,
            &views,
            init_error,
            gates_ready,
            Timestamp::now(),
        );
        let body = status_body(ip, start_time, &views, &conditions, init_error);
        if last_sent.as_ref() != Some(&body) {
            match write_status(&pods, &names, body.clone()).await {
                Ok(true) => last_sent = Some(body),
                Ok(false) => {}
                Err(Gone) => {
                    stop_all(&names, &mut runs, grace(&pod)).await;
                    return;
                }
            }
        }

        tokio::select! {
            _ = updates.changed() => {}
            _ = shutdown.changed() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

fn take_latest(updates: &mut watch::Receiver<Option<Pod>>) -> Option<Pod> {
    updates.borrow_and_update().clone()
}

/// Advances one container: notice its exit, probe it, or (re)start it when due.
async fn step(ctx: &PodContext, names: &Names, pod: &Pod, restart_policy: &str, run: &mut Run) {
    let now = Instant::now();
    if let Some(process) = &run.process {
        if let Some(code) = process.exit_code() {
            let fallback =
                run.spec.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
            let terminated = Terminated {
                exit_code: code,
                reason: if code == 0 { "Completed" } else { "Error" }.into(),
                message: (fallback && code != 0).then(|| process.log_tail(80)),
                started_at: run.started_at,
                finished_at: Timestamp::now(),
                container_id: container_id(names, run),
            };
            run.process = None;
            run.readiness = Readiness::default();
            run.view.ready = false;
            let restart = match restart_policy {
                "Always" => true,
                "OnFailure" => code != 0,
                _ => false,
            };
            if restart {
                run.view.state = State::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: format!(
                        "back-off {}s restarting failed container={} pod={}_{}({})",
                        run.backoff.as_secs(),
                        run.spec.name,
                        names.name,
                        names.namespace,
                        names.uid
                    ),
                };
                run.view.last = Some(terminated);
                run.start_at = Some(now + run.backoff);
                run.backoff = (run.backoff * 2).min(BACKOFF_MAX);
            } else {
                run.view.state = State::Terminated(terminated);
                run.start_at = None;
            }
            return;
        }
        if let Some(plan) = &run.probe
            && now >= run.next_probe
        {
            let ok = probe::check(plan).await.is_ok();
            run.readiness.record(ok, plan);
            run.view.ready = run.readiness.ready;
            run.next_probe = Instant::now() + plan.period;
        }
        return;
    }
    if run.start_at.is_some_and(|at| now >= at) {
        start(ctx, names, pod, run).await;
    }
}

async fn start(ctx: &PodContext, names: &Names, pod: &Pod, run: &mut Run) {
    let image = run.spec.image.clone().unwrap_or_default();
    let Some(entrypoint) = ctx.images.resolve(&image) else {
        run.waiting(
            "ErrImagePull",
            format!(
                "image {image:?} is not mapped to a local program by the test node agent \
                 (its ImageMap maps repositories ending in {:?})",
                ctx.images.repositories()
            ),
        );
        return;
    };
    // Each Secret once, whether the container reads it as env, as a volume, or both.
    let refs = env::references(&run.spec);
    let secret_names: BTreeSet<String> = refs
        .secrets
        .iter()
        .cloned()
        .chain(volume::secret_names(pod, &run.spec))
        .collect();
    let secrets = match fetch_secrets(&ctx.client, &names.namespace, secret_names).await {
        Ok(secrets) => secrets,
        Err(message) => return run.waiting("CreateContainerConfigError", message),
    };
    let sources = match fetch_sources(&ctx.client, &names.namespace, refs, &secrets).await {
        Ok(sources) => sources,
        Err(message) => return run.waiting("CreateContainerConfigError", message),
    };
    let mut base = host_env();
    base.push(("HOSTNAME".into(), names.name.clone()));
    base.extend(entrypoint.env.iter().cloned());
    let env = match env::resolve(pod, &run.spec, &base, &sources) {
        Ok(env) => env,
        Err(message) => return run.waiting("CreateContainerConfigError", message),
    };
    let pod_dir = format!("{}_{}_{}", names.namespace, names.name, names.uid);
    let mounts = match volume::mounts(&ctx.dir, pod, &pod_dir, &run.spec, &secrets) {
        Ok(mounts) => mounts,
        Err(message) => return run.waiting("CreateContainerConfigError", message),
    };
    let env: Vec<(String, String)> = env
        .into_iter()
        .map(|(k, v)| (k, volume::translate(&v, &mounts)))
        .collect();
    let command = env::expand_all(run.spec.command.as_ref(), &env);
    let args: Vec<String> = env::expand_all(run.spec.args.as_ref(), &env)
        .iter()
        .map(|a| volume::translate(a, &mounts))
        .collect();
    let argv = image::argv(entrypoint, &command, &args);
    let dir = ctx.dir.join("pods").join(&pod_dir).join(&run.spec.name);
    let log = log_file(&ctx.dir, &names.namespace, &names.name, &run.spec.name);
    match Process::spawn(&argv, &env, &dir, &log).await {
        Ok(process) => {
            run.process = Some(process);
            run.starts += 1;
            run.started_at = Timestamp::now();
            run.view.restart_count = run.starts - 1;
            run.view.image_id = format!("roundtable-node-agent://{}", entrypoint.program.display());
            run.view.state = State::Running {
                started_at: run.started_at,
                container_id: container_id(names, run),
            };
            run.start_at = None;
            let pod_ip = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .unwrap_or_default();
            run.probe = match probe::readiness(&run.spec, &pod_ip) {
                None => None,
                Some(Ok(plan)) => Some(plan),
                Some(Err(e)) => {
                    say(format_args!(
                        "roundtable-node-agent: {names} container {}: readiness probe not run, \
                         the container never becomes ready: {e}",
                        run.spec.name
                    ));
                    None
                }
            };
            run.readiness = Readiness::default();
            run.view.ready = run.spec.readiness_probe.is_none();
            if let Some(plan) = &run.probe {
                run.next_probe = Instant::now() + plan.initial_delay;
            }
        }
        Err(e) => run.waiting("RunContainerError", e.to_string()),
    }
}

fn container_id(names: &Names, run: &Run) -> String {
    format!(
        "roundtable-node-agent://{}-{}-{}",
        names.uid, run.spec.name, run.starts
    )
}

/// What a container inherits from the test process: enough to find programs on `PATH`.
fn host_env() -> Vec<(String, String)> {
    ["PATH", "HOME"]
        .into_iter()
        .filter_map(|name| Some((name.to_owned(), std::env::var(name).ok()?)))
        .collect()
}

/// The data of the named Secrets that exist.
async fn fetch_secrets(
    client: &Client,
    namespace: &str,
    names: BTreeSet<String>,
) -> Result<volume::SecretData, String> {
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    let mut out = volume::SecretData::new();
    for name in names {
        let found = secrets
            .get_opt(&name)
            .await
            .map_err(|e| format!("reading secret {name:?}: {e}"))?;
        if let Some(secret) = found {
            let data = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            out.insert(name, data);
        }
    }
    Ok(out)
}

/// What the container's env refers to: its ConfigMaps, read here, and its Secrets, from
/// `secrets` (values decoded to UTF-8).
async fn fetch_sources(
    client: &Client,
    namespace: &str,
    refs: env::References,
    secrets: &volume::SecretData,
) -> Result<Sources, String> {
    let mut sources = Sources::default();
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    for name in refs.config_maps {
        let found = config_maps
            .get_opt(&name)
            .await
            .map_err(|e| format!("reading configmap {name:?}: {e}"))?;
        if let Some(cm) = found {
            sources
                .config_maps
                .insert(name, cm.data.unwrap_or_default());
        }
    }
    for name in refs.secrets {
        if let Some(data) = secrets.get(&name) {
            let data = data
                .iter()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect();
            sources.secrets.insert(name, data);
        }
    }
    Ok(sources)
}

/// The grace period of a deletion in progress, else the pod's own; at least
/// [`MIN_GRACE`], as the kubelet gives every container a moment to handle SIGTERM even when
/// its pod is force-deleted.
fn grace(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0)).max(MIN_GRACE)
}

fn readiness_gates_ready(pod: &Pod) -> bool {
    let gates = pod.spec.as_ref().and_then(|s| s.readiness_gates.as_ref());
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    gates.into_iter().flatten().all(|gate| {
        conditions
            .into_iter()
            .flatten()
            .any(|c| c.type_ == gate.condition_type && c.status == "True")
    })
}

/// SIGTERM to every running container, up to `grace` for all to exit, then SIGKILL; each
/// ends Terminated.
async fn stop_all(names: &Names, runs: &mut [Run], grace: Duration) {
    for run in runs.iter() {
        if let Some(process) = &run.process {
            process.signal("TERM").await;
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline
        && runs
            .iter()
            .any(|r| r.process.as_ref().is_some_and(|p| p.exit_code().is_none()))
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for run in runs.iter_mut() {
        let Some(process) = run.process.take() else {
            continue;
        };
        let code = process.stop(Duration::ZERO).await.unwrap_or(128 + 9);
        run.view.ready = false;
        run.start_at = None;
        run.view.state = State::Terminated(Terminated {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: run.started_at,
            finished_at: Timestamp::now(),
            container_id: container_id(names, run),
        });
    }
}

fn status_body(
    ip: Ipv4Addr,
    start_time: Timestamp,
    views: &[ContainerView],
    conditions: &Conditions,
    message: Option<&str>,
) -> serde_json::Value {
    let status = status::pod_status(ip, start_time, views, conditions, message);
    json!({ "apiVersion": "v1", "kind": "Pod", "status": status })
}

/// The pod no longer exists.
struct Gone;

/// Applies the status; `Ok(false)` when the write failed and should be retried.
async fn write_status(
    pods: &Api<Pod>,
    names: &Names,
    body: serde_json::Value,
) -> Result<bool, Gone> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match pods
        .patch_status(&names.name, &params, &Patch::Apply(body))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Err(Gone),
        Err(e) => {
            say(format_args!(
                "roundtable-node-agent: writing the status of {names}: {e}"
            ));
            Ok(false)
        }
    }
}

/// Deletes the pod for good, as a kubelet does once its containers have stopped.
async fn finish_deletion(pods: &Api<Pod>, names: &Names) {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(names.uid.clone()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match pods.delete(&names.name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
        Err(e) => say(format_args!("roundtable-node-agent: deleting {names}: {e}")),
    }
}
