//! The test node agent against the real API server, scheduler and controller-manager: nodes
//! register and stay Ready, the scheduler places pods on them, and their containers run as
//! local processes whose readiness, exit and deletion show in the pod status.
//!
//! Every test taints and labels its own nodes and gives its pods the matching toleration
//! and selector, so tests running at once never share nodes.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, ContainerStateTerminated, ContainerStatus, Node, Pod, Secret, ServiceAccount,
};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use roundtable_e2e::node_agent::{self, Entrypoint, ImageMap, NodeAgent, NodeSpec};
use roundtable_e2e::{Cluster, TestNamespace};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(60);
/// Label and taint key that keeps each test's nodes to itself.
const NODES_KEY: &str = "e2e.roundtable.dev/nodes";

/// `example/http-echo` serves its working directory over HTTP (`python3 -m http.server`, its
/// arguments being `--bind <ip> <port>`); `example/shell` runs its first argument with `sh -c`.
fn images() -> ImageMap {
    ImageMap::new()
        .map_entrypoint(
            "example/http-echo",
            Entrypoint::new("python3").args(["-u", "-m", "http.server"]),
        )
        .map_entrypoint("example/shell", Entrypoint::new("sh").args(["-c"]))
}

struct Setup {
    cluster: &'static Cluster,
    ns: TestNamespace,
    pods: Api<Pod>,
}

async fn setup(prefix: &str) -> anyhow::Result<Setup> {
    let cluster = Cluster::shared().await?;
    cluster.start_scheduler().await?;
    cluster.start_controller_manager().await?;
    let ns = cluster.namespace(prefix).await?;
    ensure_default_service_account(&ns.client).await?;
    let pods = Api::default_namespaced(ns.client.clone());
    Ok(Setup { cluster, ns, pods })
}

/// A node of this test: labelled and tainted with the namespace's name.
fn node(ns: &TestNamespace, suffix: &str) -> NodeSpec {
    NodeSpec::new(format!("{}-{suffix}", ns.name))
        .label(NODES_KEY, &ns.name)
        .taint(NODES_KEY, &ns.name, "NoSchedule")
}

/// A pod that only fits this test's nodes; `extra` is merged into its spec.
fn pod(ns: &TestNamespace, name: &str, containers: Value, extra: Value) -> anyhow::Result<Pod> {
    let mut spec = json!({
        "automountServiceAccountToken": false,
        "terminationGracePeriodSeconds": 10,
        "nodeSelector": { NODES_KEY: ns.name },
        "tolerations": [{ "key": NODES_KEY, "operator": "Equal", "value": ns.name }],
        "containers": containers,
    });
    for (key, value) in extra.as_object().into_iter().flatten() {
        spec[key] = value.clone();
    }
    Ok(serde_json::from_value(
        json!({ "metadata": { "name": name }, "spec": spec }),
    )?)
}

fn shell(name: &str, script: &str) -> Value {
    json!({ "name": name, "image": "example/shell:1", "args": [script] })
}

fn http_echo(name: &str, port: u16, probe_path: &str) -> Value {
    json!({
        "name": name,
        "image": "registry.example:5000/example/http-echo:2.1",
        "env": [{ "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } }],
        "args": ["--bind", "$(POD_IP)", port.to_string()],
        "ports": [{ "name": "http", "containerPort": port, "hostPort": port }],
        "readinessProbe": { "httpGet": { "path": probe_path, "port": "http" }, "periodSeconds": 10 },
    })
}

fn container<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn condition<'a>(pod: &'a Pod, kind: &str) -> Option<&'a str> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.as_str())
}

fn terminated(status: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    status.state.as_ref()?.terminated.as_ref()
}

