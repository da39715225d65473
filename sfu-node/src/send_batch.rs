//! Sending a wake-up's datagrams with few system calls: on Linux one `sendmmsg` carries up
//! to [`BATCH`] datagrams, whatever their destinations (the viewers of one forwarded packet
//! are many addresses, so GSO, which needs one destination, rarely applies); elsewhere one
//! `sendto` each. What to send is decided by the room; what to do after each system call is
//! decided by [`Progress`], a plain state machine; [`send_all`] is the thin I/O around it.
//!
//! Every datagram goes out once, in the order given (so in order per destination). A full
//! socket buffer (`EAGAIN`, or `sendmmsg` stopping short) waits for the socket to be writable
//! and goes on where it stopped; a datagram the kernel refuses (an address it cannot reach)
//! is dropped on its own, never retried, and the others still go.

use std::io::{self, ErrorKind};

use str0m::net::Transmit;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per system call. Past ~32 a loopback `sendmmsg` saves little more per datagram
/// (see the crate README's benchmark notes); 64 covers a wake-up of 4×100 in two or three calls.
pub const BATCH: usize = 64;

/// What one system call did with the datagrams it was handed (the first of them first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The first `n` went out (`sendmmsg` stops short at a full buffer or a refused datagram).
    Sent(usize),
    /// The socket's buffer is full: none went out.
    WouldBlock,
    /// The kernel refused the first one (e.g. an address of the wrong family).
    Refused,
}

/// How far sending one run of datagrams has got.
#[derive(Debug, Default)]
pub struct Progress {
    /// Index of the next datagram to send.
    at: usize,
    /// Datagrams the kernel refused (dropped).
    refused: usize,
    /// System calls made.
    calls: usize,
}

impl Progress {
    /// Send `datagrams` from where this stands, at most [`BATCH`] per call of `send`, until all
    /// are sent or refused (true), or the socket is full (false: wait until it is writable,
    /// then call again with the same datagrams).
    pub fn send<T>(&mut self, datagrams: &[T], mut send: impl FnMut(&[T]) -> Outcome) -> bool {
        while self.at < datagrams.len() {
            let rest = &datagrams[self.at..];
            let batch = &rest[..rest.len().min(BATCH)];
            self.calls += 1;
            match send(batch) {
                Outcome::Sent(n) if n > 0 => self.at += n.min(batch.len()),
                Outcome::WouldBlock => return false,
                // `sendmmsg` reports a refusal of any datagram but the first as a short count,
                // and the next call (starting at that one) as an error; a count of 0 would be
                // a kernel bug, taken as a refusal so that the loop always ends.
                Outcome::Sent(_) | Outcome::Refused => {
                    self.at += 1;
                    self.refused += 1;
                }
            }
        }
        true
    }

    /// Datagrams dealt with so far (sent, or refused and dropped): the first ones.
    pub fn done(&self) -> usize {
        self.at
    }

    /// Datagrams dropped because the kernel refused them.
    pub fn refused(&self) -> usize {
        self.refused
    }

    /// System calls made so far.
    pub fn calls(&self) -> usize {
        self.calls
    }
}

/// Send every datagram of `datagrams`, in order (see the module doc).
pub async fn send_all(socket: &UdpSocket, datagrams: &[Transmit]) {
    let mut progress = Progress::default();
    while !progress.send(datagrams, |batch| try_send(socket, batch)) {
        if let Err(e) = socket.writable().await {
            tracing::debug!("udp socket: {e}");
            return;
        }
    }
}

/// Send what the socket takes of `datagrams` now, without waiting, from any thread: returns
/// how many of the first ones were dealt with (sent, or refused and dropped); the rest wait
/// for [`send_all`]. Worker threads of a room send their viewers' datagrams with this (see
/// [`SocketSend`]).
pub fn send_now(socket: &UdpSocket, datagrams: &[Transmit]) -> usize {
    let mut progress = Progress::default();
    progress.send(datagrams, |batch| try_send(socket, batch));
    progress.done()
}

/// One system call on the socket, if it is writable, and what became of `batch`.
fn try_send(socket: &UdpSocket, batch: &[Transmit]) -> Outcome {
    match socket.try_io(Interest::WRITABLE, || send_some(socket, batch)) {
        Ok(n) => Outcome::Sent(n),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Outcome::WouldBlock,
        Err(e) => {
            tracing::debug!("udp send to {}: {e}", batch[0].destination);
            Outcome::Refused
        }
    }
}

