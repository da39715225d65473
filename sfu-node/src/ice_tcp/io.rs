//! The tokio side of ICE-TCP: the listener on the media port, one task per connection that
//! cuts its bytes into packets for the room and writes the room's packets back, and the
//! table ([`Connections`]) whose decisions it applies. Everything here runs inside the room's
//! task (see [`crate::shell::run`]) but the per-connection reading and writing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use str0m::net::Transmit;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::conns::{Closed, Connections, TcpLimits, TcpStats};
use super::framing::{self, Decoder};
use super::shared::MediaTcp;
use crate::shell::SEND_TIMEOUT;

/// Packets from every connection waiting for the room: a full queue stops the connections'
/// reading (TCP's own flow control then slows the senders).
const INBOUND_QUEUE: usize = 1_024;
/// Bytes written to a connection in one system call at most.
const WRITE_BATCH: usize = 64 * 1024;

/// What a connection's task tells the room.
#[derive(Debug)]
pub enum TcpIn {
    Packet {
        remote: SocketAddr,
        id: u64,
        packet: Vec<u8>,
    },
    Closed {
        remote: SocketAddr,
        id: u64,
        why: Closed,
    },
}

/// What [`TcpSide::next`] waited for.
#[derive(Debug)]
pub enum TcpEvent {
    Accepted(TcpStream, SocketAddr),
    In(TcpIn),
    /// `accept` failed (e.g. out of file descriptors); nothing to do but carry on.
    AcceptFailed,
}

/// A connection as the room writes to it. Dropping it closes the connection.
#[derive(Debug)]
struct Link {
    out: mpsc::UnboundedSender<Vec<u8>>,
    /// Bytes handed to the task and not yet written; what [`TcpLimits::max_queued`] bounds.
    queued: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The room's TCP listener and its connections.
#[derive(Debug)]
pub struct TcpSide {
    listener: MediaTcp,
    conns: Connections,
    links: HashMap<SocketAddr, Link>,
    tx: mpsc::Sender<TcpIn>,
    rx: mpsc::Receiver<TcpIn>,
}

impl TcpSide {
    pub fn new(listener: MediaTcp, limits: TcpLimits) -> Self {
        let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
        TcpSide {
            listener,
            conns: Connections::new(limits),
            links: HashMap::new(),
            tx,
            rx,
        }
    }

    /// The next connection or packet. Cancel-safe.
    pub async fn next(&mut self) -> TcpEvent {
        tokio::select! {
            accepted = self.listener.accept() => match accepted {
                Ok((stream, remote)) => TcpEvent::Accepted(stream, remote),
                Err(e) => {
                    tracing::debug!("tcp accept: {e}");
                    // Out of descriptors, most likely: give closing connections a moment.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    TcpEvent::AcceptFailed
                }
            },
            Some(input) = self.rx.recv() => TcpEvent::In(input),
        }
    }

    /// A connection was accepted: serve it, or close it at once (see [`Connections::open`]).
    pub fn accepted(&mut self, now: Instant, stream: TcpStream, remote: SocketAddr) {
        let Some(id) = self.conns.open(now, remote) else {
            tracing::debug!(%remote, "tcp connection refused");
            return;
        };
        let (out, out_rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(connection(
            stream,
            remote,
            id,
            self.tx.clone(),
            out_rx,
            queued.clone(),
        ));
        self.links.insert(remote, Link { out, queued, task });
    }

    /// A packet of connection `id` was handled; `reached_peer` if a peer of the room took it.
    pub fn received(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        id: u64,
        len: usize,
        reached_peer: bool,
    ) {
        self.conns.received(now, remote, id, len, reached_peer);
    }

    /// A connection's task ended; false when it had already been replaced or expired.
    pub fn closed(&mut self, remote: SocketAddr, id: u64, why: Closed) -> bool {
        let current = self.conns.closed(remote, id, why);
        if current {
            self.links.remove(&remote);
        }
        current
    }

    /// Send a packet of the room's over its connection, unless that one's reader is too far
    /// behind (then it is dropped, as UDP would lose it).
    pub fn send(&mut self, t: &Transmit) {
        let len = t.contents.len() + 2;
        let Some(link) = self.links.get(&t.destination) else {
            self.conns.may_send(t.destination, 0, len);
            return;
        };
        let queued = link.queued.load(Ordering::Relaxed);
        if self.conns.may_send(t.destination, queued, len) == Some(true) {
            let mut framed = Vec::with_capacity(len);
            framing::encode(&t.contents, &mut framed);
            link.queued.fetch_add(len, Ordering::Relaxed);
            let _ = link.out.send(framed);
        }
    }

    /// Close the connections that outstayed their welcome (see [`Connections::expire`]);
    /// returns their remote addresses.
    pub fn expire(&mut self, now: Instant) -> Vec<SocketAddr> {
        let expired = self.conns.expire(now);
        for remote in &expired {
            tracing::debug!(%remote, "tcp connection timed out");
            self.links.remove(remote);
        }
        expired
    }

    pub fn stats(&self) -> TcpStats {
        self.conns.stats()
    }
}

/// One connection: packets in to the room, the room's packets out, until either side ends.
async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    id: u64,
    tx: mpsc::Sender<TcpIn>,
    mut out: mpsc::UnboundedReceiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let read = async {
        let mut decoder = Decoder::default();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return Closed::Remote,
                Ok(n) => n,
            };
            decoder.push(&buf[..n]);
            loop {
                match decoder.next_frame() {
                    Ok(Some(packet)) => {
                        let input = TcpIn::Packet { remote, id, packet };
                        if tx.send(input).await.is_err() {
                            return Closed::Remote;
                        }
                    }
                    Ok(None) => break,
                    Err(garbage) => {
                        tracing::debug!(%remote, "tcp connection closed: {garbage}");
                        return Closed::Garbage;
                    }
                }
            }
        }
    };
    let write = async {
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        while let Some(first) = out.recv().await {
            batch.clear();
            batch.extend_from_slice(&first);
            while batch.len() < WRITE_BATCH {
                let Ok(more) = out.try_recv() else { break };
                batch.extend_from_slice(&more);
            }
            match tokio::time::timeout(SEND_TIMEOUT, wr.write_all(&batch)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Closed::Remote,
                Err(_) => return Closed::Stalled,
            }
            queued.fetch_sub(batch.len(), Ordering::Relaxed);
        }
        Closed::Remote
    };
    let why = tokio::select! {
        why = read => why,
        why = write => why,
    };
    let _ = tx.send(TcpIn::Closed { remote, id, why }).await;
}