#[tokio::test]
async fn nodes_register_ready_and_keep_renewing_their_leases() -> anyhow::Result<()> {
    let Setup { cluster, ns, .. } = setup("agent-nodes").await?;
    let spec = node(&ns, "a").cpu("3").memory("2Gi").pods(7);
    let agent = NodeAgent::start(cluster, vec![spec, node(&ns, "b")], images()).await?;
    let nodes = Api::<Node>::all(ns.client.clone());
    let leases = Api::<Lease>::namespaced(ns.client.clone(), "kube-node-lease");
    let (name_a, ip_a) = agent.nodes()[0].clone();
    let (_, ip_b) = agent.nodes()[1].clone();
    assert_ne!(ip_a, ip_b);
    assert_eq!(ip_a.octets()[..2], [127, 0]);
    assert_eq!(ip_a.octets()[3], 1);

    let a = nodes.get(&name_a).await?;
    let status = a.status.clone().context("node status")?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready");
    assert_eq!(ready.map(|c| c.status.as_str()), Some("True"));
    let allocatable = status.allocatable.context("allocatable")?;
    assert_eq!(allocatable["cpu"].0, "3");
    assert_eq!(allocatable["memory"].0, "2Gi");
    assert_eq!(allocatable["pods"].0, "7");
    let address = status
        .addresses
        .iter()
        .flatten()
        .find(|a| a.type_ == "InternalIP");
    assert_eq!(address.map(|a| a.address.clone()), Some(ip_a.to_string()));
    let labels = a.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["kubernetes.io/hostname"], name_a);
    assert_eq!(labels[NODES_KEY], ns.name);
    let taints = a.spec.and_then(|s| s.taints).unwrap_or_default();
    assert_eq!(taints.len(), 1, "{taints:?}");
    assert_eq!(taints[0].key, NODES_KEY);

    let renew_time = |lease: Lease| lease.spec.and_then(|s| s.renew_time).map(|t| t.0);
    let first = renew_time(leases.get(&name_a).await?).context("lease renewTime")?;
    let renewed = poll(Duration::from_secs(15), || async {
        let later = renew_time(leases.get(&name_a).await.ok()?)?;
        (later > first).then_some(later)
    })
    .await;
    assert!(renewed.is_some(), "the lease of {name_a} was not renewed");
    // The node lifecycle controller has seen the node by now and found it healthy.
    let a = nodes.get(&name_a).await?;
    let taints = a.spec.and_then(|s| s.taints).unwrap_or_default();
    assert!(
        taints
            .iter()
            .all(|t| !t.key.starts_with("node.kubernetes.io/")),
        "{taints:?}"
    );

    agent.stop().await?;
    assert!(
        nodes.get_opt(&name_a).await?.is_none(),
        "node removed on stop"
    );
    assert!(
        leases.get_opt(&name_a).await?.is_none(),
        "lease removed on stop"
    );
    Ok(())
}

