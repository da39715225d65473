//! One TCP port for signalling and ICE-TCP, as the operator's pods have it: their one hostPort
//! number carries media on UDP and signalling on TCP, so ICE-TCP, which browsers reach at the
//! media candidate's port, must share signalling's TCP listener. The first byte a client sends
//! tells them apart ([`classify`], pure): HTTP starts with a method in capital letters, an
//! RFC 4571 frame with the high byte of its length, below 0x08 for any packet a peer sends
//! (ICE checks and media are far below 2 KiB).
//!
//! [`share`] takes the listener; a task accepts, reads that byte without consuming it
//! (`peek`), and hands each connection to the HTTP server ([`HttpListener`]) or to the room's
//! ICE-TCP side ([`MediaTcp`]). A client that sends nothing within [`SNIFF_WITHIN`], or when
//! [`MAX_SNIFFING`] connections are already undecided, is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

/// How long a new connection may take to send its first byte.
pub const SNIFF_WITHIN: Duration = Duration::from_secs(5);
/// Connections whose first byte is awaited at once; more are closed as soon as accepted.
pub const MAX_SNIFFING: usize = 256;
/// Connections decided and not yet taken by their side.
const HANDOFF_QUEUE: usize = 256;

/// What a connection speaks, by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaks {
    Http,
    IceTcp,
    /// Neither: closed at once.
    Unknown,
}

/// The protocol of a connection whose first byte is `first`.
pub fn classify(first: u8) -> Speaks {
    match first {
        b'A'..=b'Z' => Speaks::Http,
        0x00..=0x07 => Speaks::IceTcp,
        _ => Speaks::Unknown,
    }
}

/// Connections handed over by [`share`]'s task, and the address they were accepted on.
#[derive(Debug)]
pub struct Handed {
    rx: mpsc::Receiver<(TcpStream, SocketAddr)>,
    local: SocketAddr,
}

impl Handed {
    /// The next connection; waits forever once the task has stopped.
    async fn next(&mut self) -> (TcpStream, SocketAddr) {
        match self.rx.recv().await {
            Some(connection) => connection,
            None => std::future::pending().await,
        }
    }
}

/// Where the signalling HTTP server takes its connections from.
#[derive(Debug)]
pub enum HttpListener {
    Own(TcpListener),
    /// Those of a shared port that speak HTTP.
    Shared(Handed),
}

impl From<TcpListener> for HttpListener {
    fn from(listener: TcpListener) -> Self {
        HttpListener::Own(listener)
    }
}

impl HttpListener {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            HttpListener::Own(l) => l.local_addr(),
            HttpListener::Shared(h) => Ok(h.local),
        }
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        match self {
            HttpListener::Own(l) => axum::serve::Listener::accept(l).await,
            HttpListener::Shared(h) => h.next().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        HttpListener::local_addr(self)
    }
}

/// Where the room's ICE-TCP side takes its connections from.
#[derive(Debug)]
pub enum MediaTcp {
    Own(TcpListener),
    /// Those of a shared port that speak RFC 4571.
    Shared(Handed),
}

impl From<TcpListener> for MediaTcp {
    fn from(listener: TcpListener) -> Self {
        MediaTcp::Own(listener)
    }
}

impl MediaTcp {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            MediaTcp::Own(l) => l.local_addr(),
            MediaTcp::Shared(h) => Ok(h.local),
        }
    }

    /// The next connection. Cancel-safe.
    pub async fn accept(&mut self) -> std::io::Result<(TcpStream, SocketAddr)> {
        match self {
            MediaTcp::Own(l) => l.accept().await,
            MediaTcp::Shared(h) => Ok(h.next().await),
        }
    }
}

