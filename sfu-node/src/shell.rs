//! The tokio task that owns the [`Room`] (or a relay's core, see [`Driven`]): reads the UDP
//! socket and the ICE-TCP connections ([`crate::ice_tcp`]), sends what the room transmits by
//! the protocol it names, fires its timeouts, and carries requests from HTTP handlers in and
//! room events out. It holds the only clock reads of the media path.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use str0m::net::{Protocol, Transmit};
use tokio::net::UdpSocket;

use crate::ice_tcp::MediaTcp;
use tokio::sync::{mpsc, oneshot};

use crate::Result;
use crate::ice_tcp::{TcpEvent, TcpIn, TcpLimits, TcpSide};
use crate::media::{PeerId, Source};
use crate::room::{Room, RoomOutput, RoomStatus};
use crate::rules::{ClientCommand, Identity, ParticipantId, Refusal, ServerEvent};
use crate::send_batch;

/// What an events channel receives.
#[derive(Debug)]
pub enum Outgoing {
    Event(ServerEvent),
    Close,
}

/// Events queued for one participant's socket. A participant whose socket does not take them
/// (a page that stopped reading, a script that never reads) is disconnected when its queue is
/// full, so one slow reader costs a bounded amount of memory and never slows the room.
pub const EVENTS_QUEUE: usize = 256;

/// How long writing one message to a participant's socket may take before the connection is
/// dropped (the peer stopped reading and its TCP window is shut).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// A participant's events channel: bounded, see [`EVENTS_QUEUE`].
pub fn events_channel() -> (mpsc::Sender<Outgoing>, mpsc::Receiver<Outgoing>) {
    mpsc::channel(EVENTS_QUEUE)
}

/// Queues `event` for a participant; false when their queue is full (they are not reading).
pub(crate) fn queue(tx: &mpsc::Sender<Outgoing>, event: ServerEvent) -> bool {
    !matches!(
        tx.try_send(Outgoing::Event(event)),
        Err(mpsc::error::TrySendError::Full(_))
    )
}

pub type MediaReply = oneshot::Sender<Result<(ParticipantId, PeerId, String)>>;

#[derive(Debug)]
pub enum RoomRequest {
    Connect {
        identity: Identity,
        /// Carry on as this participant of this run of the room (see [`Room::resume`])
        /// rather than join anew.
        resume: Option<(ParticipantId, u64)>,
        events: mpsc::Sender<Outgoing>,
        reply: oneshot::Sender<Result<ParticipantId, Refusal>>,
    },
    /// An events socket closed. `events` names which one: a participant whose socket was
    /// replaced by a resumed one stays.
    Disconnect {
        participant: ParticipantId,
        events: mpsc::WeakSender<Outgoing>,
    },
    Command {
        participant: ParticipantId,
        command: ClientCommand,
    },
    Publish {
        identity: Identity,
        participant: Option<ParticipantId>,
        source: Source,
        offer: String,
        reply: MediaReply,
    },
    View {
        identity: Identity,
        participant: Option<ParticipantId>,
        offer: String,
        reply: MediaReply,
    },
    DeletePeer {
        user: String,
        peer: PeerId,
        reply: oneshot::Sender<Result<()>>,
    },
    Drain {
        grace: Duration,
    },
    /// The room moves to another pod (the operator's `POST /leave`): everyone re-joins there.
    Leave,
}

/// The latest [`RoomStatus`], refreshed a few times a second for the admin port.
#[derive(Debug)]
pub struct StatusCell(Mutex<RoomStatus>);

impl StatusCell {
    pub fn new(status: RoomStatus) -> Self {
        StatusCell(Mutex::new(status))
    }
    pub fn get(&self) -> RoomStatus {
        self.0.lock().expect("status lock").clone()
    }
    fn set(&self, status: RoomStatus) {
        *self.0.lock().expect("status lock") = status;
    }
}

const STATUS_EVERY: Duration = Duration::from_millis(250);
/// The largest datagram read from the UDP socket, and the largest packet an ICE-TCP
/// connection may frame.
pub const MAX_DATAGRAM: usize = 2048;
/// Datagrams read per wake-up before timers and requests get a turn.
const RECV_BATCH: usize = 256;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A sans-IO core with its channels, as the UDP loop drives it: the [`Room`] at an origin,
/// the relay's core at a relay.
pub trait Driven {
    type Request;
    /// A packet from `source` over `proto`; true if a peer took it.
    fn handle_receive(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        datagram: &[u8],
    ) -> bool;
    /// The connection `remote` sent over has closed (an ICE-TCP connection).
    fn path_closed(&mut self, now: Instant, proto: Protocol, remote: SocketAddr);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_timeout(&self) -> Option<Instant>;
    fn poll_transmit(&mut self) -> Option<Transmit>;
    /// A request from the HTTP side.
    fn request(&mut self, request: Self::Request);
    /// Hand out what is not a datagram (events for participants' channels).
    fn deliver(&mut self);
    /// Nothing left to serve: drained, or left the pool.
    fn is_done(&self) -> bool;
    fn status(&self) -> RoomStatus;
    /// The socket the core's worker threads may send on directly (see
    /// [`crate::media::DirectSend`]).
    fn set_direct_send(&mut self, sink: Arc<dyn crate::media::DirectSend>);
}