#[tokio::test]
async fn scheduler_places_a_pod_that_then_runs_with_its_environment_and_becomes_ready()
-> anyhow::Result<()> {
    let Setup { cluster, ns, pods } = setup("agent-run").await?;
    let small = node(&ns, "small").cpu("1").label("media", "yes");
    let big =
        node(&ns, "big")
            .cpu("4")
            .label("media", "yes")
            .taint("dedicated", "media", "NoSchedule");
    let other = node(&ns, "other").cpu("8");
    let agent = NodeAgent::start(cluster, vec![small, big, other], images()).await?;
    let big_name = agent.nodes()[1].0.clone();
    let big_ip = agent.nodes()[1].1;

    Api::<ConfigMap>::default_namespaced(ns.client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "settings" }, "data": { "region": "eu-west" },
            }))?,
        )
        .await?;
    Api::<Secret>::default_namespaced(ns.client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "creds" }, "stringData": { "token": "s3cret" },
            }))?,
        )
        .await?;

    // Only `big` fits: `small` lacks the CPU, `other` lacks the label.
    let mut web = http_echo("web", 8080, "/");
    web["resources"] = json!({ "requests": { "cpu": "2", "memory": "64Mi" } });
    let env = json!({
        "name": "env",
        "image": "example/shell",
        "env": [
            { "name": "IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
            { "name": "HOST_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.hostIP" } } },
            { "name": "NODE", "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } } },
            { "name": "POD", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
            { "name": "NS", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } },
            { "name": "APP", "valueFrom": { "fieldRef": { "fieldPath": "metadata.labels['app']" } } },
            { "name": "REGION", "valueFrom": { "configMapKeyRef": { "name": "settings", "key": "region" } } },
            { "name": "TOKEN", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "token" } } },
            { "name": "GREETING", "value": "hello from $(NODE)" },
        ],
        "args": ["echo \"ip=$IP host=$HOST_IP node=$NODE pod=$NS/$POD app=$APP region=$REGION \
                  token=$TOKEN greeting=$GREETING arg=$0\"; exec sleep 600", "$(REGION)"],
    });
    let mut placed = pod(
        &ns,
        "placed",
        json!([web, env]),
        json!({
            "nodeSelector": { NODES_KEY: ns.name, "media": "yes" },
            "tolerations": [
                { "key": NODES_KEY, "operator": "Equal", "value": ns.name },
                { "key": "dedicated", "operator": "Equal", "value": "media", "effect": "NoSchedule" },
            ],
        }),
    )?;
    placed.metadata.labels = Some([("app".to_owned(), "sfu".to_owned())].into());
    pods.create(&PostParams::default(), &placed).await?;

    let ready =
        node_agent::wait_for_pod(&pods, "placed", TIMEOUT, "ready", node_agent::is_ready).await?;
    let spec = ready.spec.clone().context("spec")?;
    assert_eq!(spec.node_name.as_deref(), Some(big_name.as_str()));
    let status = ready.status.clone().context("status")?;
    let ip = status.pod_ip.clone().context("podIP")?;
    assert_eq!(status.host_ip.as_deref(), Some(ip.as_str()));
    let [a, b, c, _]: [u8; 4] = ip.parse::<std::net::Ipv4Addr>()?.octets();
    assert_eq!(
        [a, b, c],
        [127, 0, big_ip.octets()[2]],
        "pod IP {ip} is on {big_ip}'s range"
    );
    assert_eq!(phase(&ready), "Running");
    assert!(status.start_time.is_some());
    for kind in ["Initialized", "ContainersReady", "Ready", "PodScheduled"] {
        assert_eq!(condition(&ready, kind), Some("True"), "{kind}");
    }
    for name in ["web", "env"] {
        let c = container(&ready, name).context(name)?;
        assert!(c.ready && c.started == Some(true), "{c:?}");
        assert_eq!(c.restart_count, 0);
        assert!(
            c.state.as_ref().and_then(|s| s.running.as_ref()).is_some(),
            "{c:?}"
        );
    }

    // The server really listens on the pod's address, and serves this container's directory.
    let body = http_get(&format!("{ip}:8080"), "/").await?;
    assert!(body.starts_with("HTTP/1.0 200"), "{body}");
    let log = poll(TIMEOUT, || async {
        let log = agent.log(&ns.name, "placed", "env");
        log.contains("ip=").then_some(log)
    })
    .await
    .context("the env container printed nothing")?;
    let expected = format!(
        "ip={ip} host={ip} node={big_name} pod={}/placed app=sfu region=eu-west token=s3cret \
         greeting=hello from {big_name} arg=eu-west",
        ns.name
    );
    assert!(log.contains(&expected), "expected {expected:?} in {log:?}");
    let web_log = agent.log(&ns.name, "placed", "web");
    assert!(
        web_log.contains("kube-probe") || web_log.contains("GET /"),
        "{web_log}"
    );

    // A readiness probe that gets 404 keeps a running pod unready.
    let unready = pod(
        &ns,
        "unready",
        json!([http_echo("web", 8081, "/missing")]),
        json!({}),
    )?;
    pods.create(&PostParams::default(), &unready).await?;
    let running = node_agent::wait_for_pod(&pods, "unready", TIMEOUT, "running", |p| {
        container(p, "web").is_some_and(|c| c.started == Some(true))
    })
    .await?;
    let ip = running.status.and_then(|s| s.pod_ip).context("podIP")?;
    poll(TIMEOUT, || async {
        let body = http_get(&format!("{ip}:8081"), "/").await.ok()?;
        body.starts_with("HTTP/1.0 200").then_some(())
    })
    .await
    .context("the unready pod's server never answered")?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = pods.get("unready").await?;
    assert_eq!(phase(&after), "Running");
    assert_eq!(condition(&after, "Ready"), Some("False"));
    assert_eq!(condition(&after, "ContainersReady"), Some("False"));
    assert!(!container(&after, "web").context("web")?.ready);
    let web_log = agent.log(&ns.name, "unready", "web");
    assert!(web_log.contains("GET /missing"), "{web_log}");

    agent.stop().await?;
    assert!(
        pods.get_opt("placed").await?.is_none(),
        "pods deleted on stop"
    );
    Ok(())
}

