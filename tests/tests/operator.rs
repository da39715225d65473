//! The operator against a real kube-apiserver: sessions, stages and rooms become sized SFU pods
//! with disruption budgets, status tells the truth, Events say what happened, and neither a
//! restart nor a second replica duplicates a pod.
//!
//! The operator runs in-process (the real controllers, scoped to the test's namespace), so
//! each test has its own operator and they never touch each other's objects.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use roundtable_crds::{LiveEvent, Room, Session};
use roundtable_e2e::operator::RunningOperator;
use roundtable_e2e::{Cluster, TestNamespace};
use roundtable_operator::OperatorConfig;

const WAIT: Duration = Duration::from_secs(30);

async fn cluster() -> &'static Cluster {
    let cluster = Cluster::shared().await.expect("test control plane starts");
    cluster.install_crds().await.expect("CRDs install");
    cluster
}

/// A fresh namespace with the join-token Secret that SFU pods need (the chart makes it).
async fn namespace(cluster: &Cluster, prefix: &str) -> kube::Result<TestNamespace> {
    let ns = cluster.namespace(prefix).await.expect("a namespace");
    roundtable_e2e::operator::create_join_token_secret(ns.client.clone(), &ns.name, "e2e-key")
        .await
        .expect("the join-token Secret");
    Ok(ns)
}

fn test_config() -> OperatorConfig {
    OperatorConfig {
        sfu_image: "roundtable/sfu-node:e2e".into(),
        host_ports: 32000..=32099,
        warm_up: jiff::SignedDuration::from_mins(2),
        drain_grace_seconds: 5,
        stats_interval: Duration::from_secs(1),
        ..OperatorConfig::default()
    }
}

/// One operator replica running in this test's runtime, with this file's configuration.
struct Replica;

impl Replica {
    fn start(client: Client, namespace: &str, identity: &str) -> RunningOperator {
        roundtable_e2e::init_test_logs();
        RunningOperator::start(client, namespace, identity, test_config())
    }
}

/// What most tests start from: a fresh namespace (with the join-token Secret), one operator
/// replica in it, and the LiveEvent `gala` with `event_extra` added to its spec.
async fn with_event(
    prefix: &str,
    event_extra: &str,
) -> (&'static Cluster, TestNamespace, RunningOperator) {
    let cluster = cluster().await;
    let ns = namespace(cluster, prefix).await.unwrap();
    let operator = Replica::start(ns.client.clone(), &ns.name, "replica-a");
    apply_yaml(&ns, cluster, &event_yaml(event_extra)).await;
    (cluster, ns, operator)
}

/// The most cores an SFU pod of this file's operator may have: its `--sfu-max-cores`, at most
/// what the cluster's largest node gives (nodes other test files left may be there).
async fn max_cores(ns: &TestNamespace) -> u32 {
    use roundtable_operator::plan::sizing::{cores_one_node_gives, cpu_millicores};
    let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(ns.client.clone())
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let allocatable = nodes.iter().filter_map(|n| {
        let cpu = n.status.as_ref()?.allocatable.as_ref()?.get("cpu")?;
        cpu_millicores(&cpu.0)
    });
    let configured = test_config().sfu_max_cores;
    cores_one_node_gives(allocatable).map_or(configured, |c| c.min(configured))
}

/// The pod `name` once it exists.
async fn pod_appears(pods: &Api<Pod>, name: &str) -> Pod {
    eventually(&format!("the pod {name}"), || async {
        pods.get_opt(name).await.unwrap()
    })
    .await
}

/// Polls `check` until it returns Some, or panics after `WAIT` naming `what`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    roundtable_e2e::wait_until(what, WAIT, async || check().await).await
}

async fn apply_yaml(ns: &TestNamespace, cluster: &Cluster, yaml: &str) {
    let out = cluster
        .kubectl_with_stdin(&["apply", "-n", &ns.name, "-f", "-"], Some(yaml))
        .await
        .unwrap();
    assert!(out.success(), "kubectl apply: {}", out.stderr);
}

fn event_yaml(extra: &str) -> String {
    format!(
        "apiVersion: roundtable.dev/v1alpha1\nkind: LiveEvent\nmetadata:\n  name: gala\nspec:\n  title: Gala\n  start: \"2020-01-01T00:00:00Z\"\n  end: \"2099-01-01T00:00:00Z\"\n  ticketTypes: [{{name: general}}, {{name: vip}}]\n{extra}"
    )
}

fn session_yaml(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: roundtable.dev/v1alpha1\nkind: Session\nmetadata:\n  name: {name}\nspec:\n  event: gala\n  title: Roundtable\n{extra}"
    )
}

async fn session(ns: &TestNamespace, name: &str) -> Session {
    Api::<Session>::namespaced(ns.client.clone(), &ns.name)
        .get(name)
        .await
        .unwrap()
}

fn condition(session: &Session, type_: &str) -> Option<(String, String, Option<i64>)> {
    let c = session
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.observed_generation))
}

async fn event_reasons(ns: &TestNamespace, name: &str) -> Vec<String> {
    let events = ns.events_about(name).await.unwrap();
    events.into_iter().filter_map(|e| e.reason).collect()
}