/// Run the room until it has drained (or every request sender is gone).
pub async fn run_room(
    room: Room,
    socket: UdpSocket,
    tcp: Option<MediaTcp>,
    requests: mpsc::Receiver<RoomRequest>,
    status: Arc<StatusCell>,
) -> Result<()> {
    let shell = RoomShell {
        room,
        channels: HashMap::new(),
    };
    run(shell, socket, tcp, requests, status).await
}

/// Drive `core` from its UDP socket, its ICE-TCP listener (if any), its timeouts and
/// `requests` until it is done (or every request sender is gone).
pub async fn run<D: Driven>(
    mut core: D,
    socket: UdpSocket,
    tcp: Option<MediaTcp>,
    mut requests: mpsc::Receiver<D::Request>,
    status: Arc<StatusCell>,
) -> Result<()> {
    let socket = Arc::new(socket);
    core.set_direct_send(Arc::new(send_batch::SocketSend(socket.clone())));
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut outbox = Vec::with_capacity(send_batch::BATCH);
    let mut next_status = Instant::now();
    let mut tcp = tcp.map(|l| TcpSide::new(l, TcpLimits::default()));
    loop {
        flush(&mut core, &socket, tcp.as_mut(), &mut outbox).await;
        if core.is_done() {
            break;
        }
        let now = Instant::now();
        if now >= next_status {
            if let Some(tcp) = tcp.as_mut() {
                for remote in tcp.expire(now) {
                    core.path_closed(now, Protocol::Tcp, remote);
                }
            }
            status.set(status_of(&core, tcp.as_ref()));
            next_status = now + STATUS_EVERY;
        }
        let wake = core
            .poll_timeout()
            .unwrap_or(now + Duration::from_secs(1))
            .min(next_status);
        if wake <= now {
            core.handle_timeout(now);
            continue;
        }
        tokio::select! {
            ready = socket.readable() => {
                ready?;
                for _ in 0..RECV_BATCH {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, source)) => {
                            core.handle_receive(Instant::now(), Protocol::Udp, source, &buf[..n]);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        // ICMP errors from a peer that went away surface here; not fatal.
                        Err(e) => {
                            tracing::debug!("udp receive: {e}");
                            break;
                        }
                    }
                }
            }
            request = requests.recv() => {
                let Some(request) = request else { break };
                core.request(request);
            }
            event = next_tcp(tcp.as_mut()) => {
                let tcp = tcp.as_mut().expect("only a listener has events");
                let now = Instant::now();
                match event {
                    TcpEvent::Accepted(stream, remote) => tcp.accepted(now, stream, remote),
                    TcpEvent::In(TcpIn::Packet { remote, id, packet }) => {
                        let reached = core.handle_receive(now, Protocol::Tcp, remote, &packet);
                        tcp.received(now, remote, id, packet.len(), reached);
                    }
                    TcpEvent::In(TcpIn::Closed { remote, id, why }) => {
                        if tcp.closed(remote, id, why) {
                            core.path_closed(now, Protocol::Tcp, remote);
                        }
                    }
                    TcpEvent::AcceptFailed => {}
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                core.handle_timeout(Instant::now());
            }
        }
    }
    flush(&mut core, &socket, tcp.as_mut(), &mut outbox).await;
    status.set(status_of(&core, tcp.as_ref()));
    Ok(())
}

/// The core's status with the ICE-TCP counters, which the shell keeps.
fn status_of<D: Driven>(core: &D, tcp: Option<&TcpSide>) -> RoomStatus {
    let mut status = core.status();
    status.tcp = tcp.map(TcpSide::stats).unwrap_or_default();
    status
}

/// The next ICE-TCP event, or never without a listener.
async fn next_tcp(tcp: Option<&mut TcpSide>) -> TcpEvent {
    match tcp {
        Some(tcp) => tcp.next().await,
        None => std::future::pending().await,
    }
}

/// The room and its participants' event channels.
struct RoomShell {
    room: Room,
    channels: HashMap<ParticipantId, mpsc::Sender<Outgoing>>,
}