#[tokio::test]
async fn pods_with_the_same_host_port_never_share_a_node() -> anyhow::Result<()> {
    let Setup { cluster, ns, pods } = setup("agent-hostport").await?;
    let agent = NodeAgent::start(cluster, vec![node(&ns, "a"), node(&ns, "b")], images()).await?;
    for name in ["one", "two", "three"] {
        let p = pod(&ns, name, json!([http_echo("web", 7000, "/")]), json!({}))?;
        pods.create(&PostParams::default(), &p).await?;
    }
    let mut ready_nodes = Vec::new();
    for name in ["one", "two", "three"] {
        let p = node_agent::wait_for_pod(&pods, name, TIMEOUT, "ready or unschedulable", |p| {
            node_agent::is_ready(p) || condition(p, "PodScheduled") == Some("False")
        })
        .await?;
        if node_agent::is_ready(&p) {
            ready_nodes.push(p.spec.and_then(|s| s.node_name).context("nodeName")?);
        } else {
            let scheduled = p
                .status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .find(|c| c.type_ == "PodScheduled")
                .context("PodScheduled")?;
            assert_eq!(scheduled.reason.as_deref(), Some("Unschedulable"));
            let message = scheduled.message.unwrap_or_default();
            assert!(message.contains("free ports"), "{message}");
        }
    }
    ready_nodes.sort();
    let names: Vec<String> = agent.nodes().iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(
        ready_nodes, names,
        "one pod per node, each serving port 7000"
    );
    agent.stop().await?;
    Ok(())
}

#[tokio::test]
async fn an_unmapped_image_waits_with_a_clear_reason() -> anyhow::Result<()> {
    let Setup { cluster, ns, pods } = setup("agent-image").await?;
    let agent = NodeAgent::start(cluster, vec![node(&ns, "a")], images()).await?;
    let p = pod(
        &ns,
        "busybox",
        json!([{ "name": "main", "image": "docker.io/library/busybox:1.36" }]),
        json!({}),
    )?;
    pods.create(&PostParams::default(), &p).await?;
    let waiting = node_agent::wait_for_pod(&pods, "busybox", TIMEOUT, "waiting", |p| {
        container(p, "main")
            .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
            .is_some_and(|r| r == "ErrImagePull")
    })
    .await?;
    assert_eq!(phase(&waiting), "Pending");
    let message = container(&waiting, "main")
        .and_then(|c| c.state.clone()?.waiting?.message)
        .unwrap_or_default();
    assert!(
        message.contains("docker.io/library/busybox:1.36") && message.contains("not mapped"),
        "{message}"
    );
    assert!(message.contains("example/http-echo"), "{message}");
    assert!(
        status_ip(&waiting).is_some(),
        "the pod has an address before its containers run"
    );
    agent.stop().await?;
    Ok(())
}

