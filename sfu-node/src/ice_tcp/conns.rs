//! The room's ICE-TCP connections as plain state, with time passed in: which may open, which
//! have outlived their welcome, whether one more packet may be queued to a slow reader, and
//! the counters `/stats` and `/metrics` show. The tokio side ([`super::io`]) only applies
//! these decisions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Bounds on what strangers can make the room hold for ICE-TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    /// Connections open at once; more are closed as soon as accepted.
    pub max_connections: usize,
    /// A connection on which no packet has reached a peer of the room (its connectivity check
    /// never matched a peer's credentials) is closed this long after it opened.
    pub bind_within: Duration,
    /// A connection that sends nothing for this long is closed (browsers check consent every
    /// few seconds; a peer is dropped after 15 s of silence anyway).
    pub idle: Duration,
    /// Bytes queued towards one connection and not yet taken by the kernel; a packet that
    /// would go over is dropped, as a full UDP path would drop it.
    pub max_queued: usize,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            // A room's watchers and people on camera, each with a publishing and a viewing
            // connection, with room to spare.
            max_connections: 1_200,
            bind_within: Duration::from_secs(10),
            idle: Duration::from_secs(30),
            // About a second of a 2 Mbit/s viewer's media.
            max_queued: 256 * 1024,
        }
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The other side closed it, or it broke.
    Remote,
    /// It sent something that is not ICE-TCP (see [`super::framing::Garbage`]).
    Garbage,
    /// It never reached a peer within [`TcpLimits::bind_within`], or went silent for
    /// [`TcpLimits::idle`].
    TimedOut,
    /// Writing to it stalled: the reader stopped reading.
    Stalled,
}

/// Counters of the room's ICE-TCP side (cumulative but `open`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TcpStats {
    /// Connections open now.
    pub open: u64,
    pub accepted: u64,
    /// Closed at once: [`TcpLimits::max_connections`] were open.
    pub refused: u64,
    pub closed_garbage: u64,
    pub closed_timed_out: u64,
    pub closed_stalled: u64,
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Packets for a connection whose reader is behind by [`TcpLimits::max_queued`].
    pub packets_dropped: u64,
    /// Packets the room sent over TCP to an address with no connection (nothing to send on).
    pub packets_unroutable: u64,
}

#[derive(Debug, Clone, Copy)]
struct Conn {
    id: u64,
    opened: Instant,
    last_rx: Instant,
    /// A packet of it has reached a peer of the room.
    bound: bool,
}

/// The open connections, by remote address (what the room's transmits name).
#[derive(Debug, Default)]
pub struct Connections {
    limits: TcpLimits,
    conns: HashMap<SocketAddr, Conn>,
    next_id: u64,
    stats: TcpStats,
}

impl Connections {
    pub fn new(limits: TcpLimits) -> Self {
        Connections {
            limits,
            ..Connections::default()
        }
    }

    pub fn limits(&self) -> TcpLimits {
        self.limits
    }

    /// A connection from `remote` was accepted: its id, or `None` when it must be closed (too
    /// many open, or one from the same address is still open).
    pub fn open(&mut self, now: Instant, remote: SocketAddr) -> Option<u64> {
        if self.conns.len() >= self.limits.max_connections || self.conns.contains_key(&remote) {
            self.stats.refused += 1;
            return None;
        }
        self.next_id += 1;
        let id = self.next_id;
        self.conns.insert(
            remote,
            Conn {
                id,
                opened: now,
                last_rx: now,
                bound: false,
            },
        );
        self.stats.accepted += 1;
        self.stats.open = self.conns.len() as u64;
        Some(id)
    }

    /// Connection `id` from `remote` brought a packet of `len` bytes; `reached_peer` says
    /// whether a peer of the room took it.
    pub fn received(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        id: u64,
        len: usize,
        reached_peer: bool,
    ) {
        self.stats.packets_in += 1;
        self.stats.bytes_in += len as u64;
        if let Some(c) = self.conns.get_mut(&remote).filter(|c| c.id == id) {
            c.last_rx = now;
            c.bound |= reached_peer;
        }
    }

    /// Whether a packet of `len` bytes may be queued to connection `remote`, which has
    /// `queued` bytes not yet written; counts it as sent or dropped. `None`: no connection.
    pub fn may_send(&mut self, remote: SocketAddr, queued: usize, len: usize) -> Option<bool> {
        if !self.conns.contains_key(&remote) {
            self.stats.packets_unroutable += 1;
            return None;
        }
        if queued + len > self.limits.max_queued {
            self.stats.packets_dropped += 1;
            return Some(false);
        }
        self.stats.packets_out += 1;
        self.stats.bytes_out += len as u64;
        Some(true)
    }

    /// Connection `id` from `remote` ended; false when it was no longer known (already closed
    /// by the room, or replaced).
    pub fn closed(&mut self, remote: SocketAddr, id: u64, why: Closed) -> bool {
        if self.conns.get(&remote).is_none_or(|c| c.id != id) {
            return false;
        }
        self.conns.remove(&remote);
        self.count(why);
        true
    }

