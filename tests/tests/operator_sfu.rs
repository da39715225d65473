//! End to end: `kubectl apply -f` an example, the real kube-scheduler places the operator's SFU
//! pod on a node of the test node agent, the pod runs as a real sfu-node process, a str0m
//! client goes on camera, and `kubectl get sessions` shows it Live with 1 on camera. Ending
//! the session drains the pod and the session ends.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use roundtable_crds::{LivePhase, Session};
use roundtable_e2e::Cluster;
use roundtable_e2e::node_agent::{self, ImageMap, NodeAgent, NodeSpec};
use roundtable_e2e::operator::{RunningOperator, create_join_token_secret};
use roundtable_e2e::{unix_now, wait_until};
use roundtable_operator::OperatorConfig;
use sfu_node::auth::{Claims, mint};
use sfu_node::client::{ClientPeer, ClientRole, Transport, Watcher};

const KEY: &str = "e2e-join-token-key";
const SESSION: &str = "gala-future-of-work";

async fn kubectl(cluster: &Cluster, args: &[&str]) -> String {
    let out = cluster.kubectl(args).await.unwrap();
    assert!(out.success(), "kubectl {args:?}: {}", out.stderr);
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applied_session_runs_a_real_sfu_that_a_client_joins_on_camera() {
    let cluster = Cluster::shared().await.unwrap();
    cluster.install_crds().await.unwrap();
    cluster.start_scheduler().await.unwrap();
    let ns = cluster.namespace("op-sfu").await.unwrap();

    // Two media nodes as the gala example's placement wants them.
    let sfu = node_agent::workspace_binary("sfu-node", "sfu-node")
        .await
        .unwrap();
    let images = ImageMap::new().map("sfu-node", sfu);
    let node = |suffix: &str| {
        NodeSpec::new(format!("{}-{suffix}", ns.name))
            .label("roundtable.dev/media", "true")
            .taint("roundtable.dev/media", "", "NoSchedule")
            .cpu("8")
            .memory("16Gi")
    };
    let agent = NodeAgent::start(cluster, vec![node("a"), node("b")], images)
        .await
        .unwrap();

    // The join-token key the SFU pods verify tokens with.
    create_join_token_secret(ns.client.clone(), &ns.name, KEY)
        .await
        .unwrap();

    let operator = RunningOperator::start(
        ns.client.clone(),
        &ns.name,
        "e2e",
        OperatorConfig {
            sfu_image: "registry.example/roundtable/sfu-node:e2e".into(),
            host_ports: 33000..=33099,
            drain_grace_seconds: 3,
            stats_interval: Duration::from_secs(1),
            ..OperatorConfig::default()
        },
    );

    // The user applies the example; an organiser presses Start on one session.
    let gala = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/gala.yaml");
    kubectl(
        cluster,
        &["apply", "-n", &ns.name, "-f", gala.to_str().unwrap()],
    )
    .await;
    kubectl(
        cluster,
        &[
            "patch",
            "session",
            SESSION,
            "-n",
            &ns.name,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"lifecycle":"Started"}}"#,
        ],
    )
    .await;

    let sessions: Api<Session> = Api::namespaced(ns.client.clone(), &ns.name);
    let started = Instant::now();
    let endpoint = wait_until(
        "the session to be Live",
        Duration::from_secs(120),
        async || {
            let status = sessions.get(SESSION).await.ok()?.status?;
            (status.phase == Some(LivePhase::Live)).then_some(status.endpoint?)
        },
    )
    .await;
    eprintln!(
        "e2e: Start to Live (scheduled, sfu-node ready) in {:.2?}",
        started.elapsed()
    );
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let pod = pods.get(&format!("session-{SESSION}")).await.unwrap();
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap();
    assert!(node.starts_with(&ns.name), "placed on a media node: {node}");

    // An attendee goes on camera through the endpoint in the status.
    let room = format!("session:{}:{SESSION}", ns.name);
    let mut claims = Claims::new("ada@example.com", "Ada", &room, unix_now() + 600);
    claims.headline = "Host".into();
    let token = mint(KEY.as_bytes(), &claims);
    let http = endpoint.parse().expect("endpoint is host:port");
    let (mut publisher, _) = ClientPeer::connect(
        http,
        &format!("/rooms/{room}/whip"),
        &token,
        ClientRole::Publish { simulcast: false },
    )
    .await
    .expect("the SFU accepts the publisher");

    let publishing = tokio::spawn(async move {
        publisher
            .publish_until(Instant::now() + Duration::from_secs(20), false)
            .await
            .expect("the publisher sends media")
    });

    let row = wait_until(
        "kubectl to show the session Live with 1 on camera",
        Duration::from_secs(30),
        async || {
            let out = kubectl(cluster, &["get", "sessions", SESSION, "-n", &ns.name]).await;
            let row = out.lines().nth(1)?.to_string();
            let cells: Vec<&str> = row.split_whitespace().collect();
            // NAME EVENT PHASE ON-CAMERA WATCHING ENDPOINT AGE
            (cells.get(2) == Some(&"Live") && cells.get(3) == Some(&"1")).then_some(row)
        },
    )
    .await;
    assert!(
        row.contains(&endpoint),
        "the endpoint column shows {endpoint}: {row}"
    );
    let s = sessions.get(SESSION).await.unwrap().status.unwrap();
    assert_eq!(s.peak_on_camera, Some(1));

    // A watcher whose network drops UDP: ICE over TCP to the pod's one port, which its
    // signalling shares (the operator turns ICE-TCP on; sfu-node tells the two apart).
    let watcher = mint(
        KEY.as_bytes(),
        &Claims::new("wes@example.com", "Wes", &room, unix_now() + 600),
    );
    let outcome = Watcher::join_over(
        &format!("http://{endpoint}"),
        &room,
        &watcher,
        1,
        Transport::Tcp,
    )
    .await
    .expect("a watcher without UDP joins the pod")
    .watch_until(Instant::now() + Duration::from_secs(4))
    .await;
    eprintln!(
        "e2e: {} video frames over ICE-TCP at the pod's port {endpoint}, first after {:?}",
        outcome.video_frames, outcome.first_frame
    );
    assert!(
        outcome.video_frames > 30,
        "video over ICE-TCP at {endpoint}: {} frames",
        outcome.video_frames
    );

    // The organiser ends it: sfu-node drains, the pod goes, the session is Ended.
    sessions
        .patch(
            SESSION,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"lifecycle": "Ended"}})),
        )
        .await
        .unwrap();
    wait_until("the session to end", Duration::from_secs(60), async || {
        let status = sessions.get(SESSION).await.ok()?.status?;
        (status.phase == Some(LivePhase::Ended)).then_some(())
    })
    .await;
    assert!(
        pods.get_opt(&format!("session-{SESSION}"))
            .await
            .unwrap()
            .is_none()
    );
    let frames = publishing.await.unwrap();
    assert!(frames > 30, "the publisher sent video ({frames} frames)");

    operator.stop().await;
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_cold_starts_on_a_join_request_and_scales_back_to_zero_when_idle() {
    roundtable_e2e::init_test_logs();
    let cluster = Cluster::shared().await.unwrap();
    cluster.install_crds().await.unwrap();
    cluster.start_scheduler().await.unwrap();
    let ns = cluster.namespace("op-room").await.unwrap();
    let sfu = node_agent::workspace_binary("sfu-node", "sfu-node")
        .await
        .unwrap();
    let agent = NodeAgent::start(
        cluster,
        vec![
            NodeSpec::new(format!("{}-a", ns.name))
                .label("pool", &ns.name)
                .cpu("4")
                .memory("8Gi"),
        ],
        ImageMap::new().map("sfu-node", sfu),
    )
    .await
    .unwrap();
    create_join_token_secret(ns.client.clone(), &ns.name, KEY)
        .await
        .unwrap();
    let operator = RunningOperator::start(
        ns.client.clone(),
        &ns.name,
        "e2e",
        OperatorConfig {
            sfu_image: "registry.example/roundtable/sfu-node:e2e".into(),
            host_ports: 33100..=33199,
            drain_grace_seconds: 2,
            stats_interval: Duration::from_secs(1),
            ..OperatorConfig::default()
        },
    );

    let room = format!(
        "apiVersion: roundtable.dev/v1alpha1\nkind: Room\nmetadata:\n  name: standup\nspec:\n  host: ada\n  slug: standup\n  hosts: [ada@example.com]\n  maxWatchers: 40\n  idleTimeoutSeconds: 3\n  sfu:\n    placement:\n      nodeSelector: {{pool: {}}}\n",
        ns.name
    );
    let out = cluster
        .kubectl_with_stdin(&["apply", "-n", &ns.name, "-f", "-"], Some(&room))
        .await
        .unwrap();
    assert!(out.success(), "{}", out.stderr);
    let rooms: Api<roundtable_crds::Room> = Api::namespaced(ns.client.clone(), &ns.name);
    wait_until("the room to be Idle", Duration::from_secs(30), async || {
        (rooms.get("standup").await.ok()?.status?.phase == Some(roundtable_crds::RoomPhase::Idle))
            .then_some(())
    })
    .await;

    // Someone opens the link: the control plane asks for a pod through the resource.
    let asked = Instant::now();
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    rooms
        .patch("standup", &PatchParams::default(), &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"roundtable.dev/join-requested-at": now}}})))
        .await
        .unwrap();
    wait_until("the room to be Live", Duration::from_secs(60), async || {
        (rooms.get("standup").await.ok()?.status?.phase == Some(roundtable_crds::RoomPhase::Live))
            .then_some(())
    })
    .await;
    eprintln!(
        "e2e: room cold start (join request to Live) in {:.2?}",
        asked.elapsed()
    );

    // Nobody joins: after the idle time the pod drains and the room is Idle again.
    wait_until(
        "the room to scale back to zero",
        Duration::from_secs(60),
        async || {
            let phase = rooms.get("standup").await.ok()?.status?.phase;
            let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
            let gone = pods.get_opt("room-standup").await.ok()?.is_none();
            (phase == Some(roundtable_crds::RoomPhase::Idle) && gone).then_some(())
        },
    )
    .await;

    operator.stop().await;
    agent.stop().await.unwrap();
}