#[tokio::test]
async fn deleting_a_pod_sends_sigterm_and_the_pod_disappears() -> anyhow::Result<()> {
    let Setup { cluster, ns, pods } = setup("agent-delete").await?;
    let agent = NodeAgent::start(cluster, vec![node(&ns, "a")], images()).await?;
    let polite = "trap 'echo got SIGTERM; exit 0' TERM; echo started; \
                  while :; do sleep 0.1; done";
    let stubborn = "trap 'echo ignoring SIGTERM' TERM; echo started; while :; do sleep 0.1; done";
    for (name, script, grace) in [
        ("polite", polite, 30),
        ("stubborn", stubborn, 1),
        ("forced", polite, 30),
    ] {
        let p = pod(
            &ns,
            name,
            json!([shell("main", script)]),
            json!({ "terminationGracePeriodSeconds": grace }),
        )?;
        pods.create(&PostParams::default(), &p).await?;
    }
    for name in ["polite", "stubborn", "forced"] {
        node_agent::wait_for_pod(&pods, name, TIMEOUT, "ready", node_agent::is_ready).await?;
        poll(TIMEOUT, || async {
            agent
                .log(&ns.name, name, "main")
                .contains("started")
                .then_some(())
        })
        .await
        .context("the shell did not start")?;
    }

    // A graceful deletion: the process exits on SIGTERM long before its 30 s grace period.
    let begun = Instant::now();
    pods.delete("polite", &DeleteParams::default()).await?;
    wait_gone(&pods, "polite").await?;
    assert!(
        begun.elapsed() < Duration::from_secs(10),
        "{:?}",
        begun.elapsed()
    );
    assert!(
        agent
            .log(&ns.name, "polite", "main")
            .contains("got SIGTERM")
    );

    // A process that ignores SIGTERM is killed once the grace period is over.
    let begun = Instant::now();
    pods.delete("stubborn", &DeleteParams::default()).await?;
    wait_gone(&pods, "stubborn").await?;
    assert!(
        begun.elapsed() >= Duration::from_secs(1),
        "{:?}",
        begun.elapsed()
    );
    assert!(
        agent
            .log(&ns.name, "stubborn", "main")
            .contains("ignoring SIGTERM")
    );

    // A pod deleted outright still gets its process stopped.
    pods.delete("forced", &DeleteParams::default().grace_period(0))
        .await?;
    wait_gone(&pods, "forced").await?;
    poll(Duration::from_secs(10), || async {
        agent
            .log(&ns.name, "forced", "main")
            .contains("got SIGTERM")
            .then_some(())
    })
    .await
    .context("the force-deleted pod's process got no SIGTERM")?;
    agent.stop().await?;
    Ok(())
}

#[tokio::test]
async fn exits_follow_the_restart_policy() -> anyhow::Result<()> {
    let Setup { cluster, ns, pods } = setup("agent-exit").await?;
    let agent = NodeAgent::start(cluster, vec![node(&ns, "a")], images()).await?;
    let cases = [
        ("fails", "echo bye; exit 3", "Never"),
        ("completes", "exit 0", "Never"),
        // Fails the first time only: the working directory survives a restart.
        (
            "retries",
            "[ -e tried ] && exit 0; touch tried; exit 4",
            "OnFailure",
        ),
        ("crashloops", "exit 5", "Always"),
    ];
    for (name, script, policy) in cases {
        let p = pod(
            &ns,
            name,
            json!([shell("main", script)]),
            json!({ "restartPolicy": policy }),
        )?;
        pods.create(&PostParams::default(), &p).await?;
    }
    let finished = |p: &Pod| matches!(phase(p), "Succeeded" | "Failed");

    let fails = node_agent::wait_for_pod(&pods, "fails", TIMEOUT, "finished", finished).await?;
    assert_eq!(phase(&fails), "Failed");
    let main = container(&fails, "main").context("main")?;
    let state = terminated(main).context("terminated")?;
    assert_eq!(state.exit_code, 3);
    assert_eq!(state.reason.as_deref(), Some("Error"));
    assert!(state.finished_at.is_some());
    assert!(!main.ready);
    assert_eq!(condition(&fails, "Ready"), Some("False"));
    assert!(agent.log(&ns.name, "fails", "main").contains("bye"));

    let completes =
        node_agent::wait_for_pod(&pods, "completes", TIMEOUT, "finished", finished).await?;
    assert_eq!(phase(&completes), "Succeeded");
    let state = container(&completes, "main")
        .and_then(terminated)
        .context("terminated")?;
    assert_eq!(
        (state.exit_code, state.reason.as_deref()),
        (0, Some("Completed"))
    );

    let retries = node_agent::wait_for_pod(&pods, "retries", TIMEOUT, "finished", finished).await?;
    assert_eq!(phase(&retries), "Succeeded");
    let main = container(&retries, "main").context("main")?;
    assert_eq!(main.restart_count, 1);
    let last = main
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .context("lastState")?;
    assert_eq!(last.exit_code, 4);

    let looping = node_agent::wait_for_pod(&pods, "crashloops", TIMEOUT, "restarted twice", |p| {
        container(p, "main").is_some_and(|c| c.restart_count >= 2)
    })
    .await?;
    assert_eq!(
        phase(&looping),
        "Running",
        "a crash-looping pod stays Running"
    );
    let main = container(&looping, "main").context("main")?;
    let last = main.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    assert_eq!(last.map(|t| t.exit_code), Some(5));
    agent.stop().await?;
    Ok(())
}

