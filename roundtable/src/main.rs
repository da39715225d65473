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
use roundtable::local;
use roundtable_control_plane as api;
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
    /// or smtps://user:pass@mail.example.com (without it, `up` writes links to its output;
    /// `api` needs --dev-print-sign-in-links for that).
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

/// HTTPS and TURN: what a browser on another machine, or behind a firewall, needs.
#[derive(Args, Debug)]
struct NetArgs {
    /// Serve HTTPS with this certificate chain (PEM); with --tls-key. Without them the control
    /// plane serves plain HTTP, for a TLS-terminating Ingress in front of it.
    #[arg(long, env = "ROUNDTABLE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "ROUNDTABLE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// TURN server URLs handed to every join, comma-separated, e.g.
    /// turn:turn.example.com:3478?transport=udp,turn:turn.example.com:3478?transport=tcp,turns:turn.example.com:443?transport=tcp
    #[arg(
        long,
        env = "ROUNDTABLE_TURN_URLS",
        value_delimiter = ',',
        requires = "turn_secret_file"
    )]
    turn_urls: Vec<String>,
    /// File holding the secret shared with the TURN server (coturn's static-auth-secret).
    #[arg(long, env = "ROUNDTABLE_TURN_SECRET_FILE")]
    turn_secret_file: Option<std::path::PathBuf>,
    /// Seconds a join's TURN credentials stay valid.
    #[arg(long, env = "ROUNDTABLE_TURN_TTL_SECONDS", default_value_t = api::turn::DEFAULT_TTL_SECONDS)]
    turn_ttl_seconds: i64,
}

impl NetArgs {
    fn tls(&self) -> Option<api::serve::TlsFiles> {
        Some(api::serve::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
        })
    }

    fn turn(&self) -> anyhow::Result<Option<api::turn::Turn>> {
        if self.turn_urls.is_empty() {
            return Ok(None);
        }
        let path = self
            .turn_secret_file
            .as_deref()
            .context("--turn-urls needs --turn-secret-file")?;
        let secret =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let secret = secret.trim();
        anyhow::ensure!(!secret.is_empty(), "{} is empty", path.display());
        Ok(Some(api::turn::Turn {
            urls: self.turn_urls.clone(),
            secret: secret.as_bytes().to_vec(),
            ttl_seconds: self.turn_ttl_seconds,
        }))
    }
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
    /// The SQLite database file (on a persistent volume; one replica), unless
    /// `--database-url` is given.
    #[arg(
        long,
        env = "ROUNDTABLE_DATABASE",
        default_value = "/var/lib/roundtable/roundtable.db"
    )]
    database: std::path::PathBuf,
    /// A PostgreSQL database instead of the SQLite file, for any number of replicas:
    /// `postgres://user:password@host:5432/db?sslmode=require`. Migrations are applied at
    /// start-up.
    #[arg(long, env = "ROUNDTABLE_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Connections to PostgreSQL per replica.
    #[arg(long, env = "ROUNDTABLE_DATABASE_CONNECTIONS", default_value_t = 10)]
    database_connections: u32,
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
    /// For development only: without an SMTP server, write sign-in and access links to the
    /// log (anyone who reads the log can then sign in as anyone). Without SMTP and without
    /// this flag the control plane does not start, unless people sign in through an external
    /// registration system (then it sends no email at all).
    #[arg(long, env = "ROUNDTABLE_DEV_PRINT_SIGN_IN_LINKS")]
    dev_print_sign_in_links: bool,
    /// Addresses of proxies (e.g. the Ingress controller's pods) whose X-Forwarded-For is
    /// believed for rate limits: comma-separated addresses or ranges such as 10.0.0.0/8.
    /// Default: none (the TCP peer is the client).
    #[arg(long, env = "ROUNDTABLE_TRUSTED_PROXIES", default_value = "")]
    trusted_proxies: String,
    /// Sessions one attendee may have at one event (organisers are not limited).
    #[arg(long, env = "ROUNDTABLE_SESSIONS_PER_ATTENDEE", default_value_t = api::SessionLimits::default().per_creator)]
    sessions_per_attendee: usize,
    /// Sessions all attendees together may have at one event.
    #[arg(long, env = "ROUNDTABLE_ATTENDEE_SESSIONS_PER_EVENT", default_value_t = api::SessionLimits::default().per_event)]
    attendee_sessions_per_event: usize,
    #[command(flatten)]
    mail: MailArgs,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    accounts: AccountArgs,
}