impl Driven for RoomShell {
    type Request = RoomRequest;
    fn handle_receive(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        datagram: &[u8],
    ) -> bool {
        self.room.handle_receive(now, proto, source, datagram)
    }
    fn path_closed(&mut self, now: Instant, proto: Protocol, remote: SocketAddr) {
        self.room.path_closed(now, proto, remote);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.room.handle_timeout(now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.room.poll_timeout()
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.room.poll_transmit()
    }
    fn request(&mut self, request: RoomRequest) {
        handle_request(&mut self.room, &mut self.channels, request);
    }
    fn deliver(&mut self) {
        while let Some(o) = self.room.poll_output() {
            match o {
                RoomOutput::Send(to, event) => {
                    let reading = self.channels.get(&to).is_none_or(|tx| queue(tx, event));
                    if !reading {
                        tracing::info!(participant = %to, "not reading its events: disconnected");
                        // Dropping the sender ends the socket once it has written what is queued.
                        self.channels.remove(&to);
                        self.room.disconnect(Instant::now(), to);
                    }
                }
                RoomOutput::Close(to) => {
                    if let Some(tx) = self.channels.remove(&to) {
                        let _ = tx.try_send(Outgoing::Close);
                    }
                }
            }
        }
    }
    fn is_done(&self) -> bool {
        self.room.is_drained()
    }
    fn status(&self) -> RoomStatus {
        self.room.status()
    }
    fn set_direct_send(&mut self, sink: Arc<dyn crate::media::DirectSend>) {
        self.room.set_direct_send(sink);
    }
}

fn handle_request(
    room: &mut Room,
    channels: &mut HashMap<ParticipantId, mpsc::Sender<Outgoing>>,
    request: RoomRequest,
) {
    let now = Instant::now();
    match request {
        RoomRequest::Connect {
            identity,
            resume,
            events,
            reply,
        } => {
            let weak = events.downgrade();
            let result = match resume {
                Some((id, instance)) => room.resume(&identity, id, instance).map(|()| id),
                None => room.connect(identity),
            };
            if let Ok(id) = &result {
                // A resumed participant's old socket, if still open, ends when its sender
                // is dropped here.
                channels.insert(*id, events);
            }
            if let Err(Ok(id)) = reply.send(result) {
                // The HTTP side gave up before the upgrade: nobody is listening.
                disconnect(room, channels, now, id, &weak);
            }
        }
        RoomRequest::Disconnect {
            participant,
            events,
        } => disconnect(room, channels, now, participant, &events),
        RoomRequest::Command {
            participant,
            command,
        } => room.command(now, unix_ms(), participant, command),
        RoomRequest::Publish {
            identity,
            participant,
            source,
            offer,
            reply,
        } => {
            let _ = reply.send(room.publish(now, identity, participant, source, &offer));
        }
        RoomRequest::View {
            identity,
            participant,
            offer,
            reply,
        } => {
            let _ = reply.send(room.view(now, identity, participant, &offer));
        }
        RoomRequest::DeletePeer { user, peer, reply } => {
            let _ = reply.send(room.delete_peer(now, &user, peer));
        }
        RoomRequest::Drain { grace } => room.begin_drain(now, grace),
        RoomRequest::Leave => room.begin_leave(now),
    }
}

/// The events socket `events` of `participant` closed: they are disconnected unless a
/// resumed socket has taken its place.
fn disconnect(
    room: &mut Room,
    channels: &mut HashMap<ParticipantId, mpsc::Sender<Outgoing>>,
    now: Instant,
    participant: ParticipantId,
    events: &mpsc::WeakSender<Outgoing>,
) {
    let current = channels.get(&participant).is_some_and(|tx| {
        events
            .upgrade()
            .is_some_and(|closed| closed.same_channel(tx))
    });
    if current {
        channels.remove(&participant);
        room.disconnect(now, participant);
    }
}

/// Send what the core transmits: UDP up to [`send_batch::BATCH`] datagrams (across viewers)
/// per system call, TCP to the connection of each packet's destination; `outbox` is only a
/// buffer kept between wake-ups.
async fn flush<D: Driven>(
    core: &mut D,
    socket: &UdpSocket,
    mut tcp: Option<&mut TcpSide>,
    outbox: &mut Vec<Transmit>,
) {
    loop {
        outbox.clear();
        while outbox.len() < send_batch::BATCH {
            let Some(t) = core.poll_transmit() else { break };
            match (t.proto, tcp.as_deref_mut()) {
                (Protocol::Udp, _) => outbox.push(t),
                (_, Some(tcp)) => tcp.send(&t),
                (_, None) => {}
            }
        }
        if outbox.is_empty() {
            break;
        }
        send_batch::send_all(socket, outbox).await;
    }
    core.deliver();
}
