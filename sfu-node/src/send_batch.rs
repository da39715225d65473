//! Sending a wake-up's datagrams with few system calls: on Linux one `sendmmsg` carries up
//! to [`BATCH`] datagrams, whatever their destinations (the viewers of one forwarded packet
//! are many addresses), and within it a viewer's consecutive full-size packets (a video
//! frame's) go as one UDP GSO message (see [`plan_gso`]); elsewhere one `sendto` each. What to send is decided by the room; what to do after each system call is
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

/// The longest UDP GSO segment we send (IPv6 and UDP headers within a 1 500-byte MTU, with
/// room to spare): a kernel refuses a GSO message whose segment does not fit the path's MTU, and
/// media datagrams are ~1 200 bytes, so longer ones (rare, odd) go out one per message.
pub const GSO_MAX_SEGMENT: usize = 1_400;

/// Segments per GSO message: the kernel takes at most 64 (`UDP_MAX_SEGMENTS`, older kernels).
pub const GSO_MAX_SEGMENTS: usize = 64;

/// How one `sendmmsg` call carries a run of datagrams: as messages of consecutive datagrams,
/// each message to one destination; with `segment` set, a message of several datagrams is one
/// UDP GSO send that the kernel (or the network card) cuts into datagrams of `segment` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GsoPlan {
    /// The GSO segment size shared by the call (a `sendmmsg` call carries one set of control
    /// messages for all its messages), or `None` when every message is one datagram.
    pub segment: Option<usize>,
    /// Datagrams in each message, in order.
    pub messages: Vec<usize>,
}

/// Group a run of datagrams (destination and length each, in order) into messages. One
/// segment size serves the whole call: the longest datagram's. A message goes on to the next
/// datagram while that one has the same destination, every datagram so far in the message is
/// exactly `segment` long (the kernel cuts at `segment` bytes, so only the last may be
/// shorter) and the message is within [`GSO_MAX_SEGMENTS`]. A datagram shorter than or equal
/// to `segment` alone in its message is sent as it is. A viewer's packets of one video frame
/// in one wake-up are such a run: the packetizer fills all but the last to the same size.
pub fn plan_gso<A: PartialEq>(datagrams: &[(A, usize)], gso: bool) -> GsoPlan {
    let longest = datagrams.iter().map(|(_, len)| *len).max().unwrap_or(0);
    let segment = (gso && longest <= GSO_MAX_SEGMENT).then_some(longest);
    let mut messages: Vec<usize> = Vec::new();
    // The open message's destination, and whether it may take one more datagram.
    let mut open: Option<(&A, bool)> = None;
    for (to, len) in datagrams {
        match (segment, open) {
            (Some(segment), Some((dest, true))) if dest == to => {
                let n = messages.last_mut().expect("a message is open");
                *n += 1;
                open = Some((to, *len == segment && *n < GSO_MAX_SEGMENTS));
            }
            _ => {
                messages.push(1);
                open = Some((to, segment == Some(*len)));
            }
        }
    }
    let segment = segment.filter(|_| messages.len() < datagrams.len());
    GsoPlan { segment, messages }
}

/// Whether sends may use UDP GSO: until the kernel refuses a GSO message (an old kernel, a
/// route through a device without checksum offload); then never again in this process.
#[cfg(any(target_os = "linux", target_os = "android"))]
static GSO: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// One system call: how many of the first datagrams of `batch` went out (at least one), or
/// the error about the first. Consecutive datagrams to one viewer go as one UDP GSO message
/// where [`plan_gso`] allows.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_some(socket: &UdpSocket, batch: &[Transmit]) -> io::Result<usize> {
    use std::sync::atomic::Ordering;

    let datagrams: Vec<(std::net::SocketAddr, usize)> = batch
        .iter()
        .map(|t| (t.destination, t.contents.len()))
        .collect();
    let plan = plan_gso(&datagrams, GSO.load(Ordering::Relaxed));
    match sendmmsg_planned(socket, batch, &plan) {
        // EIO: no checksum offload on the route; EINVAL: a segment over the path's MTU;
        // ENOPROTOOPT: a kernel without UDP GSO.
        Err(e) if plan.segment.is_some() && matches!(e.raw_os_error(), Some(5 | 22 | 92)) => {
            tracing::warn!(
                "udp: the kernel refused a GSO send ({e}); one datagram per message from now on"
            );
            GSO.store(false, Ordering::Relaxed);
            sendmmsg_planned(socket, batch, &plan_gso(&datagrams, false))
        }
        result => result,
    }
}

