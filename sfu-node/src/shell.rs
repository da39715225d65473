//! The tokio task that owns the [`Room`]: reads the UDP socket, sends what the room
//! transmits, fires its timeouts, and carries requests from HTTP handlers in and room
//! events out. It holds the only clock reads of the media path.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::Result;
use crate::media::{PeerId, Source};
use crate::room::{Room, RoomOutput, RoomStatus};
use crate::rules::{ClientCommand, Identity, ParticipantId, Refusal, ServerEvent};

/// What an events channel receives.
#[derive(Debug)]
pub enum Outgoing {
    Event(ServerEvent),
    Close,
}

pub type MediaReply = oneshot::Sender<Result<(ParticipantId, PeerId, String)>>;

#[derive(Debug)]
pub enum RoomRequest {
    Connect {
        identity: Identity,
        events: mpsc::UnboundedSender<Outgoing>,
        reply: oneshot::Sender<Result<ParticipantId, Refusal>>,
    },
    Disconnect {
        participant: ParticipantId,
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
/// Datagrams read per wake-up before timers and requests get a turn.
const RECV_BATCH: usize = 256;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Run the room until it has drained (or every request sender is gone).
pub async fn run_room(
    mut room: Room,
    socket: UdpSocket,
    mut requests: mpsc::Receiver<RoomRequest>,
    status: Arc<StatusCell>,
) -> Result<()> {
    let mut channels: HashMap<ParticipantId, mpsc::UnboundedSender<Outgoing>> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    let mut next_status = Instant::now();
    loop {
        flush(&mut room, &socket, &mut channels).await;
        if room.is_drained() {
            break;
        }
        let now = Instant::now();
        if now >= next_status {
            status.set(room.status());
            next_status = now + STATUS_EVERY;
        }
        let wake = room
            .poll_timeout()
            .unwrap_or(now + Duration::from_secs(1))
            .min(next_status);
        if wake <= now {
            room.handle_timeout(now);
            continue;
        }
        tokio::select! {
            ready = socket.readable() => {
                ready?;
                for _ in 0..RECV_BATCH {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, source)) => room.handle_receive(Instant::now(), source, &buf[..n]),
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
                handle_request(&mut room, &mut channels, request);
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                room.handle_timeout(Instant::now());
            }
        }
    }
    flush(&mut room, &socket, &mut channels).await;
    status.set(room.status());
    Ok(())
}

fn handle_request(
    room: &mut Room,
    channels: &mut HashMap<ParticipantId, mpsc::UnboundedSender<Outgoing>>,
    request: RoomRequest,
) {
    let now = Instant::now();
    match request {
        RoomRequest::Connect {
            identity,
            events,
            reply,
        } => {
            let result = room.connect(identity);
            if let Ok(id) = &result {
                channels.insert(*id, events);
            }
            if let Err(Ok(id)) = reply.send(result) {
                // The HTTP side gave up before the upgrade: nobody is listening.
                channels.remove(&id);
                room.disconnect(now, id);
            }
        }
        RoomRequest::Disconnect { participant } => {
            channels.remove(&participant);
            room.disconnect(now, participant);
        }
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
    }
}

async fn flush(
    room: &mut Room,
    socket: &UdpSocket,
    channels: &mut HashMap<ParticipantId, mpsc::UnboundedSender<Outgoing>>,
) {
    while let Some(t) = room.poll_transmit() {
        match socket.try_send_to(&t.contents, t.destination) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if let Err(e) = socket.send_to(&t.contents, t.destination).await {
                    tracing::debug!("udp send: {e}");
                }
            }
            Err(e) => tracing::debug!("udp send to {}: {e}", t.destination),
        }
    }
    while let Some(o) = room.poll_output() {
        match o {
            RoomOutput::Send(to, event) => {
                if let Some(tx) = channels.get(&to) {
                    let _ = tx.send(Outgoing::Event(event));
                }
            }
            RoomOutput::Close(to) => {
                if let Some(tx) = channels.remove(&to) {
                    let _ = tx.send(Outgoing::Close);
                }
            }
        }
    }
}
