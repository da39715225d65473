//! Serve one room: the room task, public signalling and the admin port, with SIGTERM-style
//! draining. Takes already-bound sockets and a shutdown future.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};

use crate::admin::{self, AdminState};
use crate::auth::TokenVerifier;
use crate::config::RoomConfig;
use crate::http::{self, AppState};
use crate::media::MediaConfig;
use crate::metrics::Metrics;
use crate::room::Room;
use crate::shell::{RoomRequest, StatusCell, run_room};
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub room: RoomConfig,
    /// The address ICE candidates advertise; defaults to the UDP socket's own address.
    pub advertise: Option<SocketAddr>,
    pub token_key: Vec<u8>,
    /// How long peers may stay once draining starts.
    pub drain_grace: Duration,
    pub initial_estimate_bps: u64,
    /// TWCC bandwidth estimation towards viewers (see [`MediaConfig::twcc`]).
    pub twcc: bool,
}

#[derive(Debug)]
pub struct Listeners {
    pub udp: UdpSocket,
    pub http: TcpListener,
    pub admin: TcpListener,
}

/// Run until `shutdown` resolves and the room has drained (or its grace period ended).
pub async fn serve(
    config: ServerConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let advertise = match config.advertise {
        Some(a) => a,
        None => listeners.udp.local_addr()?,
    };
    if advertise.ip().is_unspecified() {
        return Err(Error::Config(
            "advertise a concrete address: peers cannot send to 0.0.0.0".into(),
        ));
    }
    let kind = serde_json::to_value(config.room.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let room_name = config.room.room.clone();
    let room = Room::new(
        config.room,
        MediaConfig {
            initial_estimate_bps: config.initial_estimate_bps,
            twcc: config.twcc,
            ..MediaConfig::new(advertise)
        },
    );
    let status = Arc::new(StatusCell::new(room.status()));
    let accepting = Arc::new(AtomicBool::new(true));
    let (requests, requests_rx) = mpsc::channel(1024);
    let room_task = tokio::spawn(run_room(room, listeners.udp, requests_rx, status.clone()));

    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let app = http::router(AppState {
        room: room_name.clone(),
        verifier: Arc::new(TokenVerifier::new(&room_name, &config.token_key)),
        requests: requests.clone(),
        accepting: accepting.clone(),
    });
    let admin_app = admin::router(AdminState {
        status,
        metrics: Arc::new(Metrics::new(&room_name, &kind)),
        accepting: accepting.clone(),
    });
    let http_task = tokio::spawn(
        axum::serve(listeners.http, app)
            .with_graceful_shutdown(until_stopped(stopped.clone()))
            .into_future(),
    );
    let admin_task = tokio::spawn(
        axum::serve(listeners.admin, admin_app)
            .with_graceful_shutdown(until_stopped(stopped))
            .into_future(),
    );
    let grace = config.drain_grace;
    let drain_task = tokio::spawn(async move {
        shutdown.await;
        tracing::info!(grace_s = grace.as_secs(), "draining: no new joins");
        accepting.store(false, Ordering::Relaxed);
        let _ = requests.send(RoomRequest::Drain { grace }).await;
    });

    let result = room_task.await;
    drain_task.abort();
    let _ = stop.send(true);
    let _ = http_task.await;
    let _ = admin_task.await;
    match result {
        Ok(r) => r,
        Err(e) => Err(Error::Io(std::io::Error::other(e))),
    }
}
