//! `roundtable`: the command-line entry point of Roundtable.
//!
//! - `roundtable crds` prints the CRDs (`roundtable crds | kubectl apply -f -`);
//! - `roundtable operator` runs the operator (leader-elected controllers, admin port);
//! - `roundtable api` runs the control plane (HTTP API and web client) against a cluster;
//! - `roundtable up examples/` runs everything in one process with no cluster.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use roundtable_operator::{Metrics, OperatorConfig, OperatorOptions, admin, api, shutdown_on};

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

// Parsed once at start-up: the size of the flags does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Print the roundtable.dev CustomResourceDefinitions as YAML.
    Crds,
    /// Run the operator: sessions, stages and rooms become SFU pods with live status.
    Operator(OperatorArgs),
    /// Run the control plane: the HTTP API and web client, reading the cluster's resources.
    Api(ApiArgs),
    /// Run Roundtable with no cluster: control plane, web client and SFUs in one process,
    /// reading the manifests in PATHS (files or folders) and following their changes.
    Up(UpArgs),
}

#[derive(Args, Debug)]
struct MailArgs {
    /// SMTP server for sign-in and access links, e.g. smtp://mail.example.com:587?tls=required
    /// or smtps://user:pass@mail.example.com (without it, links are written to the log).
    #[arg(long, env = "ROUNDTABLE_SMTP_URL")]
    smtp_url: Option<String>,
    /// Sender of those emails.
    #[arg(
        long,
        env = "ROUNDTABLE_MAIL_FROM",
        default_value = "Roundtable <no-reply@roundtable.invalid>"
    )]
    mail_from: String,
    /// HS256 key (file) that an external registration system signs registration tokens with.
    #[arg(long, env = "ROUNDTABLE_REGISTRATION_KEY_FILE")]
    registration_key_file: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
struct ApiArgs {
    /// Address of the public HTTP server (API and web client).
    #[arg(long, env = "ROUNDTABLE_API_ADDR", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Address of the admin server (/metrics, /healthz, /readyz).
    #[arg(long, env = "ROUNDTABLE_ADMIN_ADDR", default_value = "0.0.0.0:8081")]
    admin_addr: SocketAddr,
    /// The address people open, e.g. https://events.example.com (used in emailed links).
    #[arg(long, env = "ROUNDTABLE_PUBLIC_URL")]
    public_url: String,
    /// File holding the sfu-node join-token key (the mounted `roundtable-join-token` Secret).
    #[arg(long, env = "ROUNDTABLE_TOKEN_KEY_FILE")]
    token_key_file: std::path::PathBuf,
    /// The SQLite database file (on a persistent volume).
    #[arg(
        long,
        env = "ROUNDTABLE_DATABASE",
        default_value = "/var/lib/roundtable/roundtable.db"
    )]
    database: std::path::PathBuf,
    /// Folder under which each event's recording claim is mounted (`<dir>/<claim>/`), for
    /// organisers' downloads from the event report.
    #[arg(long, env = "ROUNDTABLE_RECORDINGS_DIR")]
    recordings_dir: Option<std::path::PathBuf>,
    /// URL of the external registration system's JWKS (RS256/ES256 registration tokens).
    #[arg(long, env = "ROUNDTABLE_REGISTRATION_JWKS_URL")]
    registration_jwks_url: Option<String>,
    /// Read only this namespace (default: every namespace).
    #[arg(long, env = "ROUNDTABLE_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    #[command(flatten)]
    mail: MailArgs,
}

#[derive(Args, Debug)]
struct UpArgs {
    /// Manifest files or folders (e.g. examples/).
    #[arg(required = true)]
    paths: Vec<std::path::PathBuf>,
    /// Address of the web client and API.
    #[arg(long, env = "ROUNDTABLE_API_ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address the embedded SFUs listen and advertise on (loopback: this machine only).
    #[arg(long, default_value = "127.0.0.1")]
    media_ip: std::net::IpAddr,
    /// The SQLite file for registrations, sign-ins, access links, labels and chat.
    #[arg(
        long,
        env = "ROUNDTABLE_DATABASE",
        default_value = ".roundtable/local.db"
    )]
    database: std::path::PathBuf,
    /// The address people open (default: http://<listen>).
    #[arg(long, env = "ROUNDTABLE_PUBLIC_URL")]
    public_url: Option<String>,
    /// Where sessions with recording on are recorded: `<dir>/<claim>/<session>/`.
    #[arg(long, default_value = ".roundtable/recordings")]
    recordings_dir: std::path::PathBuf,
    #[command(flatten)]
    mail: MailArgs,
}