/// Host accounts: sign-up with an OpenID Connect issuer, where dashboard rooms go, whom to ask.
#[derive(Args, Debug)]
struct AccountArgs {
    /// An OpenID Connect issuer hosts may sign up with, e.g. https://id.example.com/realms/main
    /// (its discovery document is read from /.well-known/openid-configuration). Register
    /// `<public URL>/signin/oidc/callback` as the client's redirect URI.
    #[arg(long, env = "ROUNDTABLE_OIDC_ISSUER", requires_all = ["oidc_client_id", "oidc_client_secret_file"])]
    oidc_issuer: Option<String>,
    /// The client id registered at the issuer.
    #[arg(long, env = "ROUNDTABLE_OIDC_CLIENT_ID")]
    oidc_client_id: Option<String>,
    /// File holding the client secret (a mounted Secret).
    #[arg(long, env = "ROUNDTABLE_OIDC_CLIENT_SECRET_FILE")]
    oidc_client_secret_file: Option<std::path::PathBuf>,
    /// The issuer's name on the sign-in button ("Sign in with <name>").
    #[arg(
        long,
        env = "ROUNDTABLE_OIDC_NAME",
        default_value = "your organisation"
    )]
    oidc_name: String,
    /// The namespace where hosts' dashboard rooms are created as Room resources.
    #[arg(long, env = "ROUNDTABLE_ROOMS_NAMESPACE", default_value = "default")]
    rooms_namespace: String,
    /// How people reach whoever runs this platform (shown where an email address cannot be
    /// changed), e.g. "support@example.com".
    #[arg(long, env = "ROUNDTABLE_OPERATOR_CONTACT")]
    operator_contact: Option<String>,
}

impl AccountArgs {
    fn settings(&self) -> anyhow::Result<api::accounts::AccountSettings> {
        let oidc = match &self.oidc_issuer {
            None => None,
            Some(issuer) => {
                let file = self
                    .oidc_client_secret_file
                    .as_ref()
                    .context("--oidc-client-secret-file")?;
                let secret = std::fs::read_to_string(file).with_context(|| {
                    format!("reading the OIDC client secret {}", file.display())
                })?;
                Some(api::oidc::Provider {
                    issuer: issuer.trim_end_matches('/').to_string(),
                    client_id: self.oidc_client_id.clone().context("--oidc-client-id")?,
                    client_secret: secret.trim().to_string(),
                    name: self.oidc_name.clone(),
                })
            }
        };
        Ok(api::accounts::AccountSettings {
            oidc,
            rooms_namespace: self.rooms_namespace.clone(),
            operator_contact: self.operator_contact.clone(),
        })
    }
}

