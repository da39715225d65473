//! Sending a wake-up's datagrams with few system calls: on Linux one `sendmmsg` carries up
//! to [`BATCH`] datagrams, whatever their destinations (the viewers of one forwarded packet
//! are many addresses, so GSO, which needs one destination, rarely applies); elsewhere one
//! `sendto` each. Thin I/O: what to send is decided by the room.
//!
//! A full socket buffer waits for the socket to be writable and goes on where it stopped;
//! a datagram the kernel refuses (an unreachable address) is skipped, never retried.

use std::io::{self, ErrorKind};

use str0m::net::Transmit;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per system call (and per batch the shell collects).
pub const BATCH: usize = 64;

/// Send every datagram of `datagrams`, in order.
pub async fn send_all(socket: &UdpSocket, datagrams: &[Transmit]) {
    let mut at = 0;
    while at < datagrams.len() {
        let rest = &datagrams[at..];
        match socket.try_io(Interest::WRITABLE, || send_some(socket, rest)) {
            Ok(sent) => at += sent.max(1),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if let Err(e) = socket.writable().await {
                    tracing::debug!("udp socket: {e}");
                    return;
                }
            }
            Err(e) => {
                tracing::debug!("udp send to {}: {e}", rest[0].destination);
                at += 1;
            }
        }
    }
}

/// One system call: how many of the first datagrams of `datagrams` went out (at least one,
/// or an error about the first).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_some(socket: &UdpSocket, datagrams: &[Transmit]) -> io::Result<usize> {
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};

    let batch = &datagrams[..datagrams.len().min(BATCH)];
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
fn send_some(socket: &UdpSocket, datagrams: &[Transmit]) -> io::Result<usize> {
    let t = &datagrams[0];
    socket.try_send_to(&t.contents, t.destination).map(|_| 1)
}

#[cfg(test)]
mod tests {
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
        // An IPv6 destination from an IPv4 socket: the kernel refuses that one datagram.
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