#[derive(Args, Debug)]
struct OperatorArgs {
    /// Address of the admin server (/metrics, /healthz, /readyz).
    #[arg(long, env = "ROUNDTABLE_ADMIN_ADDR", default_value = "0.0.0.0:8081")]
    admin_addr: SocketAddr,
    /// Container image of sfu-node.
    #[arg(long, env = "ROUNDTABLE_SFU_IMAGE")]
    sfu_image: Option<String>,
    /// Container image of roundtable-recorder (sessions' recording Jobs).
    #[arg(long, env = "ROUNDTABLE_RECORDER_IMAGE")]
    recorder_image: Option<String>,
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
        Command::Api(args) => api(args).await?,
        Command::Up(args) => up(args).await?,
    }
    Ok(())
}

fn parse_range(text: &str) -> anyhow::Result<std::ops::RangeInclusive<u16>> {
    let (low, high) = text
        .split_once('-')
        .context("a port range looks like 31000-31999")?;
    Ok(low.trim().parse()?..=high.trim().parse()?)
}

async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

fn read_key(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let key = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let key = key.trim_ascii().to_vec();
    anyhow::ensure!(!key.is_empty(), "{} is empty", path.display());
    Ok(key)
}

/// Serves /metrics, /healthz and /readyz on the admin address until `shutdown`.
async fn serve_admin(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: roundtable_operator::Shutdown,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the admin address {addr}"))?;
    Ok(tokio::spawn(admin::serve(
        listener,
        admin::AdminState { metrics, ready },
        shutdown,
    )))
}

async fn api(args: ApiArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes")?;
    let registration_key = args
        .mail
        .registration_key_file
        .as_deref()
        .map(read_key)
        .transpose()?;
    let jwks = match &args.registration_jwks_url {
        Some(url) => Some(
            reqwest::get(url)
                .await
                .and_then(reqwest::Response::error_for_status)
                .with_context(|| format!("fetching the registration JWKS {url}"))?
                .json()
                .await
                .context("reading the registration JWKS")?,
        ),
        None => None,
    };
    if let Some(dir) = args.database.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let catalog = api::KubeCatalog::start(client, args.watch_namespace.clone());
    let state = api::ApiState::new(
        Arc::new(catalog.clone()),
        api::ApiSettings {
            store: api::Store::open(&args.database)
                .with_context(|| format!("opening {}", args.database.display()))?,
            join_key: read_key(&args.token_key_file)?,
            registration: api::RegistrationVerifier::new(registration_key, jwks),
            mailer: api::Mailer::new(args.mail.smtp_url.as_deref(), &args.mail.mail_from)?,
            public_url: args.public_url.clone(),
            clock: api::Clock::default(),
            recordings_dir: args.recordings_dir.clone(),
        },
    )
    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let shutdown = shutdown_on(terminated());
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let admin = serve_admin(args.admin_addr, metrics, ready.clone(), shutdown.clone()).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    catalog.wait_ready().await;
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(listen = %args.listen, "control plane ready");
    let app = api::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    admin.abort();
    served.context("control plane")
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let registration_key = args
        .mail
        .registration_key_file
        .as_deref()
        .map(read_key)
        .transpose()?;
    let options = roundtable_operator::local::UpOptions {
        paths: args.paths,
        listen: args.listen,
        media_ip: args.media_ip,
        database: args.database,
        smtp_url: args.mail.smtp_url,
        mail_from: args.mail.mail_from,
        public_url: args.public_url,
        registration_key,
        recordings_dir: args.recordings_dir,
    };
    roundtable_operator::local::up(options, terminated()).await
}

async fn operator(args: OperatorArgs) -> anyhow::Result<()> {
    let defaults = OperatorConfig::default();
    let config = OperatorConfig {
        sfu_image: args.sfu_image.unwrap_or(defaults.sfu_image),
        recorder_image: args
            .recorder_image
            .unwrap_or(defaults.recorder_image.clone()),
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
    let shutdown = shutdown_on(terminated());
    let admin = serve_admin(
        args.admin_addr,
        metrics.clone(),
        ready.clone(),
        shutdown.clone(),
    )
    .await?;
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