#[derive(Args, Debug)]
struct UpArgs {
    /// Manifest files or folders (e.g. examples/).
    #[arg(required = true)]
    paths: Vec<std::path::PathBuf>,
    /// Address of the web client and API.
    #[arg(long, env = "ROUNDTABLE_API_ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address the embedded SFUs listen and advertise on. Default: their signalling on
    /// loopback and their media on the address this machine reaches the network from (browsers
    /// do not send WebRTC media to loopback).
    #[arg(long)]
    media_ip: Option<std::net::IpAddr>,
    /// The address browsers send media to when it is not this machine's: the public address of
    /// a NAT in front of it that forwards every port unchanged (a cloud VM's 1:1 NAT). ICE
    /// candidates name it; the SFUs still listen on --media-ip.
    #[arg(long)]
    advertise_ip: Option<std::net::IpAddr>,
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
    /// Serve other machines on the LAN: listen on every address (the port of --listen), serve
    /// HTTPS with a certificate from a local authority made once in .roundtable/tls/ (or
    /// --tls-cert), media on this machine's LAN address (or --media-ip); prints how to trust it.
    #[arg(long)]
    lan: bool,
    #[command(flatten)]
    mail: MailArgs,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    accounts: AccountArgs,
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
    /// SFU pods offer ICE over TCP on their TCP hostPort (which signalling shares), for
    /// attendees whose networks drop UDP; the port must then be open to them.
    #[arg(long, env = "ROUNDTABLE_SFU_ICE_TCP", default_value_t = true, action = clap::ArgAction::Set)]
    sfu_ice_tcp: bool,
    /// Most cores one SFU pod may be given (it drives its room on as many threads); set it to
    /// what one node can give a pod. Rooms needing more are served through relays.
    #[arg(long, env = "ROUNDTABLE_SFU_MAX_CORES", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    sfu_max_cores: u32,
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

/// Log levels for a person reading the terminal (`RUST_LOG` overrides them). str0m notes at
/// WARN that it keeps the payload types it first agreed on when a browser's later offer
/// renumbers them (RED, RTX): nothing is wrong, and a browser join printed nine of them.
const DEFAULT_LOG: &str = "info,kube=warn,str0m::format::payload_params=error";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| DEFAULT_LOG.into()),
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

/// PostgreSQL when a URL is given, else the SQLite file; either way migrated to this version.
async fn open_store(args: &ApiArgs) -> anyhow::Result<api::Store> {
    let store = match &args.database_url {
        Some(url) => api::Store::connect(url, args.database_connections)
            .await
            .context("connecting to PostgreSQL (--database-url)")?,
        None => {
            if let Some(dir) = args.database.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            api::Store::open(&args.database)
                .await
                .with_context(|| format!("opening {}", args.database.display()))?
        }
    };
    tracing::info!(
        backend = store.backend(),
        schema = store.schema_version().await?,
        "database ready"
    );
    Ok(store)
}

