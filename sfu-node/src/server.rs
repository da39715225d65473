//! Serve one room: the room task, public signalling and the admin port, with SIGTERM-style
//! draining. Takes already-bound sockets and a shutdown future.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};

use crate::admin::{self, AdminState};
use crate::auth::TokenVerifier;
use crate::config::RoomConfig;
use crate::http::{self, AppState};
use crate::ice_tcp::{HttpListener, MediaTcp};
use crate::media::{Bwe, MediaConfig};
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
    /// How viewers' bandwidth is estimated (see [`Bwe`]).
    pub bwe: Bwe,
    /// Threads that drive the room's peers (see [`MediaConfig::threads`]).
    pub threads: usize,
}

#[derive(Debug)]
pub struct Listeners {
    pub udp: UdpSocket,
    /// ICE-TCP on the UDP socket's port number (see [`bind_media`]), on a listener of its own
    /// or on signalling's ([`crate::ice_tcp::share`]); without it answers offer only the UDP
    /// candidate.
    pub tcp: Option<MediaTcp>,
    pub http: HttpListener,
    pub admin: TcpListener,
}

/// Tries at binding a free port (0) on both UDP and TCP before giving up.
const BIND_TRIES: usize = 20;

/// The media port: UDP and TCP on the same `ip` and `port`. With port 0, a port free on both
/// (UDP picks one; another is tried if TCP has it taken).
pub async fn bind_media(ip: IpAddr, port: u16) -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..if port == 0 { BIND_TRIES } else { 1 } {
        let udp = UdpSocket::bind((ip, port)).await?;
        let bound = udp.local_addr()?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("tried at least once"))
}

/// Run until `shutdown` resolves and the room has drained (or its grace period ended).
pub async fn serve(
    config: ServerConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (media, kind) = start_up(&config, &listeners)?;
    let room_name = config.room.room.clone();
    let mut room_config = config.room;
    // A run of its own, so a page can only resume its participant in this process: never 0
    // (the unset value), and below 2^53, so JavaScript reads the number exactly.
    room_config.instance = (rand::random::<u64>() >> 11).max(1);
    let room = Room::new(room_config, media);
    let status = Arc::new(StatusCell::new(room.status()));
    let accepting = Arc::new(AtomicBool::new(true));
    let (requests, requests_rx) = mpsc::channel(1024);
    let room_task = tokio::spawn(run_room(
        room,
        listeners.udp,
        listeners.tcp,
        requests_rx,
        status.clone(),
    ));

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
        leave: Some(requests.clone()),
    });
    let servers = HttpServers::start(listeners.http, app, listeners.admin, admin_app);
    let grace = config.drain_grace;
    let drain_task = tokio::spawn(async move {
        shutdown.await;
        tracing::info!(grace_s = grace.as_secs(), "draining: no new joins");
        accepting.store(false, Ordering::Relaxed);
        let _ = requests.send(RoomRequest::Drain { grace }).await;
    });

    let result = room_task.await;
    drain_task.abort();
    servers.stop().await;
    result.map_err(|e| Error::Io(std::io::Error::other(e)))?
}

/// What an origin and a relay both need first: the media config (ICE candidates announce
/// `config.advertise`, or the UDP socket's own address; a TCP candidate too when there is a
/// TCP listener, which must have the UDP port) and the room kind's metrics label.
pub(crate) fn start_up(
    config: &ServerConfig,
    listeners: &Listeners,
) -> Result<(MediaConfig, String)> {
    let advertise = match config.advertise {
        Some(a) => a,
        None => listeners.udp.local_addr()?,
    };
    if advertise.ip().is_unspecified() {
        return Err(Error::Config(
            "advertise a concrete address: peers cannot send to 0.0.0.0".into(),
        ));
    }
    if let Some(tcp) = &listeners.tcp {
        let (udp, tcp) = (listeners.udp.local_addr()?, tcp.local_addr()?);
        if udp.port() != tcp.port() {
            return Err(Error::Config(format!(
                "ICE-TCP listens on {tcp}, not on the UDP port {}: peers are told one port",
                udp.port()
            )));
        }
    }
    let kind = serde_json::to_value(config.room.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let media = MediaConfig {
        initial_estimate_bps: config.initial_estimate_bps,
        bwe: config.bwe,
        threads: config.threads,
        tcp: listeners.tcp.is_some(),
        ..MediaConfig::new(advertise)
    };
    Ok((media, kind))
}

/// The public signalling and admin HTTP servers, until [`HttpServers::stop`].
pub(crate) struct HttpServers {
    stop: watch::Sender<bool>,
    tasks: [tokio::task::JoinHandle<std::io::Result<()>>; 2],
}

impl HttpServers {
    pub(crate) fn start(
        http: HttpListener,
        app: axum::Router,
        admin: TcpListener,
        admin_app: axum::Router,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let serve = |listener: HttpListener, app: axum::Router| {
            let mut stopped = stopped.clone();
            tokio::spawn(
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    })
                    .into_future(),
            )
        };
        HttpServers {
            tasks: [serve(http, app), serve(admin.into(), admin_app)],
            stop,
        }
    }

    /// Stops taking connections and waits for both servers to finish.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
