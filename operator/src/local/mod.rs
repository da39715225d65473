//! `roundtable up`: Roundtable with no cluster. The control plane, the web client and an
//! embedded sfu-node per live room in one process, reading the same manifests a cluster gets
//! (and noticing when they change). What must be kept lives in a SQLite file.

pub mod catalog;
pub mod manifests;
pub mod runner;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::api::{self, ApiSettings, ApiState, Clock, Mailer, RegistrationVerifier, Store};
pub use catalog::LocalCatalog;
pub use runner::Runner;

/// How the local mode runs.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Manifest files or folders.
    pub paths: Vec<PathBuf>,
    /// Where the web client and API listen.
    pub listen: SocketAddr,
    /// Where embedded SFUs listen for signalling and media.
    pub media_ip: IpAddr,
    /// The SQLite file.
    pub database: PathBuf,
    /// `smtp://…` to send mail; without it links are printed.
    pub smtp_url: Option<String>,
    pub mail_from: String,
    /// The address people open (default: http://<listen>).
    pub public_url: Option<String>,
    /// HS256 key of registration tokens from an external registration system.
    pub registration_key: Option<Vec<u8>>,
    /// Where sessions with recording on are recorded (`<dir>/<claim>/<session>/`).
    pub recordings_dir: PathBuf,
}

/// Runs until `shutdown` resolves.
pub async fn up(
    options: UpOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let files = manifests::files(&options.paths)?;
    let loaded = manifests::load(&files)?;
    if let Some(dir) = options.database.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let store = Store::open(&options.database)
        .with_context(|| format!("opening {}", options.database.display()))?;
    let join_key: Vec<u8> = rand::random::<[u8; 32]>().to_vec();
    let catalog = Arc::new(LocalCatalog::new(loaded, jiff::Timestamp::now()));
    let listener = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("listening on {}", options.listen))?;
    let address = listener.local_addr()?;
    let public_url = options
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{address}"));
    let mailer = Mailer::new(options.smtp_url.as_deref(), &options.mail_from)?;
    let state = ApiState::new(
        catalog.clone(),
        ApiSettings {
            store,
            join_key: join_key.clone(),
            registration: RegistrationVerifier::new(options.registration_key.clone(), None),
            mailer,
            public_url: public_url.clone(),
            clock: Clock::default(),
            recordings_dir: Some(options.recordings_dir.clone()),
        },
    )
    .map_err(|e| anyhow::anyhow!("{}", e.message))?;

    let mut runner = Runner::new(
        catalog.clone(),
        options.paths.clone(),
        options.media_ip,
        join_key,
        options.recordings_dir.clone(),
    );
    runner.tick().await;
    let runner = tokio::spawn(runner.run());

    println!("{}", welcome(&*catalog, &public_url, &options));
    let app = api::router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    runner.abort();
    Ok(())
}

/// What to open: every event and room of the manifests.
fn welcome(catalog: &dyn api::Catalog, url: &str, options: &UpOptions) -> String {
    let mut lines = vec![format!("Roundtable is running at {url}/")];
    for e in catalog.events() {
        lines.push(format!(
            "  event  {}: {url}/e/{}/{}",
            e.spec.title,
            e.metadata.namespace.as_deref().unwrap_or_default(),
            e.metadata.name.as_deref().unwrap_or_default()
        ));
    }
    for r in catalog.rooms() {
        lines.push(format!("  room   {url}/{}/{}", r.spec.host, r.spec.slug));
    }
    if options.smtp_url.is_none() {
        lines.push("Sign-in and access links are printed here (no --smtp-url given).".into());
    }
    lines.join("\n")
}
