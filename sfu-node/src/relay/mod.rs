//! Relay mode: an sfu-node that serves watchers of a room whose origin is another sfu-node.
//!
//! Model (the contract is in the relay design notes): the relay keeps one events socket and
//! one WHEP peer to the origin as a hidden participant with `grants.relay` ([`link`]); the
//! origin feeds that peer every layer of every track, which become virtual simulcast tracks
//! in the relay's own [`Media`](crate::media::Media) ([`core`]). Watchers' events sockets
//! are proxied to the origin with their own tokens, so rules, counts, chat and moderation
//! stay one room; the relay adds `track`/`track_ended` for its own WHEP slots and handles
//! `view` itself ([`http`]). On SIGTERM it refuses joins at once, tells every watcher
//! `{"type":"reconnect","reason":"relay_leaving"}` and closes them [`LEAVE_NOTICE`] later.

pub mod core;
pub mod http;
pub mod link;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use str0m::net::{Protocol, Transmit};
use tokio::sync::{mpsc, oneshot};

pub use self::core::{LEAVE_NOTICE, Relay, RelayOutput};
pub use self::link::Origin;

use crate::admin::{self, AdminState};
use crate::auth::TokenVerifier;
use crate::media::PeerId;
use crate::metrics::Metrics;
use crate::room::RoomStatus;
use crate::rules::{ParticipantId, Refusal};
use crate::server::{HttpServers, Listeners, ServerConfig};
use crate::shell::{Driven, MediaReply, Outgoing, StatusCell, queue, run};
use crate::{Error, Result};

