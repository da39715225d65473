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
//!   `status.endpoint` (portmap), and a watcher without UDP gets it over ICE-TCP there;
//! - the sfu-node container's process is killed; the time until the room is back is printed;
//! - the chart's coturn, from the coturn image that `images/build.sh` builds from Debian's
//!   coturn, binds 443 as uid 65534 on the node's network and takes the join answer's TURN
//!   credential over TLS (`turn.tls`);
//! - the recorder Job's container writes the MP4 onto a PersistentVolume as uid 65532 and
//!   the Session lists it;
//! - media through the other two network modes, over kube-proxy's iptables rules
//!   ([`network_modes`]): a session in NodePort mode is joined at its node's address and
//!   node ports, and a session in LoadBalancer mode waits (status says so) until its Service
//!   has a load balancer address, which the test writes itself in place of a cloud's
//!   controller, then is joined at that address;
//! - `helm uninstall` (after the event is deleted) leaves no container running.
//!
//! Runs when `ROUNDTABLE_REAL_NODE_IMAGES` names the image list that `scripts/test-all` makes;
//! skips with a message otherwise, and when the machine lacks a capability.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use roundtable_crds::{LiveEvent, LivePhase, RecordingState, Session};
use roundtable_e2e::node_agent::is_ready;
use roundtable_e2e::real_node::{self, RealNode};
use roundtable_e2e::turn::{self, Allocation};
use roundtable_e2e::{Cluster, KubectlOutput, poll, unix_now, wait_until};
use sfu_node::auth::{Claims, mint};
use sfu_node::client::{ClientPeer, ClientRole, Transport, WatchOutcome, Watcher};
use str0m::net::Protocol;

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

/// Publishes for `seconds` and watches at the same time, the watcher's media over
/// `transport`; returns what the watcher saw. The publisher then hangs up, as a page does,
/// so the next call's watcher is given the next publisher.
async fn media_through(
    endpoint: &str,
    room: &str,
    publisher: &str,
    watcher: &str,
    seconds: u64,
    transport: Transport,
) -> WatchOutcome {
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
        peer
    });
    let watching = Watcher::join_over(&format!("http://{endpoint}"), room, watcher, 1, transport)
        .await
        .expect("the watcher joins through the hostPort")
        .watch_until(end)
        .await;
    let peer = publishing.await.unwrap();
    let hung_up = peer.hang_up(http, publisher).await.unwrap();
    assert!(
        (200..300).contains(&hung_up.status),
        "the publisher's DELETE: {} {}",
        hung_up.status,
        hung_up.text()
    );
    watching
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
    let frames = media_through(
        &endpoint,
        &room,
        &publisher,
        &watcher("watcher-1"),
        6,
        Transport::Udp,
    )
    .await
    .video_frames;
    eprintln!(
        "e2e: real node: the watcher received {frames} video frames in 6 s through the hostPort"
    );
    assert!(
        frames > 60,
        "media through the hostPort: {frames} video frames"
    );
    // A watcher without UDP: ICE over TCP on the same hostPort (the pod's signalling port).
    let tcp = media_through(
        &endpoint,
        &room,
        &publisher,
        &watcher("watcher-tcp"),
        6,
        Transport::Tcp,
    )
    .await;
    eprintln!(
        "e2e: real node: a watcher without UDP received {} video frames in 6 s over ICE-TCP \
         through the hostPort, the first {:.2?} after joining",
        tcp.video_frames, tcp.first_frame
    );
    if tcp.video_frames <= 60 {
        let pod_ip = sfu_pod.status.as_ref().unwrap().pod_ip.clone().unwrap();
        let admin_port = sfu_pod.spec.as_ref().unwrap().containers[0]
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some("admin"))
            .map(|p| p.container_port)
            .expect("the sfu-node container names its admin port");
        let stats = match http
            .get(format!("http://{pod_ip}:{admin_port}/stats"))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => e.to_string(),
        };
        panic!(
            "media over ICE-TCP through the hostPort: {} video frames (the client: {:?})\n\
             the pod's /stats: {stats}\n{}",
            tcp.video_frames,
            tcp.failed,
            failure(&node, &ns.name, &[(&sfu_pod_name, "sfu-node")])
        );
    }
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
    let frames = media_through(
        &endpoint,
        &room,
        &publisher,
        &watcher("watcher-2"),
        5,
        Transport::Udp,
    )
    .await
    .video_frames;
    eprintln!(
        "e2e: real node: sfu-node killed -> new pod Ready and session Live in {restart:.2?}; \
         then {frames} video frames in 5 s"
    );
    assert!(
        frames > 50,
        "media after the restart: {frames} video frames"
    );

    network_modes(&node, &ns.name, &admin, (&http, &base, &ada), &key).await;

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

