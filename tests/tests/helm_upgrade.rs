//! `helm upgrade` from the previous version of the chart to this checkout's, under a live
//! session: the previous version's chart, operator, control plane and media server (built from
//! that commit, once, and cached) run a session that people are watching; the CRDs are
//! upgraded as the README says (`kubectl apply --server-side --force-conflicts -f
//! charts/roundtable/crds/`), then the release. What a user notices is asserted:
//! - every watcher keeps receiving video through the upgrade (none dropped; the longest gap
//!   between two frames is printed);
//! - the CRDs were upgraded in place (same objects) and serve this version's schema;
//! - the session's status is kept (still Live, same endpoint, its start time and peaks);
//! - a new operator replica takes the lead;
//! - a late joiner, through the upgraded control plane's `/sfu/` signalling proxy, watches.
//!
//! The previous version is [`PREVIOUS_VERSION`] (the chart and binaries as round 1 left them,
//! with the CRDs' previous shape), or `ROUNDTABLE_UPGRADE_FROM=<commit>`. Its binaries are built in a cargo
//! target directory of their own under the roundtable cache (`upgrade-from/`), so the build
//! of this checkout is never replaced; the first run pays one build (dev profile) of that commit.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, ListParams};
use roundtable_crds::Session;
use roundtable_e2e::helm::{chart_dir, post_until_ok, registration_token, roundtable_entrypoint};
use roundtable_e2e::node_agent::{self, ImageMap, NodeAgent, NodeSpec};
use roundtable_e2e::{Cluster, KubectlOutput, poll, wait_until};
use serde_json::Value;
use sfu_node::client::{ClientPeer, ClientRole, Watcher};
use str0m::Event;
use tokio::sync::watch;

/// Set to a commit to upgrade from instead of the default (see the module docs).
const UPGRADE_FROM_ENV: &str = "ROUNDTABLE_UPGRADE_FROM";
/// The version users upgrade from: the chart, CRDs and binaries as round 1 left them (the
/// CRDs' previous shape). Pinned, not derived from the history, so its one build stays cached
/// until a new release is chosen here.
const PREVIOUS_VERSION: &str = "ed81915bb6b295554d63b6813960e7d5c094c638";
/// A cold build of a whole earlier version on a small machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(60 * 60);
const EVENT: &str = "upgrade-night";
const SESSION: &str = "upgrade-keynote";
const WATCHERS: usize = 3;
/// A watcher that sees no video for this long has lost the session, as a person would see it.
const DROPPED_AFTER: Duration = Duration::from_secs(1);
/// How long the page-style watcher watches from the start of the upgrade: past the control
/// plane's restart and the operator's change of leader.
const PAGE_WATCHES: Duration = Duration::from_secs(60);

fn ok(out: KubectlOutput) -> String {
    assert!(out.success(), "{} failed: {}", out.command, out.stderr);
    out.stdout
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The cache the other builds of the tests use (tests/helm/build.sh, tests/k8s/build.sh).
fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ROUNDTABLE_CACHE") {
        return dir.into();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
    base.join("roundtable")
}

