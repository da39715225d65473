//! `roundtable-recorder`: record one session's room into MP4s (see `sfu_node::recorder`).
//! Every flag has an environment variable the operator sets on the recording Job.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use sfu_node::recorder::{self, RecorderConfig, RecordingState};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(
    name = "roundtable-recorder",
    about = "Record a Roundtable session into MP4s"
)]
struct Args {
    /// The SFU's signalling address, `IP:PORT` (or `http://IP:PORT`).
    #[arg(long, env = "REC_SFU")]
    sfu: String,
    /// The room id join tokens name, e.g. `session:<namespace>:<name>`.
    #[arg(long, env = "REC_ROOM")]
    room: String,
    /// The room's HS256 join-token key.
    #[arg(long, env = "REC_TOKEN_KEY", hide_env_values = true)]
    token_key: Option<String>,
    /// The key from a file (a mounted Secret), instead of REC_TOKEN_KEY.
    #[arg(long, env = "REC_TOKEN_KEY_FILE")]
    token_key_file: Option<PathBuf>,
    /// Folder for this session's recordings (on the recording volume).
    #[arg(long, env = "REC_OUTPUT")]
    output: PathBuf,
    /// Prefix of the MP4 file names.
    #[arg(long, env = "REC_FILE_PREFIX", default_value = "")]
    file_prefix: String,
    /// Admin port: /recordings, /healthz.
    #[arg(long, env = "REC_ADMIN_ADDR", default_value = "0.0.0.0:9091")]
    admin_addr: SocketAddr,
    /// After the recording is complete, keep serving its final state this long so the
    /// operator reads it, then exit.
    #[arg(long, env = "REC_LINGER_SECONDS", default_value_t = 30)]
    linger_seconds: u64,
    /// How often captured media is forced to disk.
    #[arg(long, env = "REC_FLUSH_SECONDS", default_value_t = 2)]
    flush_seconds: u64,
}

async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,str0m=warn".into()),
        )
        .init();
    let args = Args::parse();
    let key = sfu_node::auth::key_from(args.token_key.as_deref(), args.token_key_file.as_deref())
        .context("reading the token key file")?
        .context("set REC_TOKEN_KEY or REC_TOKEN_KEY_FILE")?;
    let sfu: SocketAddr = args
        .sfu
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("REC_SFU {:?} is not IP:PORT", args.sfu))?;
    let mut config = RecorderConfig::new(sfu, &args.room, &key, args.output.clone());
    config.file_prefix = args.file_prefix.clone();
    config.flush_every = Duration::from_secs(args.flush_seconds.max(1));

    let admin = TcpListener::bind(args.admin_addr).await?;
    println!(
        "{}",
        serde_json::json!({ "room": args.room, "admin": admin.local_addr()?.to_string() })
    );
    let (status, watch_rx) = watch::channel(Vec::new());
    let server =
        tokio::spawn(async move { axum::serve(admin, recorder::admin::router(watch_rx)).await });
    let (term_tx, term_rx) = watch::channel(false);
    tokio::spawn(async move {
        terminated().await;
        let _ = term_tx.send(true);
    });
    let wait_term = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|t| *t).await;
    };
    let recordings = recorder::run_with_status(config, status, wait_term(term_rx.clone())).await?;
    tracing::info!(?recordings, "recorder finished");
    let over = recordings
        .iter()
        .any(|r| matches!(r.state, RecordingState::Complete | RecordingState::Failed));
    if *term_rx.borrow() && !over {
        // Stopped before the recording was over (a drained node, a deleted pod): what was
        // captured is composed and on the volume. Exit as a process killed by SIGTERM does,
        // so the Job (restartPolicy OnFailure) starts a recorder that continues it; exiting
        // 0 would mark the Job complete and end the recording for good.
        tracing::warn!(
            "stopped by SIGTERM before the recording was over; exiting with 143 so that a new recorder continues it"
        );
        server.abort();
        std::process::exit(143);
    }
    if !*term_rx.borrow() {
        let _ = tokio::time::timeout(
            Duration::from_secs(args.linger_seconds),
            wait_term(term_rx.clone()),
        )
        .await;
    }
    server.abort();
    if recordings.iter().any(|r| r.state == RecordingState::Failed) {
        bail!("a recording could not be composed");
    }
    Ok(())
}
