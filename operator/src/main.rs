//! `roundtable`: the command-line entry point of Roundtable.
//!
//! - `roundtable crds` prints the CRDs (`roundtable crds | kubectl apply -f -`);
//! - `roundtable operator` runs the operator (leader-elected controllers, admin port).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use roundtable_operator::{Metrics, OperatorConfig, OperatorOptions, admin, shutdown_on};

#[derive(Parser, Debug)]
#[command(
    name = "roundtable",
    version,
    about = "Live virtual events on Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the roundtable.dev CustomResourceDefinitions as YAML.
    Crds,
    /// Run the operator: sessions, stages and rooms become SFU pods with live status.
    Operator(OperatorArgs),
}

#[derive(Args, Debug)]
struct OperatorArgs {
    /// Address of the admin server (/metrics, /healthz, /readyz).
    #[arg(long, env = "ROUNDTABLE_ADMIN_ADDR", default_value = "0.0.0.0:8081")]
    admin_addr: SocketAddr,
    /// Container image of sfu-node.
    #[arg(long, env = "ROUNDTABLE_SFU_IMAGE")]
    sfu_image: Option<String>,
    /// UDP hostPort range for SFU pods, e.g. 31000-31999.
    #[arg(long, env = "ROUNDTABLE_HOST_PORTS", default_value = "31000-31999")]
    host_ports: String,
    /// Seconds before a session's start that its SFU pod starts.
    #[arg(long, env = "ROUNDTABLE_WARM_UP_SECONDS", default_value_t = 300)]
    warm_up_seconds: i64,
    /// Seconds a draining SFU pod keeps connected people after its room ends.
    #[arg(long, env = "ROUNDTABLE_DRAIN_GRACE_SECONDS", default_value_t = 600)]
    drain_grace_seconds: i64,
    /// Seconds an empty room keeps its SFU pod.
    #[arg(long, env = "ROUNDTABLE_ROOM_IDLE_SECONDS", default_value_t = 300)]
    room_idle_seconds: i64,
    /// Seconds between reads of a live pod's counts.
    #[arg(long, env = "ROUNDTABLE_STATS_INTERVAL_SECONDS", default_value_t = 5)]
    stats_interval_seconds: u64,
    /// Reconciles at once per controller.
    #[arg(long, env = "ROUNDTABLE_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// This replica's identity in the leader Lease.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Watch only this namespace (default: every namespace).
    #[arg(long, env = "ROUNDTABLE_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "roundtable-system")]
    lease_namespace: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Crds => print!("{}", roundtable_crds::generate::all_yaml()),
        Command::Operator(args) => operator(args).await?,
    }
    Ok(())
}

fn parse_range(text: &str) -> anyhow::Result<std::ops::RangeInclusive<u16>> {
    let (low, high) = text
        .split_once('-')
        .context("a port range looks like 31000-31999")?;
    Ok(low.trim().parse()?..=high.trim().parse()?)
}

async fn operator(args: OperatorArgs) -> anyhow::Result<()> {
    let defaults = OperatorConfig::default();
    let config = OperatorConfig {
        sfu_image: args.sfu_image.unwrap_or(defaults.sfu_image),
        host_ports: parse_range(&args.host_ports)?,
        warm_up: jiff::SignedDuration::from_secs(args.warm_up_seconds),
        drain_grace_seconds: args.drain_grace_seconds,
        room_idle: jiff::SignedDuration::from_secs(args.room_idle_seconds),
        stats_interval: std::time::Duration::from_secs(args.stats_interval_seconds),
        ..defaults
    };
    let identity = match args.identity {
        Some(identity) => identity,
        None => format!("roundtable-{}", std::process::id()),
    };
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes")?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let shutdown = shutdown_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    });
    let listener = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("binding the admin address {}", args.admin_addr))?;
    let admin = tokio::spawn(admin::serve(
        listener,
        admin::AdminState {
            metrics: metrics.clone(),
            ready: ready.clone(),
        },
        shutdown.clone(),
    ));
    let options = OperatorOptions {
        config,
        identity,
        lease_namespace: args.lease_namespace,
        lease_name: "roundtable-operator".into(),
        concurrency: args.concurrency,
        namespace: args.watch_namespace,
    };
    let result = roundtable_operator::run(client, options, metrics, ready, shutdown).await;
    admin.abort();
    result.context("operator")
}