#[tokio::test]
async fn a_started_session_gets_one_sized_pod_a_budget_and_true_status() {
    let (cluster, ns, operator) = with_event("op-start", "").await;
    apply_yaml(&ns, cluster, &session_yaml("panel", "  lifecycle: Started\n  maxParticipants: 20\n  share: {policy: InviteOnly, invitees: [a@example.com]}\n")).await;

    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let pod = pod_appears(&pods, "session-panel").await;
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Session", "panel", Some(true))
    );
    let container = &pod.spec.as_ref().unwrap().containers[0];
    let requests = container
        .resources
        .as_ref()
        .unwrap()
        .requests
        .clone()
        .unwrap();
    // At most what one node can give a pod (see `a_pod_is_never_bigger_than_its_nodes_give`).
    let size = roundtable_operator::plan::sizing::pod_size(20, 150, max_cores(&ns).await);
    assert_eq!(
        requests["cpu"].0,
        size.cpu_quantity(),
        "sized for 20 on camera and 150 watching"
    );
    assert_eq!(requests["memory"].0, size.memory_quantity());
    let media = container
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .find(|p| p.name.as_deref() == Some("media"))
        .unwrap();
    let port = media.host_port.expect("a hostPort");
    assert!(
        (32000..=32099).contains(&port),
        "hostPort {port} from the configured range"
    );

    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(ns.client.clone(), &ns.name);
    let pdb = eventually("the disruption budget", || async {
        pdbs.get_opt("session-panel").await.unwrap()
    })
    .await;
    assert_eq!(
        pdb.spec.unwrap().min_available,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );

    let s = eventually("status Starting", || async {
        let s = session(&ns, "panel").await;
        (s.status.as_ref()?.phase == Some(roundtable_crds::LivePhase::Starting)).then_some(s)
    })
    .await;
    let generation = s.metadata.generation;
    assert_eq!(
        condition(&s, "Ready").map(|c| (c.0, c.2)),
        Some(("False".into(), generation))
    );
    assert_eq!(
        condition(&s, "ReferencesResolved").map(|c| c.0),
        Some("True".into())
    );
    eventually("a Starting Event", || async {
        event_reasons(&ns, "panel")
            .await
            .contains(&"Starting".to_string())
            .then_some(())
    })
    .await;

    // kubectl shows the phase column.
    let out = cluster
        .kubectl(&["get", "sessions", "-n", &ns.name])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(out.lines().nth(1).unwrap().contains("Starting"), "{out}");

    // Exactly one pod, however often it reconciles.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    operator.stop().await;
}

#[tokio::test]
async fn a_scheduled_session_waits_for_its_warm_up_and_problems_with_references_are_reported() {
    let (cluster, ns, operator) = with_event("op-wait", "").await;
    apply_yaml(
        &ns,
        cluster,
        &session_yaml("later", "  start: \"2098-01-01T10:00:00Z\"\n"),
    )
    .await;
    apply_yaml(
        &ns,
        cluster,
        &session_yaml(
            "vip",
            "  lifecycle: Started\n  watch: {policy: TicketTypes, ticketTypes: [platinum]}\n",
        ),
    )
    .await;
    apply_yaml(
        &ns,
        cluster,
        &session_yaml("orphan", "  lifecycle: Started\n").replace("event: gala", "event: missing"),
    )
    .await;

    let later = eventually("later is Scheduled", || async {
        let s = session(&ns, "later").await;
        (s.status.as_ref()?.phase == Some(roundtable_crds::LivePhase::Scheduled)).then_some(s)
    })
    .await;
    assert_eq!(
        condition(&later, "Ready").map(|c| c.1),
        Some("NotStarted".into())
    );

    let vip = eventually("vip reports the unknown ticket type", || async {
        let s = session(&ns, "vip").await;
        condition(&s, "ReferencesResolved")
            .filter(|c| c.0 == "False")
            .map(|_| s)
    })
    .await;
    assert_eq!(
        condition(&vip, "ReferencesResolved").unwrap().1,
        "UnknownTicketType"
    );

    let orphan = eventually("orphan reports the missing event", || async {
        let s = session(&ns, "orphan").await;
        condition(&s, "ReferencesResolved")
            .filter(|c| c.0 == "False")
            .map(|_| s)
    })
    .await;
    assert_eq!(
        condition(&orphan, "ReferencesResolved").unwrap().1,
        "EventNotFound"
    );

    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let names: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(
        names,
        vec!["session-vip".to_string()],
        "only the started session with a known event has a pod"
    );
    operator.stop().await;
}

#[tokio::test]
async fn a_deleted_pod_is_replaced_and_an_ended_session_drains_to_ended() {
    let (cluster, ns, operator) = with_event("op-replace", "").await;
    apply_yaml(&ns, cluster, &session_yaml("s1", "  lifecycle: Started\n")).await;
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let first = pod_appears(&pods, "session-s1").await;

    pods.delete("session-s1", &DeleteParams::default())
        .await
        .unwrap();
    let first_uid = first.metadata.uid.clone();
    let second = eventually("a replacement pod", || async {
        pods.get_opt("session-s1")
            .await
            .unwrap()
            .filter(|p| p.metadata.uid != first_uid)
    })
    .await;
    assert_ne!(second.metadata.uid, first.metadata.uid);
    eventually("a PodReplaced Event", || async {
        event_reasons(&ns, "s1")
            .await
            .contains(&"PodReplaced".to_string())
            .then_some(())
    })
    .await;

    // An organiser ends the session: the pod goes, the session is Ended.
    let sessions: Api<Session> = Api::namespaced(ns.client.clone(), &ns.name);
    sessions
        .patch(
            "s1",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"lifecycle": "Ended"}})),
        )
        .await
        .unwrap();
    eventually("the session to end", || async {
        let s = session(&ns, "s1").await;
        (s.status.as_ref()?.phase == Some(roundtable_crds::LivePhase::Ended)).then_some(())
    })
    .await;
    assert!(
        pods.get_opt("session-s1").await.unwrap().is_none(),
        "the pod is gone"
    );
    let reasons = event_reasons(&ns, "s1").await;
    assert!(
        reasons.contains(&"Draining".to_string()) && reasons.contains(&"Ended".to_string()),
        "{reasons:?}"
    );
    operator.stop().await;
}