    /// Connections to close at `now` (never bound in time, or idle), removed and counted.
    pub fn expire(&mut self, now: Instant) -> Vec<SocketAddr> {
        let l = self.limits;
        let gone: Vec<SocketAddr> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                (!c.bound && now.saturating_duration_since(c.opened) >= l.bind_within)
                    || now.saturating_duration_since(c.last_rx) >= l.idle
            })
            .map(|(a, _)| *a)
            .collect();
        for a in &gone {
            self.conns.remove(a);
            self.count(Closed::TimedOut);
        }
        gone
    }

    pub fn stats(&self) -> TcpStats {
        self.stats
    }

    fn count(&mut self, why: Closed) {
        match why {
            Closed::Remote => {}
            Closed::Garbage => self.stats.closed_garbage += 1,
            Closed::TimedOut => self.stats.closed_timed_out += 1,
            Closed::Stalled => self.stats.closed_stalled += 1,
        }
        self.stats.open = self.conns.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        ([192, 0, 2, 7], port).into()
    }

    fn limits() -> TcpLimits {
        TcpLimits {
            max_connections: 3,
            bind_within: Duration::from_secs(10),
            idle: Duration::from_secs(30),
            max_queued: 1_000,
        }
    }

    #[test]
    fn connections_past_the_cap_are_refused_and_counted_until_one_closes() {
        let now = Instant::now();
        let mut c = Connections::new(limits());
        let ids: Vec<u64> = (0..3).map(|i| c.open(now, addr(i)).unwrap()).collect();
        assert_eq!(c.open(now, addr(9)), None);
        assert_eq!(c.open(now, addr(10)), None);
        assert_eq!((c.stats().open, c.stats().refused), (3, 2));
        assert!(c.closed(addr(1), ids[1], Closed::Remote));
        assert!(c.open(now, addr(9)).is_some());
        assert_eq!((c.stats().open, c.stats().accepted), (3, 4));
    }

    #[test]
    fn a_connection_that_never_reaches_a_peer_is_closed_after_the_bind_limit() {
        let t0 = Instant::now();
        let mut c = Connections::new(limits());
        let stranger = c.open(t0, addr(1)).unwrap();
        let viewer = c.open(t0, addr(2)).unwrap();
        // The stranger keeps sending checks nobody takes; the viewer's first one is taken.
        for s in 1..10 {
            let at = t0 + Duration::from_secs(s);
            c.received(at, addr(1), stranger, 100, false);
            c.received(at, addr(2), viewer, 100, s == 1);
        }
        assert!(c.expire(t0 + Duration::from_millis(9_999)).is_empty());
        assert_eq!(c.expire(t0 + Duration::from_secs(10)), vec![addr(1)]);
        assert_eq!(c.stats().closed_timed_out, 1);
        // Bound, the viewer stays while it talks, and goes 30 s after it stopped.
        assert!(c.expire(t0 + Duration::from_secs(38)).is_empty());
        assert_eq!(c.expire(t0 + Duration::from_secs(39)), vec![addr(2)]);
        assert_eq!(c.stats().open, 0);
        assert_eq!(c.stats().packets_in, 18);
        assert_eq!(c.stats().bytes_in, 1_800);
    }

    #[test]
    fn a_slow_reader_gets_packets_dropped_once_its_queue_is_full() {
        let now = Instant::now();
        let mut c = Connections::new(limits());
        c.open(now, addr(1)).unwrap();
        assert_eq!(c.may_send(addr(1), 0, 600), Some(true));
        assert_eq!(c.may_send(addr(1), 600, 400), Some(true));
        assert_eq!(c.may_send(addr(1), 1_000, 1), Some(false));
        assert_eq!(c.may_send(addr(1), 700, 400), Some(false));
        // The writer caught up: packets go again.
        assert_eq!(c.may_send(addr(1), 100, 400), Some(true));
        assert_eq!(c.may_send(addr(2), 0, 10), None);
        let s = c.stats();
        assert_eq!(
            (
                s.packets_out,
                s.bytes_out,
                s.packets_dropped,
                s.packets_unroutable
            ),
            (3, 1_400, 2, 1)
        );
    }

    #[test]
    fn a_late_close_of_a_replaced_connection_changes_nothing() {
        let now = Instant::now();
        let mut c = Connections::new(limits());
        let old = c.open(now, addr(1)).unwrap();
        assert_eq!(c.expire(now + Duration::from_secs(10)), vec![addr(1)]);
        let new = c.open(now + Duration::from_secs(11), addr(1)).unwrap();
        assert!(!c.closed(addr(1), old, Closed::Garbage));
        assert_eq!(c.stats().closed_garbage, 0);
        assert!(c.closed(addr(1), new, Closed::Garbage));
        assert_eq!((c.stats().closed_garbage, c.stats().open), (1, 0));
    }

    #[test]
    fn a_second_connection_from_an_open_address_is_refused() {
        let now = Instant::now();
        let mut c = Connections::new(limits());
        c.open(now, addr(1)).unwrap();
        assert_eq!(c.open(now, addr(1)), None);
        assert_eq!(c.stats().refused, 1);
    }
}
