//! The chart end to end on a real node: the kubelet (built from the same Kubernetes module as
//! the API server), containerd and runc run the images that `images/build.sh` built from this
//! checkout's release binaries (see `roundtable_e2e::real_node`).
//!
//! - `helm install` with `image.pullPolicy: Never`: the operator and the control plane run
//!   as containers with the chart's ServiceAccount tokens, mounted by the kubelet, and reach
//!   the API server at the `kubernetes` Service address;
//! - the example session is Started through the control plane; its sfu-node pod becomes
//!   Ready through the kubelet's own readiness probe, and the time from Start to Ready is
//!   printed;
//! - a str0m publisher and a watcher exchange media through the UDP and TCP hostPort at
//!   `status.endpoint` (portmap);
//! - the sfu-node container's process is killed; the time until the room is back is printed;
//! - the chart's coturn, from the coturn image that `images/build.sh` builds from Debian's
//!   coturn, binds 443 as uid 65534 on the node's network and takes the join answer's TURN
//!   credential over TLS (`turn.tls`);
//! - the recorder Job's container writes the MP4 onto a PersistentVolume as uid 65532 and
//!   the Session lists it;
//! - `helm uninstall` (after the event is deleted) leaves no container running.
//!
//! Runs when `ROUNDTABLE_REAL_NODE_IMAGES` names the image list that `scripts/test-all` makes;
//! skips with a message otherwise, and when the machine lacks a capability.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use roundtable_crds::{LivePhase, RecordingState, Session};
use roundtable_e2e::node_agent::is_ready;
use roundtable_e2e::real_node::{self, RealNode};
use roundtable_e2e::turn::{self, Allocation};
use roundtable_e2e::{Cluster, KubectlOutput, poll, unix_now, wait_until};
use sfu_node::auth::{Claims, mint};
use sfu_node::client::{ClientPeer, ClientRole, Watcher};

const PUBLIC_URL: &str = "https://events.example.com";
/// The name in coturn's certificate and in the `turns:` URL.
const TURN_HOST: &str = "turn.example.com";
const SESSION: &str = "gala-future-of-work";
const EVENT: &str = "gala";

fn ok(out: KubectlOutput) -> String {
    assert!(out.success(), "{} failed: {}", out.command, out.stderr);
    out.stdout
}

/// Says why the test is skipped on the real stderr (the harness captures `eprintln!`).
fn skip(why: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n!!! SKIPPED real-node test: {why}\n"
    );
}

/// The images to run, or why this test does not run here.
fn images_or_skip() -> Option<Vec<(String, std::path::PathBuf)>> {
    if let Some(missing) = real_node::missing_capability() {
        skip(format_args!(
            "this machine cannot run a kubelet and containerd: {missing}"
        ));
        return None;
    }
    match real_node::images_from_env() {
        Some(images) => Some(images.unwrap()),
        None => {
            skip(format_args!(
                "{} is not set; scripts/test-all builds the images (images/build.sh) and sets it",
                real_node::IMAGES_ENV
            ));
            None
        }
    }
}

/// An HS256 registration token, as an external registration system would sign it.
fn registration_token(key: &[u8], email: &str, name: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": email, "name": name, "tickets": [], "exp": unix_now() + 600}),
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .unwrap()
}

fn failure(node: &RealNode, namespace: &str, pods: &[(&str, &str)]) -> String {
    let mut out = node.log_tails(30);
    for (pod, container) in pods {
        out.push_str(&format!(
            "\n--- {pod}/{container} ---\n{}",
            node.log(namespace, pod, container)
        ));
    }
    out
}

async fn pod_named_with(pods: &Api<Pod>, labels: &str) -> Option<Pod> {
    pods.list(&ListParams::default().labels(labels))
        .await
        .ok()?
        .items
        .into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_none())
}

/// The id containerd knows the pod's first container by.
fn container_id(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?.container_statuses.as_ref()?.first()?;
    Some(
        status
            .container_id
            .as_ref()?
            .trim_start_matches("containerd://")
            .to_owned(),
    )
}