/// One `sendmmsg` of `batch` as `plan` groups it: returns the datagrams in the messages that
/// went out.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn sendmmsg_planned(socket: &UdpSocket, batch: &[Transmit], plan: &GsoPlan) -> io::Result<usize> {
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};

    // `MultiHeaders` holds raw pointers, so it is not `Send` and cannot live in the room's
    // task across an await: a few small allocations per call (per up to BATCH datagrams).
    let mut slices: Vec<Vec<IoSlice<'_>>> = Vec::with_capacity(plan.messages.len());
    let mut addresses: Vec<Option<SockaddrStorage>> = Vec::with_capacity(plan.messages.len());
    let mut at = 0;
    for &n in &plan.messages {
        let message = &batch[at..at + n];
        slices.push(message.iter().map(|t| IoSlice::new(&t.contents)).collect());
        addresses.push(Some(SockaddrStorage::from(message[0].destination)));
        at += n;
    }
    // Fits: GSO_MAX_SEGMENT < u16::MAX.
    let segment = plan.segment.map(|s| s as u16);
    let control: Vec<ControlMessage<'_>> =
        segment.iter().map(ControlMessage::UdpGsoSegments).collect();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(
        plan.messages.len(),
        segment.map(|_| nix::cmsg_space!(u16)),
    );
    let sent = sendmmsg(
        socket.as_raw_fd(),
        &mut headers,
        &slices,
        &addresses,
        &control,
        MsgFlags::empty(),
    )?;
    Ok(plan.messages[..sent.count()].iter().sum())
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
            let want: Vec<(usize, u32)> = (0..n as u32)
                .filter(|i| i % 2 == parity)
                .map(|i| (1_000, i))
                .collect();
            assert_eq!(received(socket, from).await, want);
        }
    }

    /// What `socket` receives until it has been quiet for 200 ms: each datagram's length and
    /// the number in its first four bytes, checking it came from `from`.
    async fn received(socket: &UdpSocket, from: SocketAddr) -> Vec<(usize, u32)> {
        let mut buf = [0u8; 2_048];
        let mut got = Vec::new();
        while let Ok(Ok((len, src))) =
            tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf)).await
        {
            assert_eq!(src, from);
            got.push((len, u32::from_be_bytes(buf[..4].try_into().unwrap())));
        }
        got
    }

    #[test]
    fn a_viewers_run_of_full_packets_goes_as_one_gso_message() {
        // One wake-up: two viewers get a three-packet video frame (two full, the last
        // shorter), then one of them an audio packet.
        let (a, b) = (addr(7001), addr(7002));
        let wake_up = [
            (a, 1_100),
            (a, 1_100),
            (a, 600),
            (b, 1_100),
            (b, 1_100),
            (b, 600),
            (a, 120),
        ];
        assert_eq!(
            plan_gso(&wake_up, true),
            GsoPlan {
                segment: Some(1_100),
                messages: vec![3, 3, 1]
            }
        );
        // Without GSO (refused once by the kernel), or with nothing to merge: one datagram
        // per message and no segment size.
        let singles = GsoPlan {
            segment: None,
            messages: vec![1; 7],
        };
        assert_eq!(plan_gso(&wake_up, false), singles);
        let alternating = [(a, 1_100), (b, 1_100), (a, 1_100), (b, 600)];
        assert_eq!(plan_gso(&alternating, true).messages, vec![1; 4]);
        assert_eq!(plan_gso(&alternating, true).segment, None);
    }

    #[test]
    fn only_the_last_segment_of_a_message_may_be_short() {
        let a = addr(7001);
        // A short datagram ends its message; the kernel would cut a longer one after it at the
        // wrong place.
        let plan = plan_gso(
            &[(a, 600), (a, 1_100), (a, 1_100), (a, 900), (a, 1_100)],
            true,
        );
        assert_eq!(plan.messages, vec![1, 3, 1]);
        // Past what a GSO segment may be, nothing is merged.
        let long = GSO_MAX_SEGMENT + 1;
        assert_eq!(plan_gso(&[(a, long), (a, long)], true).messages, vec![1, 1]);
        // At most GSO_MAX_SEGMENTS datagrams per message.
        let many = vec![(a, 1_000); GSO_MAX_SEGMENTS + 6];
        assert_eq!(plan_gso(&many, true).messages, vec![GSO_MAX_SEGMENTS, 6]);
        assert_eq!(
            plan_gso::<SocketAddr>(&[], true).messages,
            Vec::<usize>::new()
        );
    }

    #[tokio::test]
    async fn runs_sent_as_gso_arrive_as_the_datagrams_they_were() {
        let local = (Ipv4Addr::LOCALHOST, 0);
        let sender = UdpSocket::bind(local).await.unwrap();
        let from = sender.local_addr().unwrap();
        let a = UdpSocket::bind(local).await.unwrap();
        let b = UdpSocket::bind(local).await.unwrap();
        // Frames of 1-5 packets of 1 100 bytes but the last, to each viewer in turn, audio
        // between them: more than one batch.
        let mut datagrams = Vec::new();
        let mut want: HashMap<SocketAddr, Vec<(usize, u32)>> = HashMap::new();
        let mut n = 0u32;
        for frame in 0..30 {
            for to in [&a, &b] {
                let to = to.local_addr().unwrap();
                let packets = 1 + frame % 5;
                for p in 0..packets + 1 {
                    let len = match p {
                        p if p == packets => 120,
                        p if p + 1 == packets => 500 + frame * 10,
                        _ => 1_100,
                    };
                    let mut bytes = vec![0xCD; len];
                    bytes[..4].copy_from_slice(&n.to_be_bytes());
                    datagrams.push(transmit(from, to, bytes));
                    want.entry(to).or_default().push((len, n));
                    n += 1;
                }
            }
        }
        let plan = plan_gso(
            &datagrams[..BATCH]
                .iter()
                .map(|t| (t.destination, t.contents.len()))
                .collect::<Vec<_>>(),
            true,
        );
        assert!(
            plan.segment == Some(1_100) && plan.messages.len() < BATCH,
            "{plan:?}"
        );
        send_all(&sender, &datagrams).await;
        // The kernel took the GSO messages (it did not refuse them and make us fall back).
        assert!(GSO.load(std::sync::atomic::Ordering::Relaxed));
        for socket in [&a, &b] {
            let got = received(socket, from).await;
            assert_eq!(got, want[&socket.local_addr().unwrap()]);
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