/// Splits `listener` between signalling and ICE-TCP (see the module's text). The accepting task
/// ends when both sides are dropped.
pub fn share(listener: TcpListener) -> std::io::Result<(HttpListener, MediaTcp)> {
    let local = listener.local_addr()?;
    let (http_tx, http_rx) = mpsc::channel(HANDOFF_QUEUE);
    let (media_tx, media_rx) = mpsc::channel(HANDOFF_QUEUE);
    tokio::spawn(route(listener, http_tx, media_tx));
    Ok((
        HttpListener::Shared(Handed { rx: http_rx, local }),
        MediaTcp::Shared(Handed {
            rx: media_rx,
            local,
        }),
    ))
}

type Sender = mpsc::Sender<(TcpStream, SocketAddr)>;

async fn route(listener: TcpListener, http: Sender, media: Sender) {
    let sniffing = Arc::new(Semaphore::new(MAX_SNIFFING));
    let both_gone = {
        let (http, media) = (http.clone(), media.clone());
        async move {
            http.closed().await;
            media.closed().await;
        }
    };
    tokio::pin!(both_gone);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut both_gone => return,
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!("shared port accept: {e}");
                // Out of descriptors, most likely: give closing connections a moment.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = sniffing.clone().try_acquire_owned() else {
            tracing::debug!(%remote, "shared port: too many undecided connections");
            continue;
        };
        let (http, media) = (http.clone(), media.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let mut first = [0u8; 1];
            let peeked = tokio::time::timeout(SNIFF_WITHIN, stream.peek(&mut first)).await;
            let to = match peeked {
                Ok(Ok(1..)) => match classify(first[0]) {
                    Speaks::Http => &http,
                    Speaks::IceTcp => &media,
                    Speaks::Unknown => {
                        tracing::debug!(%remote, byte = first[0], "shared port: neither HTTP nor ICE-TCP");
                        return;
                    }
                },
                _ => return,
            };
            let _ = to.send((stream, remote)).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_methods_go_to_signalling_and_framed_packets_to_ice_tcp() {
        for method in ["GET", "POST", "DELETE", "OPTIONS", "HEAD", "PUT", "PATCH"] {
            assert_eq!(classify(method.as_bytes()[0]), Speaks::Http, "{method}");
        }
        // RFC 4571: a 16-bit length first. A STUN binding request of ~100 bytes, a 1,200-byte
        // media packet, and the largest packet a peer sends are all below 0x0800.
        for length in [100u16, 1_200, 2_047] {
            assert_eq!(
                classify(length.to_be_bytes()[0]),
                Speaks::IceTcp,
                "{length}"
            );
        }
        // TLS (0x16), lower-case text and other bytes are neither.
        for byte in [0x16, b'g', b'{', 0xff, 0x08] {
            assert_eq!(classify(byte), Speaks::Unknown, "{byte:#04x}");
        }
    }

    #[tokio::test]
    async fn one_port_serves_http_and_ice_tcp_and_closes_silent_or_unknown_clients() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mut http, mut media) = share(listener).unwrap();
        assert_eq!(http.local_addr().unwrap(), addr);
        assert_eq!(media.local_addr().unwrap(), addr);

        let mut web = TcpStream::connect(addr).await.unwrap();
        web.write_all(b"GET /readyz HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let (mut served, _) = axum::serve::Listener::accept(&mut http).await;
        let mut got = [0u8; 3];
        served.read_exact(&mut got).await.unwrap();
        assert_eq!(
            &got, b"GET",
            "the HTTP side reads the request from its first byte"
        );

        let mut ice = TcpStream::connect(addr).await.unwrap();
        ice.write_all(&[0x00, 0x02, 0x00, 0x01]).await.unwrap();
        let (mut framed, _) = media.accept().await.unwrap();
        let mut got = [0u8; 4];
        framed.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [0x00, 0x02, 0x00, 0x01]);

        let mut garbage = TcpStream::connect(addr).await.unwrap();
        garbage.write_all(b"\x16\x03\x01").await.unwrap();
        let mut buf = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(2), garbage.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "a TLS hello is closed: {closed:?}"
        );
    }
}