/// Publishes for `seconds` and watches at the same time; returns the video frames seen.
async fn media_through(
    endpoint: &str,
    room: &str,
    publisher: &str,
    watcher: &str,
    seconds: u64,
) -> u64 {
    let http = endpoint.parse().expect("endpoint is host:port");
    let whip = format!("/rooms/{room}/whip");
    let (mut peer, _) = ClientPeer::connect(
        http,
        &whip,
        publisher,
        ClientRole::Publish { simulcast: false },
    )
    .await
    .expect("the publisher connects through the hostPort");
    let end = Instant::now() + Duration::from_secs(seconds);
    let publishing = tokio::spawn(async move {
        let _ = peer.publish_until(end, false).await;
    });
    let watching = Watcher::join(&format!("http://{endpoint}"), room, watcher, 1)
        .await
        .expect("the watcher joins through the hostPort")
        .watch_until(end)
        .await;
    publishing.await.unwrap();
    watching.video_frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_runs_on_a_real_node_with_real_containers() {
    let Some(images) = images_or_skip() else {
        return;
    };
    let cluster = Cluster::shared().await.unwrap();
    cluster.start_controller_manager().await.unwrap();
    cluster.start_scheduler().await.unwrap();
    let node = RealNode::start(cluster, &images, &[("roundtable.dev/media", "true")])
        .await
        .unwrap();
    eprintln!(
        "e2e: real node {} Ready in {:.2?} (importing {} images took {:.2?})",
        node.name(),
        node.start_time(),
        node.images().len(),
        node.import_time()
    );
    let ns = cluster.namespace("real-node").await.unwrap();
    let admin = ns.client.clone();

    let registration_key = cluster
        .create_registration_secret(admin.clone(), &ns.name)
        .await
        .unwrap();

    // The recording volume: a hostPath PersistentVolume owned by uid 65532, as a storage
    // admin would prepare it for the chart's non-root recorder.
    let recordings_dir = node.dir().join("recordings");
    std::fs::create_dir_all(&recordings_dir).unwrap();
    std::os::unix::fs::chown(&recordings_dir, Some(65532), Some(65532)).unwrap();
    recording_volume(&admin, &ns.name, &recordings_dir).await;

    // coturn's certificate for TURN over TLS, in the Secret `turn.tls` names.
    cluster
        .tls_secret(&ns.name, "turn-tls", TURN_HOST, &node.dir().join("tls"))
        .await
        .unwrap();

    // hostPorts of this test process, below the ephemeral port range.
    let first_port = 31_000 + (std::process::id() % 90) * 10;
    let values = format!(
        r#"
image: {{pullPolicy: Never}}
api:
  publicUrl: {PUBLIC_URL}
  registration: {{keySecret: registration}}
  database: {{persistence: {{enabled: false}}}}
media: {{hostPorts: {{first: {first_port}, last: {last_port}}}}}
operator:
  drainGraceSeconds: 3
  statsIntervalSeconds: 1
turn:
  enabled: true
  urls: ["turn:{node_ip}:3478?transport=tcp", "turns:{TURN_HOST}:443?transport=tcp"]
  tls: {{secretName: turn-tls}}
  relayPorts: {{min: {first_relay}, max: {last_relay}}}
"#,
        last_port = first_port + 9,
        node_ip = node.ip(),
        first_relay = 49_160 + (std::process::id() % 80) * 10,
        last_relay = 49_160 + (std::process::id() % 80) * 10 + 9,
    );
    let installed = Instant::now();
    ok(cluster.helm_install("rt", &ns.name, &values).await.unwrap());

    // The operator (two replicas) and the control plane run in containers, with the chart's
    // ServiceAccounts, and pass the kubelet's readiness probes.
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns.name);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns.name);
    for (deployment, replicas) in [
        ("rt-roundtable-operator", 2),
        ("rt-roundtable-api", 1),
        ("rt-turn", 1),
    ] {
        let ready = poll(Duration::from_secs(180), async || {
            let d = deployments.get(deployment).await.ok()?;
            (d.status?.ready_replicas? == replicas).then_some(())
        })
        .await;
        if ready.is_none() {
            let listed = pods.list(&ListParams::default()).await.unwrap();
            let names: Vec<(String, String)> = listed
                .items
                .iter()
                .map(|p| {
                    (
                        p.metadata.name.clone().unwrap(),
                        p.spec.as_ref().unwrap().containers[0].name.clone(),
                    )
                })
                .collect();
            let refs: Vec<(&str, &str)> = names
                .iter()
                .map(|(p, c)| (p.as_str(), c.as_str()))
                .collect();
            panic!(
                "{deployment} not {replicas}/{replicas} ready in 180s; pods: {}\n{}",
                serde_json::to_string(&listed.items.iter().map(|p| &p.status).collect::<Vec<_>>())
                    .unwrap(),
                failure(&node, &ns.name, &refs)
            );
        }
        eprintln!(
            "e2e: {deployment} ready {:.2?} after helm install",
            installed.elapsed()
        );
    }
    let api_pod = pod_named_with(&pods, "app.kubernetes.io/component=api")
        .await
        .unwrap();
    let api_pod_name = api_pod.metadata.name.clone().unwrap();
    let spec = api_pod.spec.as_ref().unwrap();
    assert_eq!(
        spec.node_name.as_deref(),
        Some(node.name()),
        "on the real node"
    );
    let base = format!("http://{}:8080", api_pod.status.unwrap().pod_ip.unwrap());

    // The example, with SFU pods sized for this small node.
    let gala = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/gala.yaml");
    ok(cluster
        .kubectl(&["apply", "-n", &ns.name, "-f", gala.to_str().unwrap()])
        .await
        .unwrap());
    ok(cluster
        .kubectl(&[
            "patch",
            "-n",
            &ns.name,
            "liveevent",
            EVENT,
            "--type=merge",
            "-p",
            r#"{"spec":{"sfu":{"resources":{"requests":{"cpu":"100m","memory":"128Mi"},"limits":{"memory":"512Mi"}}}}}"#,
        ])
        .await
        .unwrap());

    // An organiser presses Start in the control plane.
    let http = reqwest::Client::new();
    let ada = registration_token(registration_key.as_bytes(), "ada@example.com", "Ada");
    let session_url = format!("{base}/api/sessions/{}/{SESSION}", ns.name);
    let mut last = String::new();
    let pressed = poll(Duration::from_secs(30), async || {
        let response = http
            .post(format!("{session_url}/start"))
            .bearer_auth(&ada)
            .send()
            .await
            .ok()?;
        let status = response.status();
        last = format!("{status} {}", response.text().await.unwrap_or_default());
        status.is_success().then(Instant::now)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "Start through the control plane: {last}\n{}",
            failure(&node, &ns.name, &[(&api_pod_name, "api")])
        )
    });

    // Its sfu-node pod becomes Ready through the kubelet's readiness probe (/readyz).
    let sfu_pod_name = format!("session-{SESSION}");
    let sfu_pod = poll(Duration::from_secs(120), async || {
        pods.get_opt(&sfu_pod_name).await.ok()?.filter(is_ready)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the sfu-node pod was not Ready in 120s\n{}",
            failure(&node, &ns.name, &[(&sfu_pod_name, "sfu-node")])
        )
    });
    let start_to_ready = pressed.elapsed();
    let sessions: Api<Session> = Api::namespaced(admin.clone(), &ns.name);
    let endpoint = wait_until(
        "the session to go Live",
        Duration::from_secs(60),
        async || {
            let status = sessions.get(SESSION).await.ok()?.status?;
            (status.phase == Some(LivePhase::Live)).then_some(status.endpoint?)
        },
    )
    .await;
    eprintln!(
        "e2e: real node: Start -> sfu-node pod Ready {:.2?}, -> Live {:.2?}; endpoint {endpoint}",
        start_to_ready,
        pressed.elapsed()
    );
    let host_ip = sfu_pod.status.as_ref().unwrap().host_ip.clone().unwrap();
    assert_eq!(host_ip, node.ip().to_string());
    assert!(endpoint.starts_with(&format!("{host_ip}:")), "{endpoint}");

    // Media through the hostPort: the organiser publishes with the control plane's token, a
    // watcher (token signed with the chart's key) receives.
    let joined: serde_json::Value = poll(Duration::from_secs(30), async || {
        let response = http
            .post(format!("{session_url}/join"))
            .bearer_auth(&ada)
            .send()
            .await
            .ok()?;
        response.status().is_success().then_some(())?;
        response.json().await.ok()
    })
    .await
    .expect("join through the control plane");
    turn_over_tls_on_443(cluster, &node, &ns.name, &joined, &pods).await;
    let room = joined["room"].as_str().unwrap().to_owned();
    let publisher = joined["token"].as_str().unwrap().to_owned();
    let key = Api::<Secret>::namespaced(admin.clone(), &ns.name)
        .get("roundtable-join-token")
        .await
        .unwrap()
        .data
        .unwrap()
        .remove("key")
        .unwrap()
        .0;
    let watcher = |who: &str| mint(&key, &Claims::new(who, who, &room, unix_now() + 600));
    let frames = media_through(&endpoint, &room, &publisher, &watcher("watcher-1"), 6).await;
    eprintln!(
        "e2e: real node: the watcher received {frames} video frames in 6 s through the hostPort"
    );
    assert!(
        frames > 60,
        "media through the hostPort: {frames} video frames"
    );
    // The recorder Job runs (it joined once the session went Live) and writes as 65532.
    let recorder = poll(Duration::from_secs(90), async || {
        pod_named_with(&pods, "app.kubernetes.io/name=roundtable-recorder")
            .await
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    })
    .await
    .unwrap_or_else(|| panic!("no running recorder pod\n{}", node.log_tails(30)));
    let recorder_name = recorder.metadata.name.clone().unwrap();

    // Kill the sfu-node container's process: the kubelet reports the container terminated,
    // the operator replaces the pod, the room is back.
    let id = container_id(&sfu_pod).expect("a container id");
    let killed = Instant::now();
    node.ctr(&["tasks", "kill", "--signal", "SIGKILL", &id])
        .unwrap();
    let old_uid = sfu_pod.metadata.uid.clone();
    let back = poll(Duration::from_secs(120), async || {
        let pod = pods.get_opt(&sfu_pod_name).await.ok()??;
        (pod.metadata.uid != old_uid && is_ready(&pod)).then_some(())
    })
    .await;
    assert!(
        back.is_some(),
        "the room did not come back in 120s after its sfu-node was killed\n{}",
        failure(&node, &ns.name, &[(&sfu_pod_name, "sfu-node")])
    );
    let endpoint = wait_until(
        "the session Live again",
        Duration::from_secs(60),
        async || {
            let status = sessions.get(SESSION).await.ok()?.status?;
            (status.phase == Some(LivePhase::Live)).then_some(status.endpoint?)
        },
    )
    .await;
    let restart = killed.elapsed();
    let frames = media_through(&endpoint, &room, &publisher, &watcher("watcher-2"), 5).await;
    eprintln!(
        "e2e: real node: sfu-node killed -> new pod Ready and session Live in {restart:.2?}; \
         then {frames} video frames in 5 s"
    );
    assert!(
        frames > 50,
        "media after the restart: {frames} video frames"
    );

    // End the session: the recorder composes the MP4 on the volume, the Session lists it.
    // (The test publisher's frames are stamped filler, not decodable VP8, so the recording
    // may end Paused rather than Complete; what is checked here is the real node's part: the
    // Job's container writes to the PersistentVolume as 65532 and reports the file.)
    sessions
        .patch(
            SESSION,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"lifecycle": "Ended"}})),
        )
        .await
        .unwrap();
    let recorded = poll(Duration::from_secs(180), async || {
        let status = sessions.get(SESSION).await.ok()?.status?;
        status
            .recordings
            .into_iter()
            .find(|r| r.state != RecordingState::Recording && r.file.is_some())
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "no recording with a file in the Session's status in 180s; recorder log:\n{}",
            node.log(&ns.name, &recorder_name, "recorder")
        )
    });
    let file = recordings_dir.join(recorded.file.as_deref().unwrap().trim_start_matches('/'));
    let meta = std::fs::metadata(&file)
        .unwrap_or_else(|e| panic!("{} on the volume: {e}", file.display()));
    assert_eq!(meta.uid(), 65532, "written by the recorder's uid");
    assert!(
        meta.len() > 10_000,
        "an MP4 with media: {} bytes",
        meta.len()
    );
    assert_ne!(recorded.state, RecordingState::Failed, "{recorded:?}");
    eprintln!(
        "e2e: real node: recording {} ({:?}, {} bytes, {}s) written as uid {}",
        recorded.file.as_deref().unwrap(),
        recorded.state,
        meta.len(),
        recorded.duration_seconds.unwrap_or_default(),
        meta.uid()
    );

    // Delete the event and uninstall: nothing of Roundtable runs any more.
    ok(cluster
        .kubectl(&[
            "delete",
            "-n",
            &ns.name,
            "-f",
            gala.to_str().unwrap(),
            "--wait=true",
        ])
        .await
        .unwrap());
    ok(cluster
        .helm(&[
            "uninstall",
            "rt",
            "-n",
            &ns.name,
            "--wait",
            "--timeout",
            "120s",
        ])
        .await
        .unwrap());
    let quiet = poll(Duration::from_secs(120), async || {
        let left = pods.list(&ListParams::default()).await.ok()?.items;
        let tasks = node.ctr(&["tasks", "list", "--quiet"]).ok()?;
        (left.is_empty() && tasks.trim().is_empty()).then_some(())
    })
    .await;
    assert!(
        quiet.is_some(),
        "containers left after helm uninstall: {}",
        node.ctr(&["containers", "list"]).unwrap_or_default()
    );
    node.check_running().unwrap();
}