fn git(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(repo_root())
        .output()
        .map_err(|e| format!("git {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The commit to upgrade from, as a full hash; panics saying what to do when this clone does
/// not have it.
fn previous_version() -> String {
    let shallow = git(&["rev-parse", "--is-shallow-repository"]).is_ok_and(|s| s == "true");
    let hint = if shallow {
        " This clone is shallow: fetch the history (`git fetch --unshallow`) or name a commit \
         it has with ROUNDTABLE_UPGRADE_FROM=<commit>."
    } else {
        " Name a commit to upgrade from with ROUNDTABLE_UPGRADE_FROM=<commit>."
    };
    let wanted = match std::env::var(UPGRADE_FROM_ENV) {
        Ok(rev) => rev,
        Err(_) => PREVIOUS_VERSION.to_owned(),
    };
    git(&["rev-parse", "--verify", &format!("{wanted}^{{commit}}")]).unwrap_or_else(|e| {
        panic!("the version to upgrade from, {wanted}, is not here: {e}.{hint}")
    })
}

/// The previous version: its chart and its `roundtable` and `sfu-node` binaries.
struct Previous {
    chart: PathBuf,
    roundtable: PathBuf,
    sfu_node: PathBuf,
}

/// Extracts `rev` (`git archive`) and builds its binaries, both once per commit.
async fn previous_release(rev: &str) -> Previous {
    let root = cache_dir().join("upgrade-from");
    let dir = root.join(rev);
    let src = dir.join("src");
    let bin = dir.join("bin");
    let previous = Previous {
        chart: src.join("charts/roundtable"),
        roundtable: bin.join("roundtable"),
        sfu_node: bin.join("sfu-node"),
    };
    if previous.roundtable.is_file() && previous.sfu_node.is_file() {
        return previous;
    }
    if !src.join("Cargo.lock").is_file() {
        let partial = dir.join("src.partial");
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial).unwrap();
        let archive = std::process::Command::new("sh")
            .args(["-c", "git archive \"$REV\" | tar -x -C \"$DEST\""])
            .env("REV", rev)
            .env("DEST", &partial)
            .current_dir(repo_root())
            .status()
            .unwrap();
        assert!(archive.success(), "git archive {rev} failed");
        let _ = std::fs::remove_dir_all(&src);
        std::fs::rename(&partial, &src).unwrap();
    }
    // Its own target directory: building the older sources where this checkout's binaries
    // are would replace them (same names) for every other test.
    let target = root.join("target");
    eprintln!(
        "e2e: building roundtable and sfu-node of {rev} (once; cached in {})",
        bin.display()
    );
    let began = Instant::now();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = tokio::process::Command::new(cargo);
    // The dev profile without debug info: about half the work of a release build on a
    // fresh machine (where this build is part of CI's time), and an upgrade test with a
    // handful of watchers needs no optimised SFU.
    build
        .args(["build", "--locked", "--bin", "roundtable"])
        .args(["--bin", "sfu-node"])
        .args(["--config", "profile.dev.debug=false"])
        .current_dir(&src)
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_INCREMENTAL", "0")
        .kill_on_drop(true);
    let status = tokio::time::timeout(BUILD_TIMEOUT, build.status())
        .await
        .unwrap_or_else(|_| panic!("the build of {rev} took over {BUILD_TIMEOUT:?}"))
        .unwrap();
    assert!(status.success(), "the build of {rev} failed: {status}");
    std::fs::create_dir_all(&bin).unwrap();
    for name in ["roundtable", "sfu-node"] {
        let partial = bin.join(format!("{name}.partial"));
        std::fs::copy(target.join("debug").join(name), &partial).unwrap();
        std::fs::rename(&partial, bin.join(name)).unwrap();
    }
    eprintln!("e2e: built {rev} in {:.1?}", began.elapsed());
    previous
}

/// The values of both installs: the chart's pods on this test's system node, the control
/// plane's database on an emptyDir, SFU host ports on their own range.
fn values(pool: &str, images: &str) -> String {
    let placement = format!(
        "nodeSelector: {{e2e.roundtable.dev/pool: {pool}}}\n  tolerations: [{{key: e2e.roundtable.dev/pool, operator: Equal, value: {pool}, effect: NoSchedule}}]"
    );
    format!(
        r#"
{images}
api:
  publicUrl: https://events.example.com
  registration: {{keySecret: registration}}
  database: {{persistence: {{enabled: false}}}}
  {placement}
bindAddress: "$(POD_IP)"
media: {{hostPorts: {{first: 35000, last: 35099}}}}
operator:
  drainGraceSeconds: 3
  statsIntervalSeconds: 1
  {placement}
"#
    )
}

/// An event whose organisers are the people of this test, and its session, started now.
fn manifests() -> String {
    let mut organizers = vec![
        "ada@example.com".to_string(),
        "late@example.com".into(),
        "page@example.com".into(),
    ];
    organizers.extend((0..WATCHERS).map(|i| format!("watcher{i}@example.com")));
    format!(
        r#"
apiVersion: roundtable.dev/v1alpha1
kind: LiveEvent
metadata:
  name: {EVENT}
spec:
  title: Upgrade night
  start: "2026-01-01T17:00:00Z"
  end: "2036-01-01T22:00:00Z"
  organizers: [{organizers}]
  sfu:
    placement:
      nodeSelector:
        roundtable.dev/media: "true"
      tolerations:
        - key: roundtable.dev/media
          operator: Exists
          effect: NoSchedule
    network:
      mode: HostPort
---
apiVersion: roundtable.dev/v1alpha1
kind: Session
metadata:
  name: {SESSION}
spec:
  event: {EVENT}
  title: The keynote that outlives an upgrade
  share:
    policy: Open
  lifecycle: Started
"#,
        organizers = organizers.join(", ")
    )
}

/// The property paths of an OpenAPI v3 schema (`spec.share.policy`, `status.watching`, ...).
fn property_paths(schema: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Some(props) = schema["properties"].as_object() {
        for (name, sub) in props {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            out.insert(path.clone());
            property_paths(sub, &path, out);
        }
    }
    if schema["items"].is_object() {
        property_paths(&schema["items"], &format!("{prefix}[]"), out);
    }
    if schema["additionalProperties"].is_object() {
        property_paths(
            &schema["additionalProperties"],
            &format!("{prefix}{{}}"),
            out,
        );
    }
}

/// The property paths of each version of a CRD, from its JSON.
fn schema_paths(crd: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for version in crd["spec"]["versions"].as_array().into_iter().flatten() {
        let name = version["name"].as_str().unwrap_or_default();
        let mut paths = BTreeSet::new();
        property_paths(&version["schema"]["openAPIV3Schema"], "", &mut paths);
        out.extend(paths.into_iter().map(|p| format!("{name}:{p}")));
    }
    out
}

/// The CRD files of a chart, by name, as JSON.
fn chart_crds(chart: &Path) -> Vec<(String, Value)> {
    let mut crds: Vec<(String, Value)> = std::fs::read_dir(chart.join("crds"))
        .unwrap()
        .map(|f| f.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let crd: Value = serde_yaml::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (crd["metadata"]["name"].as_str().unwrap().to_owned(), crd)
        })
        .collect();
    crds.sort_by(|a, b| a.0.cmp(&b.0));
    crds
}

/// What one watcher saw: video frames and when they came.
#[derive(Debug, Default)]
struct Seen {
    frames: u64,
    last: Option<Instant>,
    longest_gap: Duration,
    /// Why the watcher's peer stopped, if it did before the test ended it.
    ended: Option<String>,
}

impl Seen {
    fn frame(&mut self, at: Instant) {
        if let Some(last) = self.last {
            self.longest_gap = self.longest_gap.max(at - last);
        }
        self.last = Some(at);
        self.frames += 1;
    }
}

/// Watches `room` on the SFU at `http` (`path` is the WHEP path there) until `stop`,
/// recording every video frame in the returned log.
async fn watch_room(
    http: SocketAddr,
    path: &str,
    token: &str,
    mut stop: watch::Receiver<bool>,
) -> (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let (mut peer, _) = ClientPeer::connect(http, path, token, ClientRole::View { slots: 2 })
        .await
        .unwrap_or_else(|e| panic!("WHEP {path} at {http}: {e}"));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let log = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            if *stop.borrow() {
                return;
            }
            let until = Instant::now() + Duration::from_millis(50);
            let events = tokio::select! {
                _ = stop.changed() => return,
                events = peer.step(until) => events,
            };
            let now = Instant::now();
            match events {
                Ok(events) => {
                    let mut seen = log.lock().unwrap();
                    for e in events {
                        if matches!(&e, Event::MediaData(m) if m.params.spec().codec.is_video()) {
                            seen.frame(now);
                        }
                    }
                }
                Err(e) => {
                    log.lock().unwrap().ended = Some(e.to_string());
                    return;
                }
            }
            if !peer.rtc.is_alive() {
                log.lock().unwrap().ended = Some("the peer connection closed".into());
                return;
            }
        }
    });
    (seen, task)
}