async fn api(args: ApiArgs) -> anyhow::Result<()> {
    let registration_key = args
        .mail
        .registration_key_file
        .as_deref()
        .map(read_key)
        .transpose()?;
    let trusted_proxies = api::parse_cidrs(&args.trusted_proxies)
        .map_err(anyhow::Error::msg)
        .context("--trusted-proxies (ROUNDTABLE_TRUSTED_PROXIES)")?;
    let mailer = api::Mailer::for_api(
        args.mail.smtp_url.as_deref(),
        &args.mail.mail_from,
        args.dev_print_sign_in_links,
        registration_key.is_some() || args.registration_jwks_url.is_some(),
    )?;
    match &mailer {
        api::Mailer::Log => tracing::warn!(
            "--dev-print-sign-in-links: sign-in links are written to this log; anyone who reads \
             it can sign in as anyone. For development only."
        ),
        api::Mailer::Off => tracing::warn!(
            "no SMTP server: email sign-in, registration and access links are off; people sign \
             in through the registration system"
        ),
        api::Mailer::Smtp { .. } => {}
    }
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes")?;
    let jwks = match &args.registration_jwks_url {
        Some(url) => Some(
            reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .context("an HTTP client")?
                .get(url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .with_context(|| format!("fetching the registration JWKS {url}"))?
                .json()
                .await
                .context("reading the registration JWKS")?,
        ),
        None => None,
    };
    let store = open_store(&args).await?;
    let catalog = api::KubeCatalog::start(client, args.watch_namespace.clone());
    let state = api::ApiState::protected(
        Arc::new(catalog.clone()),
        api::ApiSettings {
            store,
            join_key: read_key(&args.token_key_file)?,
            registration: api::RegistrationVerifier::new(registration_key, jwks),
            mailer,
            public_url: args.public_url.clone(),
            clock: api::Clock::default(),
            recordings_dir: args.recordings_dir.clone(),
        },
        api::Protection {
            trusted_proxies,
            session_limits: api::SessionLimits {
                per_creator: args.sessions_per_attendee,
                per_event: args.attendee_sessions_per_event,
            },
            turn: args.net.turn()?,
            accounts: args.accounts.settings()?,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let shutdown = shutdown_on(terminated());
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let admin = serve_admin(args.admin_addr, metrics, ready.clone(), shutdown.clone()).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    catalog.wait_ready_reporting().await;
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(listen = %args.listen, "control plane ready");
    let tls = args
        .net
        .tls()
        .map(|files| api::serve::tls_config(&files))
        .transpose()
        .context("--tls-cert/--tls-key")?;
    let served = api::serve::serve(listener, api::router(state), tls, shutdown).await;
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
    let turn = args.net.turn()?;
    let mut tls = args.net.tls();
    let mut listen = args.listen;
    let mut public_url = args.public_url;
    let mut media = local::MediaAddrs::choose(args.media_ip, local::outward_ip());
    if let Some(ip) = args.advertise_ip {
        anyhow::ensure!(
            !ip.is_unspecified(),
            "--advertise-ip {ip}: browsers cannot send media to an unspecified address"
        );
        media.advertise = Some(ip);
    }
    let mut trust = None;
    if args.lan {
        let lan_ip = args
            .media_ip
            .or_else(local::outward_ip)
            .filter(|ip| !ip.is_loopback())
            .context("--lan: this machine has no network address (give --media-ip)")?;
        // Signalling stays on loopback (the control plane proxies it); media on the LAN.
        media.udp = lan_ip;
        listen = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), args.listen.port());
        public_url
            .get_or_insert_with(|| format!("https://{}", SocketAddr::new(lan_ip, listen.port())));
        if tls.is_none() {
            let names = ["localhost".to_string()];
            let made = api::serve::local_certificates(
                std::path::Path::new(".roundtable/tls"),
                &[lan_ip, std::net::Ipv4Addr::LOCALHOST.into()],
                &names,
            )
            .context("--lan: making a certificate")?;
            trust = Some(std::fs::canonicalize(&made.ca).unwrap_or_else(|_| made.ca.clone()));
            tls = Some(made.server);
        }
    }
    let options = local::UpOptions {
        paths: args.paths,
        listen,
        media,
        database: args.database,
        smtp_url: args.mail.smtp_url,
        mail_from: args.mail.mail_from,
        public_url,
        registration_key,
        recordings_dir: args.recordings_dir,
        tls,
        turn,
        trust,
        accounts: args.accounts.settings()?,
    };
    local::up(options, terminated()).await
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
        sfu_ice_tcp: args.sfu_ice_tcp,
        sfu_max_cores: args.sfu_max_cores,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `roundtable up` from a checkout keeps its database and recordings in the checkout; git
    /// must not offer to commit them.
    #[test]
    fn what_roundtable_up_writes_by_default_is_ignored_by_git() {
        let Command::Up(args) = Cli::try_parse_from(["roundtable", "up", "examples/"])
            .unwrap()
            .command
        else {
            panic!("parsed as another command");
        };
        let checkout = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for path in [
            args.database.clone(),
            args.database.with_extension("db-wal"),
            args.recordings_dir.join("gala-recordings/talk/1.mp4"),
        ] {
            let status = std::process::Command::new("git")
                .args(["check-ignore", "-q", "--no-index"])
                .arg(&path)
                .current_dir(&checkout)
                .status()
                .expect("git runs");
            assert!(status.success(), "{} is not in .gitignore", path.display());
        }
    }
}