/// A hostPath PersistentVolume at `dir`, bound to the claim the example event names.
/// The chart's coturn, from the coturn image (Debian's turnserver, uid 65534), serves TURN
/// over TLS on 443 of the node: the join answer's credential allocates a relay there, with the
/// Secret's certificate checked for the `turns:` URL's name.
async fn turn_over_tls_on_443(
    cluster: &Cluster,
    node: &RealNode,
    namespace: &str,
    joined: &serde_json::Value,
    pods: &Api<Pod>,
) {
    let ice = &joined["iceServers"][0];
    let urls: Vec<&str> = ice["urls"]
        .as_array()
        .unwrap_or_else(|| panic!("TURN servers in the join answer: {joined}"))
        .iter()
        .filter_map(|u| u.as_str())
        .collect();
    assert!(
        urls.contains(&format!("turns:{TURN_HOST}:443?transport=tcp").as_str()),
        "{urls:?}"
    );
    let (username, password) = (
        ice["username"].as_str().unwrap(),
        ice["credential"].as_str().unwrap(),
    );
    let turn_pod = pod_named_with(pods, "app.kubernetes.io/component=turn")
        .await
        .expect("coturn's pod");
    let turn_pod_name = turn_pod.metadata.name.clone().unwrap();
    let context = turn_pod.spec.as_ref().unwrap().security_context.clone();
    assert_eq!(
        context.and_then(|c| c.run_as_user),
        Some(65534),
        "coturn runs as nobody"
    );
    let ca = std::fs::read(cluster.ca_cert()).unwrap();
    let server = std::net::SocketAddr::new(node.ip().into(), 443);
    let allocated = poll(Duration::from_secs(30), async || {
        turn::allocate_tls(server, TURN_HOST, &ca, username, password)
            .await
            .ok()
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "no TURN over TLS at {server} in 30s\n{}",
            failure(node, namespace, &[(&turn_pod_name, "coturn")])
        )
    });
    match allocated {
        Allocation::Relayed(relay) => eprintln!(
            "e2e: real node: coturn (uid 65534) relays at {relay} for the join's credential over TLS on 443"
        ),
        refused => panic!(
            "coturn refused the join's credential over TLS: {refused:?}\n{}",
            failure(node, namespace, &[(&turn_pod_name, "coturn")])
        ),
    }
}

async fn recording_volume(client: &Client, namespace: &str, dir: &Path) {
    let name = format!("{namespace}-recordings");
    let volume: PersistentVolume = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": dir, "type": "Directory"},
            "claimRef": {"namespace": namespace, "name": "gala-recordings"},
        }
    }))
    .unwrap();
    Api::<PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), &volume)
        .await
        .unwrap();
    let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "gala-recordings"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "",
            "volumeName": name,
            "resources": {"requests": {"storage": "1Gi"}},
        }
    }))
    .unwrap();
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &claim)
        .await
        .unwrap();
}
