//! End to end in a cluster: the control plane (`roundtable api`'s router over the Kubernetes
//! watch caches) with the operator, the real scheduler and SFU pods run by the node agent.
//! An attendee signed in with a registration token creates a session from the UI's API, the
//! operator makes it live, the attendee joins with the token the control plane issued and goes
//! on camera, and the event page shows the count. A webinar room starts on its first join.

use std::path::Path;
use std::time::{Duration, Instant};

use kube::Api;
use roundtable_crds::{Lifecycle, Session};
use roundtable_e2e::stack::Stack;
use roundtable_e2e::wait_until;
use roundtable_operator::OperatorConfig;
use serde_json::{Value, json};
use sfu_node::client::{ClientPeer, ClientRole};

/// The whole cluster-side product in a fresh namespace, on host ports `ports`, with these
/// files of `examples/` applied.
async fn with_examples(
    prefix: &str,
    ports: std::ops::RangeInclusive<u16>,
    files: &[&str],
) -> Stack {
    let stack = Stack::start(
        prefix,
        OperatorConfig {
            host_ports: ports,
            drain_grace_seconds: 2,
            stats_interval: Duration::from_secs(1),
            ..OperatorConfig::default()
        },
    )
    .await
    .unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for file in files {
        stack.apply(&examples.join(file)).await.unwrap();
    }
    stack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attendee_creates_a_session_joins_it_on_camera_and_a_room_starts_on_demand() {
    roundtable_e2e::init_test_logs();
    let stack = with_examples("cp", 33200..=33299, &["gala.yaml", "webinar-room.yaml"]).await;
    let ns = &stack.ns;

    // Signing in with the registration system's token gives the sign-in cookie.
    let cookie = stack
        .api
        .sign_in("gene@example.org", "gala", "general")
        .await
        .unwrap();
    let get = async |path: &str| -> Value { stack.api.get(&cookie, path).await.unwrap().1 };
    let post = async |path: &str, body: Value| -> (u16, Value) {
        stack.api.post(&cookie, path, body).await.unwrap()
    };

    // The gala lets attendees create sessions: this one is in the cluster at once, started.
    let (status, created) = post(
        &format!("/api/events/{}/gala/sessions", ns.name),
        json!({"title": "Hallway track", "sharePolicy": "Open"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
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
    assert_eq!(status, 200, "{joined}");
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
    assert_eq!(status, 202, "{starting}");
    assert_eq!(starting["starting"], true);
    let asked = Instant::now();
    let joined = wait_until(
        "the room's SFU to take joins",
        Duration::from_secs(90),
        async || {
            let (status, body) = join_room().await;
            (status == 200).then_some(body)
        },
    )
    .await;
    eprintln!(
        "e2e: room join request to a join token in {:.2?}",
        asked.elapsed()
    );
    assert_eq!(joined["role"]["share"], false, "webinar attendees watch");

    assert!(publishing.await.unwrap() > 30);
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organiser_starts_the_stage_from_the_page_and_ends_it() {
    roundtable_e2e::init_test_logs();
    let stack = with_examples("stage", 33300..=33399, &["gala.yaml", "stage.yaml"]).await;
    let ns = &stack.ns;
    let ada = stack
        .api
        .sign_in("ada@example.com", "gala", "general")
        .await
        .unwrap();
    let gene = stack
        .api
        .sign_in("gene@example.org", "gala", "general")
        .await
        .unwrap();
    let stage = format!("/api/stages/{}/gala-main-stage", ns.name);

    // Scheduled for December: attendees are told to wait; they may not start it themselves.
    let (status, early) = stack
        .api
        .post(&gene, &format!("{stage}/join"), json!({}))
        .await
        .unwrap();
    assert_eq!((status, early["error"].as_str()), (503, Some("not_live")));
    let (status, _) = stack
        .api
        .post(&gene, &format!("{stage}/start"), json!({}))
        .await
        .unwrap();
    assert_eq!(status, 403);

    // The organiser's Start: the Stage in the cluster says Started and goes Live, and the
    // attendee's waiting page (which asks again) gets a join token.
    let pressed = Instant::now();
    let (status, body) = stack
        .api
        .post(&ada, &format!("{stage}/start"), json!({}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let stages: Api<roundtable_crds::Stage> = Api::namespaced(ns.client.clone(), &ns.name);
    assert_eq!(
        stages.get("gala-main-stage").await.unwrap().spec.lifecycle,
        Lifecycle::Started
    );
    let joined = wait_until(
        "the attendee's stage page to join",
        Duration::from_secs(120),
        async || {
            let (status, body) = stack
                .api
                .post(&gene, &format!("{stage}/join"), json!({}))
                .await
                .ok()?;
            (status == 200).then_some(body)
        },
    )
    .await;
    assert!(joined["token"].is_string(), "{joined}");
    eprintln!(
        "e2e: stage Start to an attendee's join token in {:.2?}",
        pressed.elapsed()
    );

    // End: for good.
    let (status, _) = stack
        .api
        .post(&ada, &format!("{stage}/end"), json!({}))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        stages.get("gala-main-stage").await.unwrap().spec.lifecycle,
        Lifecycle::Ended
    );
    wait_until("the stage to end", Duration::from_secs(60), async || {
        let (status, body) = stack
            .api
            .post(&gene, &format!("{stage}/join"), json!({}))
            .await
            .ok()?;
        (status != 200 && body["error"] == "ended").then_some(())
    })
    .await;
}
