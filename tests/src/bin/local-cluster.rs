//! A local Roundtable on a real Kubernetes control plane, on this machine, until Ctrl-C.
//!
//! Starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler on loopback (the
//! same ones the tests use), installs the CRDs, registers two tainted media nodes and a general
//! node for rooms (pods run as local processes by the test node agent), runs the operator
//! (watching every namespace), and applies `examples/`. Then
//! it prints a KUBECONFIG to explore with kubectl: start a session with
//! `kubectl patch session gala-future-of-work --type merge -p '{"spec":{"lifecycle":"Started"}}'`
//! and watch a real sfu-node come up.
//!
//! This is the interim `scripts/run`; the all-in-one mode (API, web client and media in one
//! process) replaces it.

use std::path::Path;

use anyhow::Context as _;
use roundtable_e2e::Cluster;
use roundtable_e2e::node_agent::{self, ImageMap, NodeAgent, NodeSpec};
use roundtable_e2e::operator::{RunningOperator, create_join_token_secret};
use roundtable_operator::OperatorConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // kube-client logs every failed request; the callers report what matters.
                .unwrap_or_else(|_| "info,kube=warn,kube_client=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cluster = Cluster::shared().await?;
    cluster.install_crds().await?;
    cluster.start_controller_manager().await?;
    cluster.start_scheduler().await?;
    let ns = cluster.namespace("roundtable").await?;

    let sfu = node_agent::workspace_binary("sfu-node", "sfu-node").await?;
    let media_node = |name: &str| {
        NodeSpec::new(name)
            .label("roundtable.dev/media", "true")
            .taint("roundtable.dev/media", "", "NoSchedule")
            .cpu("32")
            .memory("64Gi")
    };
    // Media nodes are tainted for the event's sessions and stage (their placement tolerates
    // it); rooms carry no placement, so a general node runs them.
    let general = NodeSpec::new("general-1").cpu("16").memory("32Gi");
    // Kept running until the process exits (see the end of main).
    let _agent = NodeAgent::start(
        cluster,
        vec![media_node("media-1"), media_node("media-2"), general],
        ImageMap::new().map("sfu-node", sfu),
    )
    .await?;

    let key = format!(
        "{:x}{:x}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    );
    create_join_token_secret(ns.client.clone(), &ns.name, &key).await?;

    // Every namespace, as the chart's default install: events applied elsewhere run too
    // (each namespace needs the `roundtable-join-token` Secret for its SFU pods).
    let operator = RunningOperator::start_watching(
        cluster.admin_client()?,
        &ns.name,
        None,
        "local",
        OperatorConfig {
            drain_grace_seconds: 10,
            ..OperatorConfig::default()
        },
    );

    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let applied = cluster
        .kubectl(&[
            "apply",
            "-n",
            &ns.name,
            "-f",
            examples.to_str().context("path")?,
        ])
        .await?
        .ok()?;
    let kubeconfig = cluster.admin_kubeconfig().display().to_string();
    println!(
        "\nRoundtable is running on a local Kubernetes control plane ({url}).\n\n{applied}\n\
         Explore it:\n  export KUBECONFIG={kubeconfig}\n  alias kubectl={kubectl}\n  kubectl config set-context --current --namespace={ns}\n  \
         kubectl get roundtable\n  kubectl patch session gala-future-of-work --type merge -p '{{\"spec\":{{\"lifecycle\":\"Started\"}}}}'\n  \
         kubectl get sessions -w\n  \
         kubectl annotate room ada-coffee --overwrite roundtable.dev/join-requested-at=$(date -u +%FT%TZ)\n  \
         kubectl get rooms -w\n\n\
         A room has a pod only while someone wants to join it (the control plane's join page sets\n\
         that annotation); it goes Idle again after its idle timeout.\nThe operator watches every namespace; rooms run on the general node, sessions and\n\
         the stage on the tainted media nodes. Ctrl-C stops everything.",
        url = cluster.url(),
        kubectl = cluster.binaries().kubectl.display(),
        ns = ns.name,
    );

    tokio::signal::ctrl_c().await?;
    // Ctrl-C in a terminal reaches the whole process group; the control plane's servers and
    // the pods' processes run under watchdogs that end them when this process exits
    // (tests/src/process.rs), so stopping is: the operator's controllers, then exit. Tidying
    // up the API objects first (the node agent's stop) would only delay the end of a cluster
    // whose data directory goes with it.
    eprintln!("stopping");
    operator.shutdown().await;
    std::process::exit(0)
}
