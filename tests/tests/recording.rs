//! End to end: a Session with recording on goes Live; the operator's recording Job runs the
//! real `roundtable-recorder` as a pod of the test node agent (the kube-controller-manager's
//! Job controller creates the pod, the scheduler places it), which joins the real sfu-node
//! pod as a hidden participant. Publishers sending real VP8 and Opus go on camera, leave for
//! a gap, return and leave; the Session's status lists one MP4 on the event's recording
//! volume, ffprobe finds H.264 video and AAC audio in it, and its duration is the time on
//! camera with the gap cut out.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use roundtable_crds::{LiveEvent, LivePhase, RecordingState, RecordingSummary, Session};
use roundtable_e2e::Cluster;
use roundtable_e2e::node_agent::{self, ImageMap, NodeAgent, NodeSpec};
use roundtable_e2e::operator::{RunningOperator, create_join_token_secret};
use roundtable_e2e::{unix_now, wait_until};
use roundtable_operator::OperatorConfig;
use sfu_node::auth::{Claims, mint};
use sfu_node::publisher::{TestMedia, publish};
use sfu_node::recorder::compose::probe;

const KEY: &str = "e2e-recording-key";
const SESSION: &str = "recorded-panel";
const CLAIM: &str = "summit-recordings";

/// On camera for `d`; returns how long the publisher was on camera (WHIP answer to DELETE).
async fn on_camera(
    http: SocketAddr,
    room: &str,
    who: &str,
    media: &TestMedia,
    d: Duration,
) -> Duration {
    let token = mint(
        KEY.as_bytes(),
        &Claims::new(who, &format!("Name {who}"), room, unix_now() + 600),
    );
    let begun = Instant::now();
    publish(http, room, &token, media, tokio::time::sleep(d))
        .await
        .unwrap();
    begun.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_session_yields_one_mp4_with_the_gap_cut_out() {
    let cluster = Cluster::shared().await.unwrap();
    cluster.install_crds().await.unwrap();
    cluster.start_scheduler().await.unwrap();
    cluster.start_controller_manager().await.unwrap();
    let ns = cluster.namespace("rec").await.unwrap();

    let sfu = node_agent::workspace_binary("sfu-node", "sfu-node")
        .await
        .unwrap();
    let recorder = node_agent::workspace_binary("sfu-node", "roundtable-recorder")
        .await
        .unwrap();
    let images = ImageMap::new()
        .map("sfu-node", sfu)
        .map("roundtable-recorder", recorder);
    let node = NodeSpec::new(format!("{}-a", ns.name))
        .label("pool", &ns.name)
        .cpu("8")
        .memory("16Gi");
    let agent = NodeAgent::start(cluster, vec![node], images).await.unwrap();
    create_join_token_secret(ns.client.clone(), &ns.name, KEY)
        .await
        .unwrap();
    let operator = RunningOperator::start(
        ns.client.clone(),
        &ns.name,
        "e2e",
        OperatorConfig {
            sfu_image: "registry.example/roundtable/sfu-node:e2e".into(),
            recorder_image: "registry.example/roundtable/roundtable-recorder:e2e".into(),
            host_ports: 33200..=33299,
            drain_grace_seconds: 3,
            stats_interval: Duration::from_secs(1),
            ..OperatorConfig::default()
        },
    );

    let stamp = |offset: i64| {
        jiff::Timestamp::from_second(unix_now() as i64 + offset)
            .unwrap()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let manifests = format!(
        "apiVersion: roundtable.dev/v1alpha1\nkind: LiveEvent\nmetadata:\n  name: summit\nspec:\n  title: Summit\n  start: \"{}\"\n  end: \"{}\"\n  organizers: [ada@example.com]\n  recordingStorage:\n    persistentVolumeClaim: {CLAIM}\n  sfu:\n    placement:\n      nodeSelector: {{pool: {}}}\n---\napiVersion: roundtable.dev/v1alpha1\nkind: Session\nmetadata:\n  name: {SESSION}\nspec:\n  event: summit\n  title: A recorded panel\n  lifecycle: Started\n  recording: true\n",
        stamp(-3600),
        stamp(86_400),
        ns.name
    );
    // The recording volume: a PersistentVolumeClaim bound to a PersistentVolume (the
    // scheduler places a pod only once its claim is bound); the node agent backs the claim
    // with a local folder.
    let storage = format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: {ns}-recordings\nspec:\n  capacity: {{storage: 1Gi}}\n  accessModes: [ReadWriteOnce]\n  storageClassName: e2e-{ns}\n  hostPath: {{path: /var/lib/roundtable-e2e/{ns}}}\n  claimRef: {{namespace: {ns}, name: {CLAIM}}}\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {CLAIM}\n  namespace: {ns}\nspec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: e2e-{ns}\n  volumeName: {ns}-recordings\n  resources: {{requests: {{storage: 1Gi}}}}\n",
        ns = ns.name
    );
    let out = cluster
        .kubectl_with_stdin(&["apply", "-f", "-"], Some(&storage))
        .await
        .unwrap();
    assert!(out.success(), "{}", out.stderr);
    let out = cluster
        .kubectl_with_stdin(&["apply", "-n", &ns.name, "-f", "-"], Some(&manifests))
        .await
        .unwrap();
    assert!(out.success(), "{}", out.stderr);

    // Real media, made once with ffmpeg, while the session starts.
    let media_dir = tempfile_dir(&ns.name);
    let a = TestMedia::generate(&media_dir, 2, 440).await.unwrap();
    let b = TestMedia::generate(&media_dir, 2, 660).await.unwrap();

    let sessions: Api<Session> = Api::namespaced(ns.client.clone(), &ns.name);
    let endpoint = wait_until(
        "the session to be Live",
        Duration::from_secs(120),
        async || {
            let status = sessions.get(SESSION).await.ok()?.status?;
            (status.phase == Some(LivePhase::Live)).then_some(status.endpoint?)
        },
    )
    .await;
    let http: SocketAddr = endpoint.parse().unwrap();
    let room = format!("session:{}:{SESSION}", ns.name);

    // The recording Job, owned by the Session; its recorder pod joins the room.
    let jobs: Api<Job> = Api::namespaced(ns.client.clone(), &ns.name);
    let job = wait_until("the recording Job", Duration::from_secs(30), async || {
        jobs.get_opt(&format!("rec-{SESSION}")).await.ok()?
    })
    .await;
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Session", SESSION)
    );
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let recorder_pod = recorder_joined(&agent, &pods, &ns.name).await;
    eprintln!("e2e: recorder pod {recorder_pod} joined the room");

    // A for 4 s with B in the middle, 3 s with nobody on camera, A again for 3 s.
    let (first, _) = tokio::join!(
        on_camera(http, &room, "a", &a, Duration::from_secs(4)),
        async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            on_camera(http, &room, "b", &b, Duration::from_secs(2)).await
        }
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = on_camera(http, &room, "a", &a, Duration::from_secs(3)).await;
    let left = Instant::now();
    let expected = (first + second).as_secs_f64();

    // Listed: the Session shows an MP4 holding both stretches.
    let listed = wait_until(
        "the MP4 in the status",
        Duration::from_secs(60),
        async || {
            let recordings = sessions.get(SESSION).await.ok()?.status?.recordings;
            let r = recordings.first()?.clone();
            let whole = r.duration_seconds? as f64 >= expected - 1.0;
            (r.file.is_some() && whole && r.state == RecordingState::Paused).then_some(r)
        },
    )
    .await;
    eprintln!(
        "e2e: last person left -> MP4 listed in Session status: {:.2} s",
        left.elapsed().as_secs_f64()
    );

    // The organiser ends the session: the room drains and the recording is complete.
    sessions
        .patch(
            SESSION,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"lifecycle": "Ended"}})),
        )
        .await
        .unwrap();
    let done: RecordingSummary = wait_until(
        "the recording to complete",
        Duration::from_secs(90),
        async || {
            let recordings = sessions.get(SESSION).await.ok()?.status?.recordings;
            let r = recordings.first()?.clone();
            (r.state == RecordingState::Complete).then_some(r)
        },
    )
    .await;
    assert_eq!(done.file, listed.file);
    let file = done.file.clone().unwrap();
    assert!(file.starts_with(&format!("{SESSION}/{SESSION}-")), "{file}");
    assert!(done.start.is_some());

    // The MP4 on the volume.
    let path = agent.volume_path(&ns.name, CLAIM).join(&file);
    let p = probe(Path::new("ffprobe"), &path).await.unwrap();
    assert_eq!(p.video.as_deref(), Some("h264"));
    assert_eq!(p.audio.as_deref(), Some("aac"));
    let got = p.duration_ms as f64 / 1000.0;
    eprintln!("e2e: on camera {expected:.2} s with a 3 s gap cut, MP4 {got:.2} s");
    assert!(
        (got - expected).abs() <= 1.0,
        "MP4 {got} s, on camera {expected} s"
    );
    assert_eq!(
        done.size_bytes,
        Some(std::fs::metadata(&path).unwrap().len() as i64)
    );
    assert_eq!(done.duration_seconds, Some(got.round() as i64));

    // The event rolls its sessions' recordings up.
    let events: Api<LiveEvent> = Api::namespaced(ns.client.clone(), &ns.name);
    wait_until("the event's rollup", Duration::from_secs(30), async || {
        let status = events.get("summit").await.ok()?.status?;
        (status.recordings == Some(1)).then_some(())
    })
    .await;

    operator.stop().await;
    agent.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&media_dir);
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "roundtable-e2e-media-{name}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until the recorder pod has joined the room (it logs so).
async fn recorder_joined(agent: &NodeAgent, pods: &Api<Pod>, namespace: &str) -> String {
    let selector =
        format!("app.kubernetes.io/name=roundtable-recorder,roundtable.dev/room={SESSION}");
    wait_until(
        "the recorder to join the room",
        Duration::from_secs(60),
        async || {
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?;
            let pod = list.items.into_iter().next()?;
            let name = pod.metadata.name.clone()?;
            agent
                .log(namespace, &name, "recorder")
                .contains("joined the room as recorder")
                .then_some(name)
        },
    )
    .await
}