/// The room's UDP socket, as the media core's worker threads send on it.
#[derive(Debug)]
pub struct SocketSend(pub std::sync::Arc<UdpSocket>);

impl crate::media::DirectSend for SocketSend {
    fn send_now(&self, datagrams: &[Transmit]) -> usize {
        send_now(&self.0, datagrams)
    }
}

/// One system call: how many of the first datagrams of `batch` went out (at least one), or
/// the error about the first.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_some(socket: &UdpSocket, batch: &[Transmit]) -> io::Result<usize> {
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};

    // `MultiHeaders` holds raw pointers, so it is not `Send` and cannot live in the room's
    // task across an await: four small allocations per call (per up to BATCH datagrams).
    let slices: Vec<[IoSlice<'_>; 1]> = batch.iter().map(|t| [IoSlice::new(&t.contents)]).collect();
    let addresses: Vec<Option<SockaddrStorage>> = batch
        .iter()
        .map(|t| Some(SockaddrStorage::from(t.destination)))
        .collect();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(batch.len(), None);
    let no_control: [ControlMessage<'_>; 0] = [];
    let sent = sendmmsg(
        socket.as_raw_fd(),
        &mut headers,
        &slices,
        &addresses,
        no_control,
        MsgFlags::empty(),
    )?;
    Ok(sent.count())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_some(socket: &UdpSocket, batch: &[Transmit]) -> io::Result<usize> {
    let t = &batch[0];
    socket.try_send_to(&t.contents, t.destination).map(|_| 1)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;

    use str0m::net::{DatagramSend, Protocol, Transmit};
    use tokio::net::UdpSocket;

    use super::*;

    fn transmit(from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) -> Transmit {
        Transmit {
            proto: Protocol::Udp,
            source: from,
            destination: to,
            contents: DatagramSend::from(bytes),
        }
    }

    fn addr(port: u16) -> SocketAddr {
        (Ipv4Addr::LOCALHOST, port).into()
    }

    /// A datagram saying which destination it is meant for and its number.
    fn numbered(to: SocketAddr, n: u32) -> Transmit {
        let mut bytes = vec![0xAB; 1_000];
        bytes[..2].copy_from_slice(&to.port().to_be_bytes());
        bytes[2..6].copy_from_slice(&n.to_be_bytes());
        transmit(addr(1), to, bytes)
    }

    /// A kernel as `sendmmsg` behaves towards the caller: takes at most `room` datagrams
    /// before its buffer is full (then stops short, or says EAGAIN if it took none), refuses
    /// one address (stopping short before it, or an error when it comes first).
    struct FakeKernel {
        refuse: SocketAddr,
        room: usize,
        /// What each destination received: (meant for, number).
        received: HashMap<SocketAddr, Vec<(u16, u32)>>,
        batch_sizes: Vec<usize>,
    }

    impl FakeKernel {
        fn send(&mut self, batch: &[Transmit]) -> Outcome {
            assert!(!batch.is_empty() && batch.len() <= BATCH);
            self.batch_sizes.push(batch.len());
            if self.room == 0 {
                return Outcome::WouldBlock;
            }
            if batch[0].destination == self.refuse {
                return Outcome::Refused;
            }
            let mut sent = 0;
            for t in batch.iter().take(self.room) {
                if t.destination == self.refuse {
                    break;
                }
                let meant = u16::from_be_bytes(t.contents[..2].try_into().unwrap());
                let n = u32::from_be_bytes(t.contents[2..6].try_into().unwrap());
                self.received
                    .entry(t.destination)
                    .or_default()
                    .push((meant, n));
                sent += 1;
            }
            self.room -= sent;
            Outcome::Sent(sent)
        }
    }

    #[test]
    fn every_datagram_goes_once_in_order_to_its_own_destination() {
        let viewers: Vec<SocketAddr> = (0..7).map(|i| addr(5000 + i)).collect();
        let refused = addr(9);
        // A wake-up's output: each "packet" to every viewer in turn, now and then to the
        // refused address too, more than a few batches in all.
        let mut datagrams = Vec::new();
        let mut want: HashMap<SocketAddr, Vec<(u16, u32)>> = HashMap::new();
        for n in 0..40u32 {
            for &to in &viewers {
                datagrams.push(numbered(to, n));
                want.entry(to).or_default().push((to.port(), n));
            }
            if n % 9 == 4 {
                datagrams.push(numbered(refused, n));
            }
        }
        let refusals = datagrams
            .iter()
            .filter(|t| t.destination == refused)
            .count();
        assert!(refusals >= 4 && datagrams.len() > 4 * BATCH);

        // Buffer space that runs out at uneven points, mid-batch and at a batch's start.
        let mut kernel = FakeKernel {
            refuse: refused,
            room: 50,
            received: HashMap::new(),
            batch_sizes: Vec::new(),
        };
        let mut progress = Progress::default();
        let mut waits = 0;
        while !progress.send(&datagrams, |batch| kernel.send(batch)) {
            waits += 1;
            assert!(waits < 100, "no progress");
            kernel.room = [37, 64, 1, 90][waits % 4];
        }

        assert_eq!(kernel.received, want);
        assert!(!kernel.received.contains_key(&refused));
        assert_eq!(progress.refused(), refusals);
        assert!(waits >= 4, "the buffer filled up only {waits} times");
        assert_eq!(progress.calls(), kernel.batch_sizes.len());
    }

    #[test]
    fn a_free_socket_takes_the_whole_run_in_full_batches() {
        let datagrams: Vec<Transmit> = (0..(3 * BATCH + 5) as u32)
            .map(|n| numbered(addr(6000 + (n % 100) as u16), n))
            .collect();
        let mut kernel = FakeKernel {
            refuse: addr(9),
            room: usize::MAX,
            received: HashMap::new(),
            batch_sizes: Vec::new(),
        };
        let mut progress = Progress::default();
        assert!(progress.send(&datagrams, |batch| kernel.send(batch)));
        assert_eq!(kernel.batch_sizes, vec![BATCH, BATCH, BATCH, 5]);
        let received: usize = kernel.received.values().map(Vec::len).sum();
        assert_eq!(received, datagrams.len());
        assert_eq!(progress.refused(), 0);
    }

    #[tokio::test]
    async fn every_datagram_reaches_its_own_destination_in_order() {
        let local = (Ipv4Addr::LOCALHOST, 0);
        let sender = UdpSocket::bind(local).await.unwrap();
        let from = sender.local_addr().unwrap();
        let a = UdpSocket::bind(local).await.unwrap();
        let b = UdpSocket::bind(local).await.unwrap();
        // More than one batch, alternating destinations, each datagram telling its number.
        let n = BATCH * 2 + 7;
        let datagrams: Vec<Transmit> = (0..n)
            .map(|i| {
                let to = if i % 2 == 0 { &a } else { &b };
                let mut bytes = vec![0xAB; 1_000];
                bytes[..4].copy_from_slice(&(i as u32).to_be_bytes());
                transmit(from, to.local_addr().unwrap(), bytes)
            })
            .collect();
        send_all(&sender, &datagrams).await;
        for (socket, parity) in [(&a, 0), (&b, 1)] {
            let mut buf = [0u8; 2_048];
            let mut got = Vec::new();
            while let Ok(Ok((len, src))) =
                tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf)).await
            {
                assert_eq!((len, src), (1_000, from));
                got.push(u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize);
            }
            let want: Vec<usize> = (0..n).filter(|i| i % 2 == parity).collect();
            assert_eq!(got, want);
        }
    }

    #[tokio::test]
    async fn an_unreachable_destination_does_not_stop_the_rest() {
        let local = (Ipv4Addr::LOCALHOST, 0);
        let sender = UdpSocket::bind(local).await.unwrap();
        let from = sender.local_addr().unwrap();
        let to = UdpSocket::bind(local).await.unwrap();
        // An IPv6 destination from an IPv4 socket: the kernel refuses that one datagram, in
        // the middle of a batch and at the start of the next call.
        let refused: SocketAddr = "[::1]:9".parse().unwrap();
        let datagrams = vec![
            transmit(from, to.local_addr().unwrap(), vec![1; 10]),
            transmit(from, refused, vec![2; 10]),
            transmit(from, to.local_addr().unwrap(), vec![3; 10]),
        ];
        send_all(&sender, &datagrams).await;
        let mut buf = [0u8; 64];
        for want in [1, 3] {
            let (len, _) = tokio::time::timeout(Duration::from_secs(1), to.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&buf[..len], &[want; 10]);
        }
    }
}