#[tokio::test]
async fn two_replicas_never_duplicate_a_pod_and_the_standby_takes_over() {
    let cluster = cluster().await;
    let ns = namespace(cluster, "op-ha").await.unwrap();
    let a = Replica::start(ns.client.clone(), &ns.name, "replica-a");
    let b = Replica::start(cluster.admin_client().unwrap(), &ns.name, "replica-b");
    apply_yaml(&ns, cluster, &event_yaml("")).await;
    for i in 0..5 {
        apply_yaml(
            &ns,
            cluster,
            &session_yaml(&format!("s{i}"), "  lifecycle: Started\n"),
        )
        .await;
    }
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    eventually("five pods", || async {
        (pods.list(&ListParams::default()).await.unwrap().items.len() >= 5).then_some(())
    })
    .await;
    let leaders = [a.leading(), b.leading()];
    assert_eq!(
        leaders.iter().filter(|l| **l).count(),
        1,
        "exactly one replica leads: {leaders:?}"
    );

    // The leader stops (as in a rolling restart); the standby takes the Lease and carries on
    // with the same pods: no duplicates, and new work is done.
    let (leader, standby) = if a.leading() { (a, b) } else { (b, a) };
    leader.stop().await;
    apply_yaml(&ns, cluster, &session_yaml("s5", "  lifecycle: Started\n")).await;
    pod_appears(&pods, "session-s5").await;
    assert!(standby.leading());
    let names: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(names.len(), 6, "one pod per session: {names:?}");
    standby.stop().await;
}

#[tokio::test]
async fn the_event_rolls_up_its_sessions_and_rooms_start_on_a_join_request() {
    let (cluster, ns, operator) = with_event("op-rollup", "").await;
    for name in ["a", "b", "c"] {
        apply_yaml(
            &ns,
            cluster,
            &session_yaml(name, "  start: \"2098-01-01T10:00:00Z\"\n"),
        )
        .await;
    }
    let events: Api<LiveEvent> = Api::namespaced(ns.client.clone(), &ns.name);
    eventually("the event's rollup", || async {
        let status = events.get("gala").await.unwrap().status?;
        (status.sessions == Some(3) && status.phase == Some(roundtable_crds::LiveEventPhase::Live))
            .then_some(())
    })
    .await;

    // A room has no pod until someone asks to join.
    apply_yaml(&ns, cluster, "apiVersion: roundtable.dev/v1alpha1\nkind: Room\nmetadata:\n  name: board\nspec:\n  host: ada\n  slug: board\n  hosts: [ada@example.com]\n").await;
    let rooms: Api<Room> = Api::namespaced(ns.client.clone(), &ns.name);
    eventually("the room to be Idle", || async {
        let status = rooms.get("board").await.unwrap().status?;
        (status.phase == Some(roundtable_crds::RoomPhase::Idle)
            && status.path.as_deref() == Some("/ada/board"))
        .then_some(())
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    assert!(pods.get_opt("room-board").await.unwrap().is_none());
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    rooms
        .patch("board", &PatchParams::default(), &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"roundtable.dev/join-requested-at": now}}})))
        .await
        .unwrap();
    pod_appears(&pods, "room-board").await;
    operator.stop().await;
}