/// A session of its own event whose SFU pods use network `mode`, Started by its organiser.
async fn network_session(admin: &Client, namespace: &str, name: &str, mode: &str) {
    let now = unix_now() as i64;
    let at = |seconds: i64| {
        jiff::Timestamp::from_second(now + seconds)
            .unwrap()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let event: LiveEvent = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "title": format!("{mode} media"),
            "start": at(-3600),
            "end": at(3600),
            "organizers": ["ada@example.com"],
            "sfu": {
                "placement": {"nodeSelector": {"roundtable.dev/media": "true"}},
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
                "network": {"mode": mode},
            },
        }
    }))
    .unwrap();
    Api::<LiveEvent>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &event)
        .await
        .unwrap();
    let session: Session = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "event": name,
            "title": format!("Through a {mode} Service"),
            "lifecycle": "Started",
            "share": {"policy": "Open"},
        }
    }))
    .unwrap();
    Api::<Session>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &session)
        .await
        .unwrap();
}

/// The `(transport, address)` of every candidate in an SDP.
fn candidates(sdp: &str) -> Vec<(Protocol, std::net::SocketAddr)> {
    sfu_node::client::sdp_candidates(sdp)
        .iter()
        .map(|c| (c.proto(), c.addr()))
        .collect()
}

/// How long after a session's status said Live kube-proxy had rules that send its Service to
/// the pod at `pod_ip:pod_port`, through a rule containing `entry` (the node ports, or the load
/// balancer's address). The status does not wait for kube-proxy: a join in between is refused
/// ("Connection refused" from kube-proxy's REJECT for a Service without endpoints), so the
/// test joins after this, and fails if it takes over 10 s.
async fn routed_after_live(
    live_at: Instant,
    namespace: &str,
    service: &str,
    pod_ip: &str,
    pod_port: i32,
    entry: &str,
) -> Duration {
    let comment = format!("--comment \"{namespace}/{service}:media");
    let dnat = format!("--to-destination {pod_ip}:{pod_port}");
    poll(Duration::from_secs(10), async || {
        let rules = nat_rules();
        let named: Vec<&str> = rules.lines().filter(|l| l.contains(&comment)).collect();
        (named.iter().any(|l| l.contains(&dnat)) && named.iter().any(|l| l.contains(entry)))
            .then_some(())
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "kube-proxy did not route {namespace}/{service} ({entry}) to {pod_ip}:{pod_port} \
             within 10 s of Live:\n{}",
            nat_rules()
        )
    });
    live_at.elapsed()
}

