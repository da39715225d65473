//! End to end in a cluster: the control plane (`roundtable api`'s router over the Kubernetes
//! watch caches) with the operator, the real scheduler and SFU pods run by the node agent.
//! An attendee signed in with a registration token creates a session from the UI's API, the
//! operator makes it live, the attendee joins with the token the control plane issued and goes
//! on camera, and the event page shows the count. A webinar room starts on its first join.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Api;
use reqwest::StatusCode;
use roundtable_crds::{Lifecycle, Session};
use roundtable_e2e::Cluster;
use roundtable_e2e::node_agent::{self, ImageMap, NodeAgent, NodeSpec};
use roundtable_e2e::operator::{RunningOperator, create_join_token_secret};
use roundtable_e2e::wait_until;
use roundtable_operator::OperatorConfig;
use roundtable_operator::api::{
    self, ApiSettings, ApiState, Clock, KubeCatalog, Mailer, RegistrationVerifier, Store,
};
use serde_json::{Value, json};
use sfu_node::client::{ClientPeer, ClientRole};

const KEY: &str = "e2e-join-token-key";
const REGISTRATION_KEY: &[u8] = b"e2e-registration-key";

/// A registration token as an external registration system would issue it.
fn registration_token(email: &str, event: &str, ticket: &str) -> String {
    let exp = jiff::Timestamp::now().as_second() + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": email, "name": "Gene", "exp": exp,
                "tickets": [{"event": event, "type": ticket}]}),
        &jsonwebtoken::EncodingKey::from_secret(REGISTRATION_KEY),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attendee_creates_a_session_joins_it_on_camera_and_a_room_starts_on_demand() {
    roundtable_e2e::init_test_logs();
    let cluster = Cluster::shared().await.unwrap();
    cluster.install_crds().await.unwrap();
    cluster.start_scheduler().await.unwrap();
    let ns = cluster.namespace("cp").await.unwrap();
    let sfu = node_agent::workspace_binary("sfu-node", "sfu-node")
        .await
        .unwrap();
    let agent = NodeAgent::start(
        cluster,
        vec![
            NodeSpec::new(format!("{}-media", ns.name))
                .label("roundtable.dev/media", "true")
                .taint("roundtable.dev/media", "", "NoSchedule")
                .cpu("16")
                .memory("32Gi"),
            NodeSpec::new(format!("{}-rooms", ns.name))
                .cpu("16")
                .memory("32Gi"),
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
            host_ports: 33200..=33299,
            drain_grace_seconds: 2,
            stats_interval: Duration::from_secs(1),
            ..OperatorConfig::default()
        },
    );
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for file in ["gala.yaml", "webinar-room.yaml"] {
        let path = examples.join(file);
        let out = cluster
            .kubectl(&["apply", "-n", &ns.name, "-f", path.to_str().unwrap()])
            .await
            .unwrap();
        assert!(out.success(), "{}", out.stderr);
    }

    // The control plane, reading this namespace through watch caches.
    let catalog = KubeCatalog::start(ns.client.clone(), Some(ns.name.clone()));
    tokio::time::timeout(Duration::from_secs(30), catalog.wait_ready())
        .await
        .expect("the control plane's caches fill");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = ApiState::new(
        Arc::new(catalog),
        ApiSettings {
            store: Store::in_memory().unwrap(),
            join_key: KEY.as_bytes().to_vec(),
            registration: RegistrationVerifier::new(Some(REGISTRATION_KEY.to_vec()), None),
            mailer: Mailer::Log,
            public_url: base.clone(),
            clock: Clock::default(),
            recordings_dir: None,
        },
    )
    .unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, api::router(state)).await.unwrap();
    });
    let http = reqwest::Client::new();

    // Signing in with the registration system's token gives the sign-in cookie.
    let event = format!("{}/gala", ns.name);
    let response = http
        .post(format!("{base}/api/signin/registration"))
        .json(&json!({"token": registration_token("gene@example.org", &event, "general")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let get = async |path: &str| -> Value {
        http.get(format!("{base}{path}"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    let post = async |path: &str, body: Value| -> (StatusCode, Value) {
        let r = http
            .post(format!("{base}{path}"))
            .header("cookie", &cookie)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    };

    // The gala lets attendees create sessions: this one is in the cluster at once, started.
    let (status, created) = post(
        &format!("/api/events/{}/gala/sessions", ns.name),
        json!({"title": "Hallway track", "sharePolicy": "Open"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let name = created["name"].as_str().unwrap().to_string();
    let sessions: Api<Session> = Api::namespaced(ns.client.clone(), &ns.name);
    let session = sessions.get(&name).await.unwrap();
    assert_eq!(session.spec.created_by.as_deref(), Some("gene@example.org"));
    assert_eq!(session.spec.lifecycle, Lifecycle::Started);

    let asked = Instant::now();
    let event_path = format!("/api/events/{}/gala", ns.name);
    let find = |page: &Value| -> Option<Value> {
        page["sessions"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == name.as_str())
            .cloned()
    };
    wait_until(
        "the created session to be Live on the event page",
        Duration::from_secs(120),
        async || {
            let page = get(&event_path).await;
            (find(&page)?["phase"] == "Live").then_some(())
        },
    )
    .await;
    eprintln!(
        "e2e: session created in the UI to Live in {:.2?}",
        asked.elapsed()
    );

    let (status, joined) = post(&format!("/api/sessions/{}/{name}/join", ns.name), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    assert_eq!(joined["role"]["share"], true);
    let sfu = joined["sfu"]
        .as_str()
        .unwrap()
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap();
    let room = joined["room"].as_str().unwrap().to_string();
    let token = joined["token"].as_str().unwrap().to_string();
    let (mut publisher, _) = ClientPeer::connect(
        sfu,
        &format!("/rooms/{room}/whip"),
        &token,
        ClientRole::Publish { simulcast: false },
    )
    .await
    .expect("the SFU takes the control plane's token");
    let publishing = tokio::spawn(async move {
        publisher
            .publish_until(Instant::now() + Duration::from_secs(15), false)
            .await
            .expect("the publisher sends media")
    });
    wait_until(
        "the event page to count 1 on camera",
        Duration::from_secs(30),
        async || {
            let page = get(&event_path).await;
            (find(&page)?["onCamera"] == 1).then_some(())
        },
    )
    .await;

    // A webinar room has no pod until someone opens it; the join asks for one.
    let join_room = async || {
        post(
            "/api/rooms/grace/product-webinar/join",
            json!({"label": {"name": "Viewer"}}),
        )
        .await
    };
    let (status, starting) = join_room().await;
    assert_eq!(status, StatusCode::ACCEPTED, "{starting}");
    assert_eq!(starting["starting"], true);
    let asked = Instant::now();
    let joined = wait_until(
        "the room's SFU to take joins",
        Duration::from_secs(90),
        async || {
            let (status, body) = join_room().await;
            (status == StatusCode::OK).then_some(body)
        },
    )
    .await;
    eprintln!(
        "e2e: room join request to a join token in {:.2?}",
        asked.elapsed()
    );
    assert_eq!(joined["role"]["share"], false, "webinar attendees watch");

    assert!(publishing.await.unwrap() > 30);
    server.abort();
    operator.stop().await;
    agent.stop().await.unwrap();
}