#[tokio::test]
async fn deleting_a_session_removes_everything_it_owns() {
    let cluster = cluster().await;
    cluster
        .start_controller_manager()
        .await
        .expect("controller-manager starts");
    let ns = namespace(cluster, "op-gc").await.unwrap();
    let operator = Replica::start(ns.client.clone(), &ns.name, "replica-a");
    apply_yaml(&ns, cluster, &event_yaml("")).await;
    apply_yaml(
        &ns,
        cluster,
        &session_yaml("gone", "  lifecycle: Started\n"),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(ns.client.clone(), &ns.name);
    eventually("the pod and budget", || async {
        (pods.get_opt("session-gone").await.unwrap().is_some()
            && pdbs.get_opt("session-gone").await.unwrap().is_some())
        .then_some(())
    })
    .await;
    let sessions: Api<Session> = Api::namespaced(ns.client.clone(), &ns.name);
    sessions
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    eventually("garbage collection of the pod and budget", || async {
        (pods.get_opt("session-gone").await.unwrap().is_none()
            && pdbs.get_opt("session-gone").await.unwrap().is_none())
        .then_some(())
    })
    .await;
    operator.stop().await;
}

fn env_value(pod: &Pod, name: &str) -> Option<String> {
    pod.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

#[tokio::test]
async fn load_balancer_and_node_port_modes_announce_the_services_address() {
    use k8s_openapi::api::core::v1::Service;
    let (cluster, ns, operator) =
        with_event("op-svc", "  sfu:\n    network:\n      mode: LoadBalancer\n").await;
    apply_yaml(&ns, cluster, &session_yaml("lb", "  lifecycle: Started\n")).await;

    // No address yet: the session waits for the load balancer and no pod runs.
    let services: Api<Service> = Api::namespaced(ns.client.clone(), &ns.name);
    let service = eventually("the LoadBalancer Service", || async {
        services.get_opt("session-lb").await.unwrap()
    })
    .await;
    assert_eq!(
        service.spec.as_ref().unwrap().type_.as_deref(),
        Some("LoadBalancer")
    );
    eventually("WaitingForLoadBalancer", || async {
        let s = session(&ns, "lb").await;
        (condition(&s, "Ready")?.1 == "WaitingForLoadBalancer").then_some(())
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    assert!(pods.get_opt("session-lb").await.unwrap().is_none());

    // The cloud's load balancer controller assigns an address.
    services
        .patch_status(
            "session-lb",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.50"}]}}})),
        )
        .await
        .unwrap();
    let pod = pod_appears(&pods, "session-lb").await;
    assert_eq!(
        env_value(&pod, "SFU_ADVERTISE_ADDR").as_deref(),
        Some("203.0.113.50")
    );
    let media = pod.spec.as_ref().unwrap().containers[0]
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .find(|p| p.name.as_deref() == Some("media"))
        .cloned()
        .unwrap();
    assert_eq!(media.host_port, None, "no hostPort behind a load balancer");
    let s = eventually("the endpoint in the status", || async {
        session(&ns, "lb").await.status?.endpoint
    })
    .await;
    assert_eq!(s, format!("203.0.113.50:{}", media.container_port));

    // NodePort: the API server allocates node ports; the SFU announces its node with the UDP one.
    apply_yaml(
        &ns,
        cluster,
        &session_yaml("np", "  lifecycle: Started\n").replace("event: gala", "event: np-event"),
    )
    .await;
    apply_yaml(
        &ns,
        cluster,
        &event_yaml("  sfu:\n    network:\n      mode: NodePort\n")
            .replace("name: gala", "name: np-event"),
    )
    .await;
    let pod = pod_appears(&pods, "session-np").await;
    let service = services.get("session-np").await.unwrap();
    let node_port = service
        .spec
        .unwrap()
        .ports
        .unwrap()
        .into_iter()
        .find(|p| p.name.as_deref() == Some("media"))
        .unwrap()
        .node_port
        .unwrap();
    assert_eq!(
        env_value(&pod, "SFU_ADVERTISE_ADDR"),
        Some(format!("$(HOST_IP):{node_port}"))
    );
    operator.stop().await;
}

/// Plays the kubelet for a pod: binds it to a node and reports it running and ready at
/// `pod_ip` on a node at `host_ip` (nothing runs it: this file needs no SFU).
/// Binds a pod to the fake node `e2e-node`, as the scheduler would.
async fn bind_pod(pods: &Api<Pod>, name: &str) {
    let binding = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "e2e-node"},
    });
    let _: serde_json::Value = pods
        .create_subresource("binding", name, &kube::api::PostParams::default(), &binding)
        .await
        .unwrap();
}

async fn run_pod(pods: &Api<Pod>, name: &str, pod_ip: &str, host_ip: &str) {
    bind_pod(pods, name).await;
    let status = serde_json::json!({"status": {
        "phase": "Running",
        "podIP": pod_ip,
        "hostIP": host_ip,
        "conditions": [{"type": "Ready", "status": "True"}],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

fn args(pod: &Pod) -> Vec<String> {
    pod.spec.as_ref().unwrap().containers[0]
        .args
        .clone()
        .unwrap_or_default()
}

#[tokio::test]
async fn kubectl_scale_runs_relay_pods_pointed_at_the_origin_and_scaling_to_zero_removes_them() {
    let (cluster, ns, operator) = with_event("op-relays", "").await;
    apply_yaml(
        &ns,
        cluster,
        &session_yaml(
            "big",
            "  lifecycle: Started\n  maxWatchers: 400\n  autoscaling: {watchersPerRelay: 200}\n",
        ),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let origin = pod_appears(&pods, "session-big").await;
    let origin_port = roundtable_operator::plan::pod::host_port_of(&origin).unwrap();
    // Nothing listens on loopback's admin port: the origin's /stats is refused at once.
    run_pod(&pods, "session-big", "127.0.0.1", "127.0.0.1").await;
    let selector = "roundtable.dev/kind=session,roundtable.dev/room=big,roundtable.dev/role=relay";
    eventually("Live with the relay selector and no relays", || async {
        let status = session(&ns, "big").await.status?;
        (status.phase == Some(roundtable_crds::LivePhase::Live)
            && status.selector.as_deref() == Some(selector)
            && status.relays == Some(0)
            && status.watchers_per_pod == Some(200))
        .then_some(())
    })
    .await;

    let scale = |replicas: u32| {
        let ns = &ns;
        async move {
            let replicas = format!("--replicas={replicas}");
            let out = cluster
                .kubectl(&["scale", "session", "big", "-n", &ns.name, &replicas])
                .await
                .unwrap();
            assert!(out.success(), "kubectl scale: {}", out.stderr);
        }
    };
    scale(2).await;
    let relays = eventually("two relay pods", || async {
        let list = pods
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap()
            .items;
        (list.len() == 2).then_some(list)
    })
    .await;
    let mut names: Vec<String> = relays
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["session-big-relay-0", "session-big-relay-1"]);
    let mut relay_ports = Vec::new();
    for relay in &relays {
        assert_eq!(
            args(relay),
            [
                "--origin".to_string(),
                format!("http://127.0.0.1:{origin_port}"),
                "--max-watchers".into(),
                "200".into(),
            ],
            "{:?}",
            relay.metadata.name
        );
        assert_eq!(env_value(relay, "SFU_ROOM"), env_value(&origin, "SFU_ROOM"));
        assert_eq!(
            env_value(relay, "SFU_SHARE_POLICY"),
            env_value(&origin, "SFU_SHARE_POLICY")
        );
        let owner = &relay.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("Session", "big")
        );
        relay_ports.push(roundtable_operator::plan::pod::host_port_of(relay).unwrap());
    }
    relay_ports.push(origin_port);
    relay_ports.sort();
    relay_ports.dedup();
    assert_eq!(relay_ports.len(), 3, "every pod has its own hostPort");
    assert!(
        pods.get_opt("session-big").await.unwrap().is_some(),
        "the origin stays"
    );

    // A relay that comes up is counted ready, with its own endpoint; the scale subresource
    // reports it to an HPA.
    run_pod(&pods, "session-big-relay-0", "127.0.0.1", "10.0.0.7").await;
    let port0 = roundtable_operator::plan::pod::host_port_of(
        &pods.get("session-big-relay-0").await.unwrap(),
    )
    .unwrap();
    let status = eventually("one ready relay in the status", || async {
        let status = session(&ns, "big").await.status?;
        (status.relays == Some(1) && status.relay_pods.len() == 2).then_some(status)
    })
    .await;
    let first = &status.relay_pods[0];
    assert_eq!(first.name, "session-big-relay-0");
    assert!(first.ready);
    assert_eq!(first.endpoint, Some(format!("10.0.0.7:{port0}")));
    assert!(!status.relay_pods[1].ready, "relay 1 is not running");
    let out = cluster
        .kubectl(&[
            "get",
            "session",
            "big",
            "-n",
            &ns.name,
            "--subresource=scale",
            "-o",
            "jsonpath={.spec.replicas} {.status.replicas} {.status.selector}",
        ])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(out.trim(), format!("2 1 {selector}"));

    // Scaling to zero removes them (a pod on a node waits for its kubelet, which this test
    // has none of, so being deleted is enough).
    scale(0).await;
    eventually("no relay pods", || async {
        let list = pods
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap()
            .items;
        list.iter()
            .all(|p| p.metadata.deletion_timestamp.is_some())
            .then_some(())
    })
    .await;
    eventually("no ready relays in the status", || async {
        (session(&ns, "big").await.status?.relays == Some(0)).then_some(())
    })
    .await;
    assert!(pods.get_opt("session-big").await.unwrap().is_some());
    operator.stop().await;
}

/// A stand-in for the origin's sfu-node admin port: `/stats` reports `watching` people.
async fn fake_stats(watching: std::sync::Arc<std::sync::atomic::AtomicI32>) -> u16 {
    use std::sync::atomic::Ordering;
    let app = axum::Router::new().route(
        "/stats",
        axum::routing::get(move || {
            let watching = watching.load(Ordering::Relaxed);
            async move {
                axum::Json(serde_json::json!({"counts": {"on_camera": 1, "watching": watching}}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

#[tokio::test]
async fn the_autoscaler_follows_the_live_watching_count_through_the_scale_subresource() {
    use std::sync::atomic::Ordering;
    let cluster = cluster().await;
    let ns = namespace(cluster, "op-autoscale").await.unwrap();
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
    let admin_port = fake_stats(watching.clone()).await;
    roundtable_e2e::init_test_logs();
    let operator = RunningOperator::start(
        ns.client.clone(),
        &ns.name,
        "replica-a",
        OperatorConfig {
            sfu_admin_port: admin_port,
            ..test_config()
        },
    );
    apply_yaml(&ns, cluster, &event_yaml("")).await;
    apply_yaml(
        &ns,
        cluster,
        &session_yaml(
            "surge",
            "  lifecycle: Started\n  maxWatchers: 800\n  autoscaling: {enabled: true, maxRelays: 4, watchersPerRelay: 200, headroom: 50, scaleDownDelaySeconds: 3}\n",
        ),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    pod_appears(&pods, "session-surge").await;
    run_pod(&pods, "session-surge", "127.0.0.1", "127.0.0.1").await;
    let selector =
        "roundtable.dev/kind=session,roundtable.dev/room=surge,roundtable.dev/role=relay";
    let relay_pods = || async {
        let mut names: Vec<String> = pods
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.name)
            .collect();
        names.sort();
        names
    };

    // Nobody yet: the headroom alone asks for one relay.
    eventually("one relay for the headroom", || async {
        let s = session(&ns, "surge").await;
        (s.spec.relays == Some(1) && relay_pods().await.len() == 1).then_some(())
    })
    .await;
    // A surge: ceil((500 + 50) / 200) = 3, at once.
    watching.store(500, Ordering::Relaxed);
    eventually("three relays for 500 watching", || async {
        let s = session(&ns, "surge").await;
        (s.spec.relays == Some(3) && relay_pods().await.len() == 3).then_some(())
    })
    .await;
    assert!(
        event_reasons(&ns, "surge")
            .await
            .contains(&"ScaledOut".to_string())
    );
    assert_eq!(
        session(&ns, "surge").await.status.unwrap().watching,
        Some(500)
    );

    // They leave: the scale-in waits for the delay, remembered in the status, then the
    // highest relays go.
    watching.store(100, Ordering::Relaxed);
    let pending = eventually("a pending scale-in", || async {
        session(&ns, "surge").await.status?.lower_since
    })
    .await;
    assert_eq!(session(&ns, "surge").await.spec.relays, Some(3), "not yet");
    eventually("one relay after the delay", || async {
        let s = session(&ns, "surge").await;
        (s.spec.relays == Some(1)
            && s.status.as_ref()?.lower_since.is_none()
            && relay_pods().await == ["session-surge-relay-0"])
        .then_some(())
    })
    .await;
    let waited = jiff::Timestamp::now().duration_since(pending.0);
    assert!(waited.as_secs() >= 3, "scaled in after {waited:?}");
    assert!(
        event_reasons(&ns, "surge")
            .await
            .contains(&"ScaledIn".to_string())
    );
    operator.stop().await;
}

#[tokio::test]
async fn in_node_port_mode_each_relay_gets_its_own_service_and_announces_it() {
    use k8s_openapi::api::core::v1::Service;
    let (cluster, ns, operator) = with_event(
        "op-relay-np",
        "  sfu:\n    network:\n      mode: NodePort\n",
    )
    .await;
    apply_yaml(
        &ns,
        cluster,
        &session_yaml("np", "  lifecycle: Started\n  relays: 1\n"),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let services: Api<Service> = Api::namespaced(ns.client.clone(), &ns.name);
    pod_appears(&pods, "session-np").await;
    run_pod(&pods, "session-np", "127.0.0.1", "127.0.0.1").await;

    let relay = pod_appears(&pods, "session-np-relay-0").await;
    let service = services.get("session-np-relay-0").await.unwrap();
    let spec = service.spec.clone().unwrap();
    assert_eq!(spec.type_.as_deref(), Some("NodePort"));
    assert_eq!(
        spec.selector.unwrap()["roundtable.dev/relay"],
        "0",
        "the Service selects this relay alone"
    );
    let node_port = |name: &str| {
        spec.ports
            .as_ref()
            .unwrap()
            .iter()
            .find(|p| p.name.as_deref() == Some(name))
            .unwrap()
            .node_port
            .unwrap()
    };
    assert_eq!(
        env_value(&relay, "SFU_ADVERTISE_ADDR"),
        Some(format!("$(HOST_IP):{}", node_port("media")))
    );
    run_pod(&pods, "session-np-relay-0", "127.0.0.1", "10.0.0.8").await;
    let endpoint = eventually("the relay's endpoint in the status", || async {
        let status = session(&ns, "np").await.status?;
        let relay = status.relay_pods.first()?;
        relay.ready.then(|| relay.endpoint.clone())?
    })
    .await;
    assert_eq!(endpoint, format!("10.0.0.8:{}", node_port("signal")));

    let out = cluster
        .kubectl(&["scale", "session", "np", "-n", &ns.name, "--replicas=0"])
        .await
        .unwrap();
    assert!(out.success(), "{}", out.stderr);
    eventually("the relay's Service removed", || async {
        services
            .get_opt("session-np-relay-0")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        services.get_opt("session-np").await.unwrap().is_some(),
        "the origin's stays"
    );
    operator.stop().await;
}

/// Waits until `name`'s Ready condition has `reason`, and returns the session.
async fn ready_reason(ns: &TestNamespace, name: &str, reason: &str) -> Session {
    eventually(&format!("{name}: Ready reason {reason}"), || async {
        let s = session(ns, name).await;
        (condition(&s, "Ready")?.1 == reason).then_some(s)
    })
    .await
}

fn phase(s: &Session) -> Option<roundtable_crds::LivePhase> {
    s.status.as_ref()?.phase
}

async fn warning_event(ns: &TestNamespace, name: &str, reason: &str) -> String {
    let events: Api<Event> = Api::namespaced(ns.client.clone(), &ns.name);
    eventually(&format!("a Warning Event {reason} on {name}"), || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .into_iter()
            .find(|e| {
                e.involved_object.name.as_deref() == Some(name)
                    && e.reason.as_deref() == Some(reason)
                    && e.type_.as_deref() == Some("Warning")
            })
            .map(|e| e.message.unwrap_or_default())
    })
    .await
}

#[tokio::test]
async fn every_problem_a_user_causes_shows_in_status_events_and_kubectl_and_fixing_it_recovers() {
    let cluster = cluster().await;
    // No join-token Secret yet: the first problem an installation without the chart meets.
    let ns = cluster.namespace("op-problems").await.unwrap();
    let operator = Replica::start(ns.client.clone(), &ns.name, "replica-a");
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    apply_yaml(&ns, cluster, &event_yaml("")).await;
    apply_yaml(
        &ns,
        cluster,
        &session_yaml("panel", "  lifecycle: Started\n"),
    )
    .await;

    // The join-token Secret is missing: Failed, with the command that fixes it, and no pod
    // that would sit in CreateContainerConfigError.
    let s = ready_reason(&ns, "panel", "JoinTokenSecretMissing").await;
    assert_eq!(phase(&s), Some(roundtable_crds::LivePhase::Failed));
    let message = &s.status.as_ref().unwrap().conditions[0].message;
    assert!(
        message.contains("kubectl create secret generic roundtable-join-token"),
        "{message}"
    );
    warning_event(&ns, "panel", "JoinTokenSecretMissing").await;
    let out = cluster
        .kubectl(&["get", "sessions", "-n", &ns.name])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(out.contains("Failed"), "kubectl get shows the phase: {out}");
    assert!(pods.get_opt("session-panel").await.unwrap().is_none());
    // Fixed: it recovers on its own.
    roundtable_e2e::operator::create_join_token_secret(ns.client.clone(), &ns.name, "e2e-key")
        .await
        .unwrap();
    pod_appears(&pods, "session-panel").await;

    // The scale subresource of a session that never set relays reads 0 (an HPA can use it),
    // and its budget counts its pod itself instead of asking the Session for a scale.
    let scale = cluster
        .kubectl(&[
            "get",
            "--subresource=scale",
            "session",
            "panel",
            "-n",
            &ns.name,
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await
        .unwrap();
    assert!(scale.success(), "{}", scale.stderr);
    // Scale omits a zero `replicas`.
    assert!(matches!(scale.stdout.trim(), "" | "0"), "{}", scale.stdout);

    // Live: one Live Event, however often it reconciles.
    run_pod(&pods, "session-panel", "127.0.0.1", "127.0.0.1").await;
    ready_reason(&ns, "panel", "Live").await;

    tokio::time::sleep(Duration::from_secs(3)).await;
    let lives = event_reasons(&ns, "panel")
        .await
        .iter()
        .filter(|r| *r == "Live")
        .count();
    assert_eq!(lives, 1, "the Live Event is recorded once");

    // The SFU pod vanishes: Degraded stays True until the replacement is ready, and status
    // counts the restart (kubectl get -o wide shows it).
    pods.delete(
        "session-panel",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let s = eventually("panel is degraded while its pod is replaced", || async {
        let s = session(&ns, "panel").await;
        let restarted = s.status.as_ref()?.restarts.unwrap_or(0) >= 1;
        (restarted && condition(&s, "Degraded")?.0 == "True").then_some(s)
    })
    .await;
    assert_eq!(condition(&s, "Degraded").unwrap().1, "PodReplaced");
    let wide = cluster
        .kubectl(&["get", "sessions", "panel", "-n", &ns.name, "-o", "wide"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(wide.lines().next().unwrap().contains("RESTARTS"), "{wide}");
    // Still degraded a few reconciles later, while the replacement is not ready.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        condition(&session(&ns, "panel").await, "Degraded")
            .unwrap()
            .0,
        "True"
    );
    pod_appears(&pods, "session-panel").await;
    run_pod(&pods, "session-panel", "127.0.0.1", "127.0.0.1").await;
    let s = ready_reason(&ns, "panel", "Live").await;
    let degraded = condition(&s, "Degraded").unwrap();
    assert_eq!(
        (degraded.0.as_str(), degraded.1.as_str()),
        ("False", "Recovered")
    );
    let status = s.status.unwrap();
    assert!(status.restarts.unwrap_or(0) >= 1, "{:?}", status.restarts);
    assert!(status.last_restart.is_some());

    // A name of 70 characters: the label values are shortened like the pod name.
    let long = format!("a{}", "-long-name".repeat(7))
        .chars()
        .take(70)
        .collect::<String>();
    apply_yaml(&ns, cluster, &session_yaml(&long, "  lifecycle: Started\n")).await;
    let long_pod = eventually("the long-named session's pod", || async {
        pods.list(&ListParams::default().labels("roundtable.dev/role=origin"))
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|p| p.metadata.name.as_deref() != Some("session-panel"))
    })
    .await;
    for (key, value) in long_pod.metadata.labels.unwrap() {
        assert!(value.len() <= 63, "{key}={value}");
    }
    eventually("the long-named session is Starting", || async {
        let s = session(&ns, &long).await;
        (phase(&s) == Some(roundtable_crds::LivePhase::Starting)).then_some(())
    })
    .await;

    // A PriorityClass that does not exist: the API server refuses the pod, and status says
    // so in its words; creating the class lets the next retry succeed.
    let class = format!("{}-media", ns.name);
    let placement = format!("  sfu: {{placement: {{priorityClassName: {class}}}}}\n");
    apply_yaml(
        &ns,
        cluster,
        &event_yaml(&placement).replace("name: gala", "name: prio"),
    )
    .await;
    apply_yaml(
        &ns,
        cluster,
        &session_yaml("ranked", "  lifecycle: Started\n").replace("event: gala", "event: prio"),
    )
    .await;
    let s = ready_reason(&ns, "ranked", "PodForbidden").await;
    assert_eq!(phase(&s), Some(roundtable_crds::LivePhase::Failed));
    let message = condition_message(&s, "Ready");
    assert!(message.contains(&class), "{message}");
    let note = warning_event(&ns, "ranked", "PodForbidden").await;
    assert!(note.contains(&class), "{note}");
    let described = cluster
        .kubectl(&["describe", "session", "ranked", "-n", &ns.name])
        .await
        .unwrap();
    assert!(
        described.stdout.contains("PodForbidden"),
        "{}",
        described.stdout
    );
    let classes = cluster
        .kubectl_with_stdin(
            &["apply", "-f", "-"],
            Some(&format!("apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: {class}\nvalue: 1000\n")),
        )
        .await
        .unwrap();
    assert!(classes.success(), "{}", classes.stderr);
    pod_appears(&pods, "session-ranked").await;
    ready_reason(&ns, "ranked", "PodNotScheduled").await;

    // The kubelet cannot start sfu-node (here: a Secret key it needs is missing, as a kubelet
    // reports it): Failed with the kubelet's words; once it starts, Live.
    apply_yaml(
        &ns,
        cluster,
        &session_yaml("stuck", "  lifecycle: Started\n"),
    )
    .await;
    pod_appears(&pods, "session-stuck").await;
    bind_pod(&pods, "session-stuck").await;
    let waiting = serde_json::json!({"status": {
        "phase": "Pending",
        "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [{
            "name": "sfu-node", "ready": false, "restartCount": 0, "image": "sfu-node", "imageID": "",
            "state": {"waiting": {
                "reason": "CreateContainerConfigError",
                "message": "couldn't find key key in Secret op-problems/roundtable-join-token",
            }},
        }],
    }});
    pods.patch_status(
        "session-stuck",
        &PatchParams::default(),
        &Patch::Merge(waiting),
    )
    .await
    .unwrap();
    let s = ready_reason(&ns, "stuck", "PodCannotStart").await;
    assert_eq!(phase(&s), Some(roundtable_crds::LivePhase::Failed));
    assert!(
        condition_message(&s, "Ready").contains("CreateContainerConfigError: couldn't find key")
    );
    warning_event(&ns, "stuck", "PodCannotStart").await;
    let running = serde_json::json!({"status": {
        "phase": "Running",
        "podIP": "127.0.0.1",
        "hostIP": "127.0.0.1",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{
            "name": "sfu-node", "ready": true, "restartCount": 0, "image": "sfu-node", "imageID": "",
            "state": {"running": {}},
        }],
    }});
    pods.patch_status(
        "session-stuck",
        &PatchParams::default(),
        &Patch::Merge(running),
    )
    .await
    .unwrap();
    ready_reason(&ns, "stuck", "Live").await;

    // A schedule entirely in the past: Ended, and said why, once.
    apply_yaml(
        &ns,
        cluster,
        &session_yaml(
            "past",
            "  start: \"2020-06-01T10:00:00Z\"\n  end: \"2020-06-01T11:00:00Z\"\n",
        ),
    )
    .await;
    let s = ready_reason(&ns, "past", "EndedBeforeStart").await;
    assert_eq!(phase(&s), Some(roundtable_crds::LivePhase::Ended));
    warning_event(&ns, "past", "ScheduleInPast").await;

    // Scheduled outside its event's window: accepted, and reported.
    apply_yaml(
        &ns,
        cluster,
        &session_yaml("late", "  start: \"2099-06-01T10:00:00Z\"\n"),
    )
    .await;
    let s = eventually("late reports it is outside the event", || async {
        let s = session(&ns, "late").await;
        (condition(&s, "ReferencesResolved")?.1 == "OutsideEventWindow").then_some(s)
    })
    .await;
    assert!(condition_message(&s, "ReferencesResolved").contains("after LiveEvent gala ends"));

    // Recording on, but the event's claim does not exist: the session runs, says it is not
    // recorded, and no recorder Job waits for ever.
    apply_yaml(
        &ns,
        cluster,
        &event_yaml("  recordingStorage: {persistentVolumeClaim: absent}\n")
            .replace("name: gala", "name: taped"),
    )
    .await;
    apply_yaml(
        &ns,
        cluster,
        &session_yaml("taped", "  lifecycle: Started\n  recording: true\n")
            .replace("event: gala", "event: taped"),
    )
    .await;
    let s = eventually("taped reports the missing claim", || async {
        let s = session(&ns, "taped").await;
        (condition(&s, "ReferencesResolved")?.1 == "RecordingClaimNotFound").then_some(s)
    })
    .await;
    assert_ne!(
        phase(&s),
        Some(roundtable_crds::LivePhase::Failed),
        "the session itself runs"
    );
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(ns.client.clone(), &ns.name);
    assert!(
        jobs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "no recorder Job"
    );

    // A Room whose passcode Secret does not exist: references not resolved.
    apply_yaml(&ns, cluster, "apiVersion: roundtable.dev/v1alpha1\nkind: Room\nmetadata:\n  name: standup\nspec:\n  host: ada\n  slug: standup\n  hosts: [ada@example.com]\n  passcode: {name: standup-passcode, key: code}\n").await;
    let rooms: Api<Room> = Api::namespaced(ns.client.clone(), &ns.name);
    let room = eventually("the room reports its missing passcode Secret", || async {
        let r = rooms.get("standup").await.unwrap();
        let c = r
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "ReferencesResolved")?
            .clone();
        (c.reason == "PasscodeSecretMissing").then_some(r)
    })
    .await;
    let ready = room
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        ready.reason, "Idle",
        "a room nobody asked to join is idle, not ended: {}",
        ready.message
    );

    // The LiveEvent is deleted under a live session: its pod is drained, and the session is
    // Failed with the reason (re-creating the event brings it back).
    let events: Api<LiveEvent> = Api::namespaced(ns.client.clone(), &ns.name);
    events
        .delete("prio", &DeleteParams::default())
        .await
        .unwrap();
    let s = ready_reason(&ns, "ranked", "EventNotFound").await;
    assert!(matches!(
        phase(&s),
        Some(roundtable_crds::LivePhase::Draining | roundtable_crds::LivePhase::Failed)
    ));
    warning_event(&ns, "ranked", "EventNotFound").await;
    eventually("the orphaned pod goes", || async {
        pods.get_opt("session-ranked")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let s = eventually("ranked is Failed once drained", || async {
        let s = session(&ns, "ranked").await;
        (phase(&s) == Some(roundtable_crds::LivePhase::Failed)).then_some(s)
    })
    .await;
    assert_eq!(condition(&s, "Ready").unwrap().1, "EventNotFound");

    let _ = cluster.kubectl(&["delete", "priorityclass", &class]).await;
    operator.stop().await;
}

fn condition_message(session: &Session, type_: &str) -> String {
    session
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}