/// Joins the session through the control plane at `base` as `token`'s person (an organiser).
async fn join(http: &reqwest::Client, base: &str, namespace: &str, token: &str) -> Value {
    let url = format!("{base}/api/sessions/{namespace}/{SESSION}/join");
    let body = post_until_ok(http, &url, token)
        .await
        .unwrap_or_else(|last| panic!("POST {url}: {last}"));
    serde_json::from_str(&body).expect("a join answer is JSON")
}

/// The ready control-plane pod whose image starts with `image`, and its address.
async fn control_plane(pods: &Api<Pod>, image: &str) -> Option<(String, IpAddr)> {
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=api"))
        .await
        .ok()?;
    for pod in list.items {
        let pod_image = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        if !pod_image.starts_with(image)
            || !node_agent::is_ready(&pod)
            || pod.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_ref())
            .and_then(|ip| ip.parse().ok());
        if let (Some(name), Some(ip)) = (pod.metadata.name.clone(), ip) {
            return Some((name, ip));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn helm_upgrade_from_the_previous_version_keeps_a_live_session_and_its_watchers() {
    let rev = previous_version();
    let short = &rev[..9];
    let previous = previous_release(&rev).await;
    eprintln!("e2e: upgrading from {short}");

    let cluster = Cluster::shared().await.unwrap();
    cluster.start_controller_manager().await.unwrap();
    cluster.start_scheduler().await.unwrap();
    let ns = cluster.namespace("helm-upgrade").await.unwrap();
    let admin = ns.client.clone();
    let registration_key = cluster
        .create_registration_secret(admin.clone(), &ns.name)
        .await
        .unwrap();
    let scratch = cluster.dir().join(&ns.name);
    std::fs::create_dir_all(&scratch).unwrap();

    // Both versions' images on the same nodes: the previous version's under repositories of
    // their own (as a new release's images carry a new tag), this checkout's as the chart
    // names them. The kubeconfigs are written once the install has made the ServiceAccounts.
    let operator_kubeconfig = scratch.join("operator.kubeconfig");
    let api_kubeconfig = scratch.join("api.kubeconfig");
    let old_entrypoint = roundtable_entrypoint(
        &scratch.join("roundtable-previous.sh"),
        &previous.roundtable,
        &operator_kubeconfig,
        &api_kubeconfig,
    )
    .unwrap();
    let roundtable = node_agent::workspace_binary("roundtable", "roundtable")
        .await
        .unwrap();
    let sfu_node = node_agent::workspace_binary("sfu-node", "sfu-node")
        .await
        .unwrap();
    let new_entrypoint = roundtable_entrypoint(
        &scratch.join("roundtable.sh"),
        &roundtable,
        &operator_kubeconfig,
        &api_kubeconfig,
    )
    .unwrap();
    let images = ImageMap::new()
        .map("previous/roundtable", old_entrypoint)
        .map("previous/sfu-node", &previous.sfu_node)
        .map("roundtable", new_entrypoint)
        .map("sfu-node", sfu_node);
    let pool = ns.name.clone();
    let system = NodeSpec::new(format!("{pool}-system"))
        .label("e2e.roundtable.dev/pool", &pool)
        .taint("e2e.roundtable.dev/pool", &pool, "NoSchedule")
        .cpu("8")
        .memory("16Gi");
    let media = |suffix: &str| {
        NodeSpec::new(format!("{pool}-{suffix}"))
            .label("roundtable.dev/media", "true")
            .taint("roundtable.dev/media", "", "NoSchedule")
            .cpu("8")
            .memory("16Gi")
    };
    let agent = NodeAgent::start(cluster, vec![system, media("a"), media("b")], images)
        .await
        .unwrap();

    // The previous version, installed as its README said.
    let old_images = "image: {roundtable: {repository: registry.test/previous/roundtable}, \
                      sfuNode: {repository: registry.test/previous/sfu-node}}";
    let chart = previous.chart.to_string_lossy().into_owned();
    ok(cluster
        .helm_with_stdin(
            &["install", "rt", &chart, "-n", &ns.name, "--values", "-"],
            &values(&pool, old_images),
        )
        .await
        .unwrap());
    for (account, path) in [
        ("rt-roundtable-operator", &operator_kubeconfig),
        ("rt-roundtable-api", &api_kubeconfig),
    ] {
        cluster
            .service_account_kubeconfig(&ns.name, account, path)
            .await
            .unwrap();
    }
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns.name);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns.name);
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &ns.name);
    let ready = async |name: &str, replicas: i32| {
        let d = deployments.get(name).await.ok()?;
        let status = d.status?;
        (status.ready_replicas? == replicas
            && status.updated_replicas? == replicas
            && status.replicas? == replicas)
            .then_some(())
    };
    if poll(Duration::from_secs(120), async || {
        ready("rt-roundtable-operator", 2).await?;
        ready("rt-roundtable-api", 1).await
    })
    .await
    .is_none()
    {
        let names: Vec<String> = pods
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect();
        panic!("the previous version's pods were not ready in 120s: {names:?}");
    }
    let holder = async || {
        leases
            .get("roundtable-operator")
            .await
            .ok()?
            .spec?
            .holder_identity
    };
    let old_leader = wait_until("a leader", Duration::from_secs(30), async || holder().await).await;

    // A live session: the previous operator starts its SFU pod; one person on camera, three
    // watching, each joined through the previous control plane.
    ok(cluster
        .kubectl_with_stdin(&["apply", "-n", &ns.name, "-f", "-"], Some(&manifests()))
        .await
        .unwrap());
    let sessions: Api<DynamicObject> =
        Api::namespaced_with(admin.clone(), &ns.name, &ApiResource::erase::<Session>(&()));
    let status = async || -> Option<Value> {
        let session = sessions.get(SESSION).await.ok()?;
        session.data.get("status").cloned()
    };
    let endpoint = wait_until("the session Live", Duration::from_secs(120), async || {
        let status = status().await?;
        (status["phase"] == "Live").then(|| status["endpoint"].as_str().map(str::to_owned))?
    })
    .await;
    let sfu: SocketAddr = endpoint.parse().expect("endpoint is host:port");
    let sfu_pod_uid = pods
        .get(&format!("session-{SESSION}"))
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    let http = reqwest::Client::new();
    let (_, old_cp) = control_plane(&pods, "registry.test/previous/roundtable")
        .await
        .expect("the previous control plane");
    let old_base = format!("http://{old_cp}:8080");
    let person = |email: &str| registration_token(registration_key.as_bytes(), email, email);

    let ada = join(&http, &old_base, &ns.name, &person("ada@example.com")).await;
    let room = ada["room"].as_str().unwrap().to_owned();
    let (mut publisher, _) = ClientPeer::connect(
        sfu,
        &format!("/rooms/{room}/whip"),
        ada["token"].as_str().unwrap(),
        ClientRole::Publish { simulcast: false },
    )
    .await
    .expect("on camera through the previous version");
    let publishing = tokio::spawn(async move {
        publisher
            .publish_until(Instant::now() + Duration::from_secs(600), false)
            .await
    });
    let (stop, stop_rx) = watch::channel(false);
    let mut watchers = Vec::new();
    for i in 0..WATCHERS {
        let joined = join(
            &http,
            &old_base,
            &ns.name,
            &person(&format!("watcher{i}@example.com")),
        )
        .await;
        watchers.push(
            watch_room(
                sfu,
                &format!("/rooms/{room}/whep"),
                joined["token"].as_str().unwrap(),
                stop_rx.clone(),
            )
            .await,
        );
    }
    // And one as the previous version's page watches: its events socket and WHEP straight to
    // the SFU pod (the signalling proxy came later), as `participant` of that socket.
    let page_join = join(&http, &old_base, &ns.name, &person("page@example.com")).await;
    let page = Watcher::join(
        &format!("http://{endpoint}"),
        &room,
        page_join["token"].as_str().unwrap(),
        2,
    )
    .await
    .expect("a page-style watcher joins the previous version");
    wait_until(
        "video flowing to every watcher",
        Duration::from_secs(20),
        async || {
            watchers
                .iter()
                .all(|(seen, _)| seen.lock().unwrap().frames >= 30)
                .then_some(())
        },
    )
    .await;
    let before = wait_until(
        "the status to count the watchers",
        Duration::from_secs(20),
        async || {
            let status = status().await?;
            (status["watching"].as_i64()? >= WATCHERS as i64).then_some(status)
        },
    )
    .await;

    // What the CRDs serve before: the previous version's schema.
    let current = chart_crds(&chart_dir());
    let old_files = chart_crds(&previous.chart);
    let mut served_before = Vec::new();
    for (name, _) in &current {
        let crd = crds.get(name).await.unwrap();
        let json = serde_json::to_value(&crd).unwrap();
        served_before.push((crd.metadata.uid.clone().unwrap(), schema_paths(&json)));
    }

    // The upgrade: the CRDs first (Helm never upgrades them), then the release, to this
    // checkout's chart and images (`values` without the previous images).
    let upgrade_began = Instant::now();
    let page_watching = tokio::spawn(page.watch_until(upgrade_began + PAGE_WATCHES));
    let phases = Arc::new(Mutex::new(BTreeSet::new()));
    let sampling = tokio::spawn({
        let phases = phases.clone();
        let sessions = sessions.clone();
        let mut stop = stop_rx.clone();
        async move {
            while !*stop.borrow() {
                if let Ok(session) = sessions.get(SESSION).await {
                    let phase = session.data["status"]["phase"].as_str().map(str::to_owned);
                    phases.lock().unwrap().insert(phase.unwrap_or_default());
                }
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
        }
    });
    let crd_dir = chart_dir().join("crds");
    ok(cluster
        .kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            crd_dir.to_str().unwrap(),
        ])
        .await
        .unwrap());
    let crds_applied = upgrade_began.elapsed();
    let current_chart = chart_dir().to_string_lossy().into_owned();
    ok(cluster
        .helm_with_stdin(
            &[
                "upgrade",
                "rt",
                &current_chart,
                "-n",
                &ns.name,
                "--values",
                "-",
            ],
            &values(&pool, ""),
        )
        .await
        .unwrap());
    let helm_upgraded = upgrade_began.elapsed();

    // A replica of the new version takes the lead.
    let new_leader = wait_until(
        "a leader of the new version",
        Duration::from_secs(120),
        async || {
            let name = holder().await?;
            let pod = pods.get(&name).await.ok()?;
            let image = pod.spec?.containers.first()?.image.clone()?;
            (!image.contains("/previous/")).then_some(name)
        },
    )
    .await;
    let leader_after = upgrade_began.elapsed();
    wait_until(
        "both releases' Deployments rolled out",
        Duration::from_secs(120),
        async || {
            ready("rt-roundtable-operator", 2).await?;
            ready("rt-roundtable-api", 1).await
        },
    )
    .await;
    let (_, new_cp) = wait_until(
        "the new control plane",
        Duration::from_secs(60),
        async || control_plane(&pods, "ghcr.io/roundtable-dev/roundtable").await,
    )
    .await;
    // The new operator reconciles the live session with what the old one made: watch on
    // for a while after it took over.
    tokio::time::sleep(Duration::from_secs(10)).await;

    // A late joiner, through the new control plane's signalling proxy.
    let late = join(
        &http,
        &format!("http://{new_cp}:8080"),
        &ns.name,
        &person("late@example.com"),
    )
    .await;
    let proxied = late["signalling"]["sfu"]
        .as_str()
        .unwrap_or_else(|| panic!("signalling paths in the join answer: {late}"));
    let (late_seen, late_task) = watch_room(
        SocketAddr::new(new_cp, 8080),
        &format!("{proxied}/rooms/{room}/whep"),
        late["token"].as_str().unwrap(),
        stop_rx.clone(),
    )
    .await;
    wait_until(
        "video to the late joiner",
        Duration::from_secs(20),
        async || (late_seen.lock().unwrap().frames >= 60).then_some(()),
    )
    .await;
    let after = wait_until(
        "the status after the upgrade",
        Duration::from_secs(20),
        async || {
            let status = status().await?;
            (status["watching"].as_i64()? > WATCHERS as i64).then_some(status)
        },
    )
    .await;
    // The page-style watcher watches on to its end while the publisher is still on camera.
    let page = page_watching.await.unwrap();
    let watched_for = upgrade_began.elapsed();
    stop.send(true).unwrap();
    for (_, task) in &mut watchers {
        let _ = task.await;
    }
    let _ = late_task.await;
    let _ = sampling.await;
    publishing.abort();

    eprintln!(
        "e2e: upgrade from {short}: CRDs applied in {crds_applied:.2?}, helm upgrade done \
         {helm_upgraded:.2?} in, new leader {new_leader} {leader_after:.2?} after the upgrade \
         began (was {old_leader}), watched {watched_for:.1?}"
    );
    for (i, (seen, _)) in watchers.iter().enumerate() {
        let seen = seen.lock().unwrap();
        eprintln!(
            "e2e: watcher {i}: {} frames, longest gap {:.1?}{}",
            seen.frames,
            seen.longest_gap,
            seen.ended
                .as_ref()
                .map(|e| format!(", ended: {e}"))
                .unwrap_or_default()
        );
    }
    eprintln!(
        "e2e: page-style watcher (events socket and WHEP at the pod), the upgrade's first {PAGE_WATCHES:?}: \
         {} frames, longest gap {:.1?}, events socket closed: {}",
        page.video_frames, page.max_gap, page.closed
    );
    let late_frames = late_seen.lock().unwrap().frames;
    eprintln!("e2e: late joiner through /sfu/ on the new control plane: {late_frames} frames");

    // Zero watchers dropped: video kept coming to each, without a gap a person would see.
    let dropped: Vec<String> = watchers
        .iter()
        .enumerate()
        .filter_map(|(i, (seen, _))| {
            let seen = seen.lock().unwrap();
            let last = seen.last?;
            let stalled = upgrade_began + watched_for - last > DROPPED_AFTER;
            (seen.ended.is_some() || stalled || seen.longest_gap > DROPPED_AFTER).then(|| {
                format!(
                    "watcher {i}: longest gap {:.1?}, last frame {:.1?} after the upgrade began, \
                     ended: {:?}",
                    seen.longest_gap,
                    last - upgrade_began,
                    seen.ended
                )
            })
        })
        .collect();
    assert!(
        !page.closed && page.max_gap <= DROPPED_AFTER && page.video_frames > 0,
        "the page-style watcher lost the session: {} frames, longest gap {:.1?}, events \
         socket closed: {}",
        page.video_frames,
        page.max_gap,
        page.closed
    );
    assert!(
        dropped.is_empty(),
        "watchers lost the session during the upgrade:\n{}",
        dropped.join("\n")
    );
    let sfu_pod = pods.get(&format!("session-{SESSION}")).await.unwrap();
    assert_eq!(
        sfu_pod.metadata.uid.as_deref(),
        Some(sfu_pod_uid.as_str()),
        "the session's SFU pod is the one the previous version started"
    );

    // The CRDs were upgraded in place and serve this version's schema: every property of the
    // chart's CRDs, including those the previous version did not have.
    for ((name, file), (uid, before)) in current.iter().zip(&served_before) {
        let crd = crds.get(name).await.unwrap();
        assert_eq!(
            crd.metadata.uid.as_ref(),
            Some(uid),
            "{name} is the same object"
        );
        let served = schema_paths(&serde_json::to_value(&crd).unwrap());
        let wanted = schema_paths(file);
        let missing: Vec<&String> = wanted.difference(&served).collect();
        assert!(missing.is_empty(), "{name} does not serve {missing:?}");
        let old = old_files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| schema_paths(f))
            .unwrap_or_default();
        let added: Vec<&String> = wanted.difference(&old).collect();
        assert!(
            added.iter().all(|p| !before.contains(*p)),
            "{name} served {added:?} before the upgrade: the test did not install the previous CRDs"
        );
        eprintln!(
            "e2e: {name}: {} properties served, {} of them new since {short}",
            served.len(),
            added.len()
        );
    }

    // The session's status was kept: Live throughout, same endpoint, start time and peaks.
    let phases = phases.lock().unwrap().clone();
    assert_eq!(
        phases,
        BTreeSet::from(["Live".to_string()]),
        "the session's phase during the upgrade"
    );
    assert_eq!(after["endpoint"], before["endpoint"]);
    assert_eq!(after["startedAt"], before["startedAt"]);
    assert!(
        after["peakWatching"].as_i64() >= before["peakWatching"].as_i64(),
        "peakWatching {} then {}",
        before["peakWatching"],
        after["peakWatching"]
    );
    assert!(
        late_frames >= 60,
        "the late joiner watches: {late_frames} frames"
    );
    assert_ne!(new_leader, old_leader);
    agent.stop().await.unwrap();
}