/// The host's NAT table with each rule's counters (`iptables-save -c -t nat`).
fn nat_table() -> String {
    let out = std::process::Command::new("iptables-save")
        .args(["-c", "-t", "nat"])
        .output()
        .expect("iptables-save runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// kube-proxy's NAT rules (`KUBE-` chains), for failure messages.
fn nat_rules() -> String {
    nat_table()
        .lines()
        .filter(|l| l.contains("KUBE-"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Packets that kube-proxy's NAT rules for `namespace/service:port` matched (the first of
/// each connection: NAT sees no more), in rules whose text contains `rule`.
fn kube_proxy_packets(service_port: &str, rule: &str) -> u64 {
    let comment = format!("--comment \"{service_port}");
    nat_table()
        .lines()
        .filter(|l| l.contains(&comment) && l.contains(rule))
        .filter_map(|l| {
            let counters = l.strip_prefix('[')?.split(']').next()?;
            counters.split(':').next()?.parse::<u64>().ok()
        })
        .sum()
}

/// What a user sees of a room joined at `endpoint`: the address the SFU's answer gives for
/// media, and a watcher's video frames and time from joining to the first frame while the
/// organiser publishes for `seconds`.
struct Joined {
    candidates: Vec<(Protocol, std::net::SocketAddr)>,
    frames: u64,
    first_frame: Option<Duration>,
}

async fn join_and_watch(
    endpoint: &str,
    room: &str,
    publisher: &str,
    watcher: &str,
    seconds: u64,
) -> Joined {
    let http = endpoint.parse().expect("endpoint is host:port");
    let (mut peer, answer) = ClientPeer::connect(
        http,
        &format!("/rooms/{room}/whip"),
        publisher,
        ClientRole::Publish { simulcast: false },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "the publisher connects at {endpoint}: {e}\nkube-proxy's NAT rules:\n{}",
            nat_rules()
        )
    });
    let end = Instant::now() + Duration::from_secs(seconds);
    let publishing = tokio::spawn(async move {
        let _ = peer.publish_until(end, false).await;
    });
    let watched = Watcher::join(&format!("http://{endpoint}"), room, watcher, 1)
        .await
        .unwrap_or_else(|e| panic!("the watcher joins at {endpoint}: {e}"))
        .watch_until(end)
        .await;
    publishing.await.unwrap();
    Joined {
        candidates: candidates(&answer.text()),
        frames: watched.video_frames,
        first_frame: watched.first_frame,
    }
}

/// The NodePort and LoadBalancer network modes with real media, through kube-proxy's rules on
/// the real node: a session in each mode, joined where its status says, with the candidate the
/// SFU announces checked against the Service. In this test bed pod addresses are routable from
/// the test process, so media reaching the watcher alone would not show that the Service
/// carried it: the answer must name no other address, and kube-proxy's rules must have matched.
async fn network_modes(
    node: &RealNode,
    namespace: &str,
    admin: &Client,
    (http, base, organiser): (&reqwest::Client, &str, &str),
    key: &[u8],
) {
    let sessions: Api<Session> = Api::namespaced(admin.clone(), namespace);
    let services: Api<Service> = Api::namespaced(admin.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), namespace);
    let join = async |name: &str| -> (String, String) {
        let url = format!("{base}/api/sessions/{namespace}/{name}/join");
        let joined: serde_json::Value = poll(Duration::from_secs(30), async || {
            let response = http.post(&url).bearer_auth(organiser).send().await.ok()?;
            response.status().is_success().then_some(())?;
            response.json().await.ok()
        })
        .await
        .unwrap_or_else(|| panic!("join {name} through the control plane"));
        (
            joined["room"].as_str().unwrap().to_owned(),
            joined["token"].as_str().unwrap().to_owned(),
        )
    };
    let live = async |name: &str| -> (String, Duration) {
        let since = Instant::now();
        let endpoint = poll(Duration::from_secs(120), async || {
            let status = sessions.get(name).await.ok()?.status?;
            (status.phase == Some(LivePhase::Live)).then_some(status.endpoint?)
        })
        .await;
        let Some(endpoint) = endpoint else {
            let status = sessions.get_opt(name).await.ok().flatten();
            let pod = format!("session-{name}");
            panic!(
                "{name} not Live with an endpoint in 120s: {:?}\n{}",
                status.and_then(|s| s.status),
                failure(node, namespace, &[(&pod, "sfu-node")])
            )
        };
        (endpoint, since.elapsed())
    };
    let node_port = |service: &Service, name: &str| -> u16 {
        let port = service.spec.as_ref().unwrap().ports.as_ref().unwrap();
        let port = port
            .iter()
            .find(|p| p.name.as_deref() == Some(name))
            .unwrap();
        u16::try_from(port.node_port.expect("a nodePort")).unwrap()
    };

    // NodePort: the Service's node ports on the node's address.
    let name = "ports";
    let service_name = format!("session-{name}");
    let begun = Instant::now();
    network_session(admin, namespace, name, "NodePort").await;
    let (endpoint, to_live) = live(name).await;
    let live_at = Instant::now();
    let service = services.get(&service_name).await.unwrap();
    assert_eq!(
        service.spec.as_ref().unwrap().type_.as_deref(),
        Some("NodePort")
    );
    let (media, signal) = (node_port(&service, "media"), node_port(&service, "signal"));
    assert_eq!(
        endpoint,
        format!("{}:{signal}", node.ip()),
        "a NodePort session is reached at its node's address and signalling node port"
    );
    let pod = pods.get(&service_name).await.unwrap();
    let pod_ip = pod.status.as_ref().unwrap().pod_ip.clone().unwrap();
    let pod_port = pod.spec.as_ref().unwrap().containers[0]
        .ports
        .as_ref()
        .unwrap()[0]
        .container_port;
    assert!(
        pod.spec.as_ref().unwrap().containers[0]
            .ports
            .iter()
            .flatten()
            .all(|p| p.host_port.is_none()),
        "no hostPort in NodePort mode"
    );
    let routed = routed_after_live(
        live_at,
        namespace,
        &service_name,
        &pod_ip,
        pod_port,
        "-A KUBE-NODEPORTS",
    )
    .await;
    let (room, publisher) = join(name).await;
    let watcher = mint(
        key,
        &Claims::new("np-watcher", "np-watcher", &room, unix_now() + 600),
    );
    let joined = join_and_watch(&endpoint, &room, &publisher, &watcher, 6).await;
    let media_packets = kube_proxy_packets(
        &format!("{namespace}/{service_name}:media"),
        "-A KUBE-NODEPORTS",
    );
    let signal_packets = kube_proxy_packets(
        &format!("{namespace}/{service_name}:signal"),
        "-A KUBE-NODEPORTS",
    );
    eprintln!(
        "e2e: real node: NodePort session Live {to_live:.2?} after it was created (endpoint {endpoint}, pod {pod_ip}:{pod_port}); \
         kube-proxy routed its node ports to the pod {routed:.2?} after the status said Live; \
         the answer's candidates {:?}; the watcher received {} video frames in 6 s, the first {:.2?} after joining; \
         kube-proxy's NodePort rules matched {media_packets} UDP and {signal_packets} TCP connections",
        joined.candidates,
        joined.frames,
        joined.first_frame.unwrap_or_default(),
    );
    assert_eq!(
        joined.candidates,
        [(
            Protocol::Udp,
            std::net::SocketAddr::new(node.ip().into(), media)
        )],
        "the SFU announces its node's address and the media node port, and nothing else"
    );
    assert!(
        joined.frames > 60,
        "media through the NodePort: {} video frames",
        joined.frames
    );
    assert!(
        media_packets > 0,
        "kube-proxy's rule for the media node port {media} matched no packet"
    );
    assert!(
        signal_packets > 0,
        "kube-proxy's rule for the signalling node port {signal} matched no connection"
    );

    // LoadBalancer: nobody gives the Service an address here, so the session says it waits
    // for one; then the test, in place of a cloud's controller, writes the address it put on
    // the node into the Service's status.loadBalancer, and kube-proxy routes it to the pod.
    let name = "balanced";
    let service_name = format!("session-{name}");
    network_session(admin, namespace, name, "LoadBalancer").await;
    let waiting = poll(Duration::from_secs(60), async || {
        let status = sessions.get(name).await.ok()?.status?;
        status.conditions.into_iter().find(|c| {
            c.type_ == "Ready" && c.status == "False" && c.reason == "WaitingForLoadBalancer"
        })
    })
    .await
    .unwrap_or_else(|| panic!("{name}: no Ready=False WaitingForLoadBalancer condition in 60s"));
    assert!(
        pods.get_opt(&service_name).await.unwrap().is_none(),
        "no SFU pod before the load balancer has an address (it would announce none)"
    );
    eprintln!(
        "e2e: real node: LoadBalancer session waits: {}",
        waiting.message
    );
    let lb_ip = node.add_load_balancer_address().unwrap();
    let written = Instant::now();
    services
        .patch_status(
            &service_name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "status": {"loadBalancer": {"ingress": [{"ip": lb_ip.to_string()}]}}
            })),
        )
        .await
        .unwrap();
    let (endpoint, _) = live(name).await;
    let live_at = Instant::now();
    let to_live = written.elapsed();
    let pod = pods.get(&service_name).await.unwrap();
    let pod_ip = pod.status.as_ref().unwrap().pod_ip.clone().unwrap();
    let pod_port = pod.spec.as_ref().unwrap().containers[0]
        .ports
        .as_ref()
        .unwrap()[0]
        .container_port;
    let routed = routed_after_live(
        live_at,
        namespace,
        &service_name,
        &pod_ip,
        pod_port,
        &format!("-d {lb_ip}/32"),
    )
    .await;
    let service = services.get(&service_name).await.unwrap();
    let port = service.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port;
    let signal = service.spec.as_ref().unwrap().ports.as_ref().unwrap()[1].port;
    assert_eq!(
        endpoint,
        format!("{lb_ip}:{signal}"),
        "reached at the load balancer's address"
    );
    let (room, publisher) = join(name).await;
    let watcher = mint(
        key,
        &Claims::new("lb-watcher", "lb-watcher", &room, unix_now() + 600),
    );
    let joined = join_and_watch(&endpoint, &room, &publisher, &watcher, 6).await;
    let media_packets = kube_proxy_packets(
        &format!("{namespace}/{service_name}:media"),
        &format!("-d {lb_ip}/32"),
    );
    eprintln!(
        "e2e: real node: LoadBalancer session Live {to_live:.2?} after the test wrote {lb_ip} as its load balancer address \
         (in place of a cloud controller); kube-proxy routed {lb_ip} to the pod {pod_ip}:{pod_port} {routed:.2?} after the status said Live; \
         the answer's candidates {:?}; the watcher received {} video frames in 6 s, \
         the first {:.2?} after joining; kube-proxy's rule for {lb_ip}:{port}/udp matched {media_packets} connections",
        joined.candidates,
        joined.frames,
        joined.first_frame.unwrap_or_default(),
    );
    // The Service carries the port for UDP and TCP, so ICE-TCP (on in the chart) is offered
    // at the same address: every candidate is the load balancer's.
    let lb = std::net::SocketAddr::new(lb_ip.into(), port as u16);
    assert!(
        joined.candidates.contains(&(Protocol::Udp, lb))
            && joined.candidates.iter().all(|(_, address)| *address == lb),
        "the SFU announces the load balancer's address and the Service's port, and nothing \
         else: {:?}",
        joined.candidates
    );
    assert!(
        joined.frames > 60,
        "media through the load balancer address: {} video frames",
        joined.frames
    );
    assert!(
        media_packets > 0,
        "kube-proxy's rule for {lb_ip}:{port}/udp matched no packet"
    );

    // Ended, each room's Service goes with it: a cloud load balancer costs money.
    for name in ["ports", "balanced"] {
        sessions
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"lifecycle": "Ended"}})),
            )
            .await
            .unwrap();
    }
    let gone = poll(Duration::from_secs(60), async || {
        let left = services.list(&ListParams::default()).await.ok()?.items;
        left.iter()
            .all(|s| {
                !["session-ports", "session-balanced"]
                    .contains(&s.metadata.name.as_deref().unwrap_or_default())
            })
            .then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "the Ended sessions' Services are still there after 60s"
    );
    eprintln!(
        "e2e: real node: NodePort and LoadBalancer sessions, created to Services gone, in {:.2?}",
        begun.elapsed()
    );
}