/// What the HTTP side and the origin link ask of the relay's task.
#[derive(Debug)]
pub enum RelayRequest {
    /// A watcher's proxied socket got the origin's welcome as `participant`.
    Join {
        participant: ParticipantId,
        user: String,
        events: mpsc::Sender<Outgoing>,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    Leave {
        participant: ParticipantId,
    },
    SetView {
        participant: ParticipantId,
        mid: String,
        width: u32,
        height: u32,
    },
    Watch {
        user: String,
        participant: ParticipantId,
        offer: String,
        reply: MediaReply,
    },
    DeletePeer {
        user: String,
        peer: PeerId,
        reply: oneshot::Sender<Result<()>>,
    },
    /// The link is in the origin as `relay`: make the upstream offer. `closed` fires when
    /// that peer ends.
    StartUpstream {
        relay: ParticipantId,
        closed: oneshot::Sender<()>,
        reply: oneshot::Sender<Result<String>>,
    },
    UpstreamAnswer {
        answer: String,
        reply: oneshot::Sender<Result<()>>,
    },
    /// A text message from the link's events socket.
    OriginEvent(String),
    UpstreamLost,
    /// SIGTERM: leave the pool.
    LeavePool,
}

/// The relay's core with watchers' channels.
struct RelayShell {
    relay: Relay,
    channels: HashMap<ParticipantId, mpsc::Sender<Outgoing>>,
    upstream_closed: Option<oneshot::Sender<()>>,
}

impl Driven for RelayShell {
    type Request = RelayRequest;
    fn handle_receive(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        datagram: &[u8],
    ) -> bool {
        self.relay.handle_receive(now, proto, source, datagram)
    }
    fn path_closed(&mut self, now: Instant, proto: Protocol, remote: SocketAddr) {
        self.relay.path_closed(now, proto, remote);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.relay.handle_timeout(now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.relay.poll_timeout()
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.relay.poll_transmit()
    }
    fn request(&mut self, request: RelayRequest) {
        let now = Instant::now();
        let r = &mut self.relay;
        match request {
            RelayRequest::Join {
                participant,
                user,
                events,
                reply,
            } => {
                let result = r.join(participant, &user);
                if result.is_ok() {
                    self.channels.insert(participant, events);
                }
                if let Err(Ok(())) = reply.send(result) {
                    self.channels.remove(&participant);
                    r.leave(now, participant);
                }
            }
            RelayRequest::Leave { participant } => {
                self.channels.remove(&participant);
                r.leave(now, participant);
            }
            RelayRequest::SetView {
                participant,
                mid,
                width,
                height,
            } => r.set_view(now, participant, &mid, width, height),
            RelayRequest::Watch {
                user,
                participant,
                offer,
                reply,
            } => {
                let _ = reply.send(r.view(now, &user, participant, &offer));
            }
            RelayRequest::DeletePeer { user, peer, reply } => {
                let _ = reply.send(r.delete_peer(now, &user, peer));
            }
            RelayRequest::StartUpstream {
                relay,
                closed,
                reply,
            } => {
                self.upstream_closed = Some(closed);
                let _ = reply.send(r.start_upstream(now, relay));
            }
            RelayRequest::UpstreamAnswer { answer, reply } => {
                let _ = reply.send(r.upstream_answer(now, &answer));
            }
            RelayRequest::OriginEvent(text) => r.origin_event(now, &text),
            RelayRequest::UpstreamLost => r.upstream_lost(now),
            RelayRequest::LeavePool => r.begin_leave(now),
        }
    }
    fn deliver(&mut self) {
        while let Some(o) = self.relay.poll_output() {
            match o {
                RelayOutput::Send(to, event) => {
                    let reading = self.channels.get(&to).is_none_or(|tx| queue(tx, event));
                    if !reading {
                        // The watcher's proxy ends when its channel closes; it then leaves.
                        tracing::info!(participant = %to, "not reading its events: disconnected");
                        self.channels.remove(&to);
                    }
                }
                RelayOutput::Close(to) => {
                    if let Some(tx) = self.channels.remove(&to) {
                        let _ = tx.try_send(Outgoing::Close);
                    }
                }
                RelayOutput::UpstreamClosed => {
                    if let Some(tx) = self.upstream_closed.take() {
                        let _ = tx.send(());
                    }
                }
            }
        }
    }
    fn is_done(&self) -> bool {
        self.relay.is_done()
    }
    fn status(&self) -> RoomStatus {
        self.relay.status()
    }
    fn set_direct_send(&mut self, sink: Arc<dyn crate::media::DirectSend>) {
        self.relay.set_direct_send(sink);
    }
}

/// Serve watchers of `config.room` as a relay of `origin` until
/// `shutdown` resolves and every watcher has been sent away. Same listeners and config as
/// [`crate::server::serve`]; `config.room.limits.max_watchers` is this relay's capacity.
pub async fn serve_relay(
    config: ServerConfig,
    origin: Origin,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (media, kind) = crate::server::start_up(&config, &listeners)?;
    let room_name = config.room.room.clone();
    let capacity = config.room.limits.max_watchers;
    let relay = Relay::new(config.room, media);
    let status = Arc::new(StatusCell::new(relay.status()));
    let accepting = Arc::new(AtomicBool::new(true));
    let (requests, requests_rx) = mpsc::channel(1024);
    let shell = RelayShell {
        relay,
        channels: HashMap::new(),
        upstream_closed: None,
    };
    let relay_task = tokio::spawn(run(
        shell,
        listeners.udp,
        listeners.tcp,
        requests_rx,
        status.clone(),
    ));

    let link_task = tokio::spawn(link::run_link(
        origin.clone(),
        room_name.clone(),
        config.token_key.clone(),
        requests.clone(),
    ));
    let app = http::router(http::RelayState {
        room: room_name.clone(),
        verifier: Arc::new(TokenVerifier::new(&room_name, &config.token_key)),
        requests: requests.clone(),
        accepting: accepting.clone(),
        status: status.clone(),
        capacity,
        origin,
    });
    let admin_app = admin::router(AdminState {
        status,
        metrics: Arc::new(Metrics::new(&room_name, &kind)),
        accepting: accepting.clone(),
        leave: None,
    });
    let servers = HttpServers::start(listeners.http, app, listeners.admin, admin_app);
    let leave_task = tokio::spawn(async move {
        shutdown.await;
        tracing::info!("leaving: no new joins, watchers asked to reconnect");
        accepting.store(false, Ordering::Relaxed);
        let _ = requests.send(RelayRequest::LeavePool).await;
    });

    let result = relay_task.await;
    leave_task.abort();
    link_task.abort();
    servers.stop().await;
    result.map_err(|e| Error::Io(std::io::Error::other(e)))?
}