#[tokio::test]
async fn the_sfu_node_image_runs_the_workspace_binary_until_sigterm_drains_it() -> anyhow::Result<()>
{
    let Setup { cluster, ns, pods } = setup("agent-sfu").await?;
    let sfu_node = node_agent::workspace_binary("sfu-node", "sfu-node").await?;
    let images = ImageMap::new().map("sfu-node", sfu_node);
    let agent = NodeAgent::start(cluster, vec![node(&ns, "media")], images).await?;
    Api::<Secret>::default_namespaced(ns.client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "sfu-key" }, "stringData": { "key": "test-signing-key" },
            }))?,
        )
        .await?;
    let sfu = json!({
        "name": "sfu",
        "image": "ghcr.io/roundtable-dev/sfu-node:dev",
        "env": [
            { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
            { "name": "SFU_ROOM", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
            { "name": "SFU_TOKEN_KEY", "valueFrom": { "secretKeyRef": { "name": "sfu-key", "key": "key" } } },
            { "name": "SFU_HTTP_ADDR", "value": "$(POD_IP):8080" },
            { "name": "SFU_ADMIN_ADDR", "value": "$(POD_IP):9090" },
            { "name": "SFU_UDP_BIND", "value": "$(POD_IP)" },
            { "name": "SFU_UDP_PORT", "value": "40000" },
            { "name": "SFU_DRAIN_GRACE_SECONDS", "value": "1" },
        ],
        "ports": [
            { "name": "http", "containerPort": 8080 },
            { "name": "admin", "containerPort": 9090 },
            { "name": "media", "containerPort": 40000, "hostPort": 40000, "protocol": "UDP" },
        ],
        "readinessProbe": { "httpGet": { "path": "/readyz", "port": "admin" } },
    });
    pods.create(
        &PostParams::default(),
        &pod(&ns, "room-a", json!([sfu]), json!({}))?,
    )
    .await?;
    let ready =
        node_agent::wait_for_pod(&pods, "room-a", TIMEOUT, "ready", node_agent::is_ready).await?;
    let ip = status_ip(&ready).context("podIP")?;
    let health = http_get(&format!("{ip}:9090"), "/healthz").await?;
    assert!(
        health.starts_with("HTTP/1.0 200") || health.starts_with("HTTP/1.1 200"),
        "{health}"
    );
    let log = agent.log(&ns.name, "room-a", "sfu");
    assert!(log.contains(&format!("\"udp\":\"{ip}:40000\"")), "{log}");
    assert!(log.contains("\"room\":\"room-a\""), "{log}");

    pods.delete("room-a", &DeleteParams::default()).await?;
    wait_gone(&pods, "room-a").await?;
    let log = agent.log(&ns.name, "room-a", "sfu");
    assert!(log.contains("drained; bye"), "{log}");
    agent.stop().await?;
    Ok(())
}

fn status_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.pod_ip.clone()
}

async fn wait_gone(pods: &Api<Pod>, name: &str) -> anyhow::Result<()> {
    poll(Duration::from_secs(20), || async {
        matches!(pods.get_opt(name).await, Ok(None)).then_some(())
    })
    .await
    .with_context(|| format!("pod {name} was not deleted"))
}

/// `GET path` over HTTP/1.0; returns the whole response.
async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await
            .context("connect timed out")??;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut response))
        .await
        .context("read timed out")??;
    ensure!(!response.is_empty(), "empty response from {addr}");
    Ok(response)
}

/// The ServiceAccount admission plugin wants the `default` account, which the
/// controller-manager may not have created yet in a brand-new namespace.
async fn ensure_default_service_account(client: &Client) -> anyhow::Result<()> {
    let account: ServiceAccount =
        serde_json::from_value(json!({ "metadata": { "name": "default" } }))?;
    match Api::<ServiceAccount>::default_namespaced(client.clone())
        .create(&PostParams::default(), &account)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => bail!(e),
    }
}

/// Polls `f` every 200 ms until it returns `Some` or `timeout` passes.
async fn poll<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(t) = f().await {
            return Some(t);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
