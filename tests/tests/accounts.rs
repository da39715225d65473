//! Host accounts in a cluster: a host signs up, chooses their URL, creates a room on their
//! dashboard, and the room is a `Room` resource like any other — in the namespace, labelled
//! with its owner, listed by `kubectl get rooms`, started by the operator on the first join.
//! A Room of the same host applied with kubectl shows on the dashboard read-only; editing and
//! deleting a dashboard room changes and deletes the resource (its passcode Secret with it).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::ListParams;
use roundtable_crds::Room;
use roundtable_e2e::stack::Stack;
use roundtable_e2e::wait_until;
use roundtable_operator::OperatorConfig;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_signs_up_creates_a_room_on_the_dashboard_and_it_goes_live_on_the_first_join() {
    roundtable_e2e::init_test_logs();
    let stack = Stack::start(
        "accounts",
        OperatorConfig {
            host_ports: 33800..=33849,
            drain_grace_seconds: 2,
            stats_interval: Duration::from_secs(1),
            ..OperatorConfig::default()
        },
    )
    .await
    .unwrap();
    let ns = &stack.ns;
    let cp = &stack.api;
    // Signed in (here through the registration system's token), then onboarded once.
    let host = cp
        .sign_in("hedy@example.org", "gala", "general")
        .await
        .unwrap();
    let (status, account) = cp.get(&host, "/api/account").await.unwrap();
    assert_eq!(
        (status, account["onboarded"].as_bool()),
        (200, Some(false)),
        "{account}"
    );
    let (status, onboarded) = cp
        .post(
            &host,
            "/api/account/onboarding",
            json!({"useCase": "meetings", "displayName": "Hedy Lamarr", "slug": "hedy"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{onboarded}");

    // A room the platform's operators declared for her, with kubectl.
    let declared = std::env::temp_dir().join(format!("{}-declared-room.yaml", ns.name));
    std::fs::write(
        &declared,
        "apiVersion: roundtable.dev/v1alpha1\nkind: Room\nmetadata:\n  name: hedy-all-hands\n\
         spec:\n  host: hedy\n  slug: all-hands\n  title: All hands\n  hosts: [hedy@example.org]\n",
    )
    .unwrap();
    stack.apply(&declared).await.unwrap();
    let _ = std::fs::remove_file(&declared);

    let (status, made) = cp
        .post(
            &host,
            "/api/hosts/hedy/rooms",
            json!({"slug": "lab", "title": "Frequency lab", "theme": "Meeting",
                   "passcode": "hop-hop", "coHosts": ["george@example.org"]}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{made}");

    // The Room resource, in the namespace, labelled with its owner, as kubectl lists it.
    let rooms: Api<Room> = Api::namespaced(ns.client.clone(), &ns.name);
    let owned = rooms
        .list(&ListParams::default().labels("roundtable.dev/owner=hedy"))
        .await
        .unwrap();
    assert_eq!(
        owned.items.len(),
        1,
        "only the dashboard's room carries the owner label"
    );
    let room = &owned.items[0];
    assert_eq!(room.metadata.name.as_deref(), Some("hedy-lab"));
    assert_eq!(room.spec.hosts, ["hedy@example.org", "george@example.org"]);
    let listed = stack
        .cluster
        .kubectl(&["get", "rooms", "-n", &ns.name])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(
        listed.contains("hedy-lab") && listed.contains("hedy-all-hands"),
        "{listed}"
    );
    let secrets: Api<Secret> = Api::namespaced(ns.client.clone(), &ns.name);
    let passcode = secrets.get("hedy-lab-passcode").await.unwrap();
    assert_eq!(
        passcode.metadata.owner_references.unwrap()[0].name,
        "hedy-lab",
        "the passcode goes with its room"
    );

    // The dashboard: both rooms, the declared one read-only.
    let dashboard = wait_until(
        "the dashboard to list both rooms",
        Duration::from_secs(20),
        async || {
            let (_, board) = cp.get(&host, "/api/hosts/hedy").await.unwrap();
            (board["rooms"].as_array()?.len() == 2).then_some(board)
        },
    )
    .await;
    let editable: Vec<(String, bool)> = dashboard["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["slug"].as_str().unwrap().to_string(),
                r["editable"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        editable,
        [("all-hands".to_string(), false), ("lab".to_string(), true)]
    );

    // A guest's first join starts the room's SFU pod; then the join is let in.
    let guest = "rt_guest=1";
    let join = async || {
        cp.post(
            guest,
            "/api/rooms/hedy/lab/join",
            json!({"label": {"name": "Guest"}, "passcode": "hop-hop"}),
        )
        .await
        .unwrap()
    };
    let (status, starting) = join().await;
    assert_eq!(status, 202, "{starting}");
    let asked = Instant::now();
    let joined = wait_until(
        "the dashboard room to take joins",
        Duration::from_secs(90),
        async || {
            let (status, body) = join().await;
            (status == 200).then_some(body)
        },
    )
    .await;
    eprintln!(
        "e2e: dashboard room's first join to a join token in {:.2?}",
        asked.elapsed()
    );
    assert!(joined["token"].as_str().is_some());
    let live = rooms.get("hedy-lab").await.unwrap();
    assert_eq!(
        live.status.and_then(|s| s.phase),
        Some(roundtable_crds::RoomPhase::Live)
    );

    // Edited on the dashboard: the resource changes; deleted: it is gone.
    let (status, edited) = cp
        .call(
            reqwest::Method::PUT,
            &host,
            "/api/hosts/hedy/rooms/lab",
            json!({"title": "Frequency hopping lab", "locked": true}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{edited}");
    let room = rooms.get("hedy-lab").await.unwrap();
    assert_eq!(room.spec.title.as_deref(), Some("Frequency hopping lab"));
    assert!(room.spec.locked);
    assert!(
        room.spec.passcode.is_some(),
        "an edit without a passcode keeps it"
    );
    let (status, refused) = cp
        .call(
            reqwest::Method::DELETE,
            &host,
            "/api/hosts/hedy/rooms/all-hands",
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(
        (status, refused["error"].as_str()),
        (409, Some("room_declared"))
    );
    let (status, _) = cp
        .call(
            reqwest::Method::DELETE,
            &host,
            "/api/hosts/hedy/rooms/lab",
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(status, 204);
    wait_until(
        "the Room resource to go",
        Duration::from_secs(30),
        async || {
            rooms
                .get_opt("hedy-lab")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert!(rooms.get_opt("hedy-all-hands").await.unwrap().is_some());
    stack.stop().await.unwrap();
}
