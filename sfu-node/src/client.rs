//! A str0m client peer over a real UDP socket (or, as an attendee without UDP, over ICE-TCP
//! to the server's media port), plus a minimal HTTP/1.1 client for the signalling endpoints. Process tests and the load generator use it; it is what a
//! WHIP/WHEP client of this server looks like with str0m.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{
    Direction, Frequency, MediaKind, MediaTime, Mid, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive, TcpType, Transmit};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, UdpSocket};

use crate::ice_tcp::framing::{self, Decoder};

use crate::{Error, Result};

mod events;
mod watcher;
pub use events::EventSocket;
pub use watcher::{SeenCounts, WatchOutcome, Watcher, host_of};

/// An HTTP response, read whole.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One HTTP/1.1 request with `Connection: close`.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| Error::Io(std::io::Error::other("no HTTP header end")))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Io(std::io::Error::other("bad status line")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..end]).trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < end + 2 + size {
            break;
        }
        out.extend_from_slice(&b[end + 2..end + 2 + size]);
        b = &b[(end + 4 + size).min(b.len())..];
    }
    out
}

/// Every ICE candidate of an SDP (offer or answer), in order.
pub fn sdp_candidates(sdp: &str) -> Vec<Candidate> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a="))
        .filter(|l| l.starts_with("candidate:"))
        .filter_map(|l| Candidate::from_sdp_string(l).ok())
        .collect()
}

/// The address of the first `tcptype passive` candidate of an SDP answer.
pub fn passive_tcp_candidate(sdp: &str) -> Option<SocketAddr> {
    sdp_candidates(sdp)
        .into_iter()
        .find(|c| c.proto() == Protocol::Tcp && c.tcptype() == Some(TcpType::Passive))
        .map(|c| c.addr())
}

/// What a client peer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRole {
    /// Send one audio and one video track; video with three simulcast layers `q`, `h`, `f`.
    Publish { simulcast: bool },
    /// Receive into this many audio and video slots.
    View { slots: usize },
}

/// Simulcast layers the client sends, lowest first, with frame sizes at 30 fps.
pub const LAYERS: [(&str, usize); 3] = [("q", 250), ("h", 900), ("f", 3_000)];

/// A process-wide epoch so publishers can stamp frames and viewers measure delay.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A fake VP8 frame: the payload header (keyframe or not), the send time, filler.
pub fn stamped_vp8_frame(key: bool, sent: Instant, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size.max(9));
    v.push(if key { 0x10 } else { 0x11 });
    let nanos = sent.saturating_duration_since(epoch()).as_nanos() as u64;
    v.extend_from_slice(&nanos.to_be_bytes());
    v.resize(size.max(9), 0x5A);
    v
}

/// When a stamped frame was sent, if it is one.
pub fn frame_sent_at(data: &[u8]) -> Option<Instant> {
    let nanos = u64::from_be_bytes(data.get(1..9)?.try_into().ok()?);
    Some(epoch() + Duration::from_nanos(nanos))
}

/// How a client peer's media travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A UDP socket with a host candidate.
    Udp,
    /// No UDP at all: after the answer, a TCP connection to the server's passive ICE-TCP
    /// candidate, announced as an active TCP host candidate (RFC 6544).
    Tcp,
}

/// The TCP connection of a [`Transport::Tcp`] peer.
#[derive(Debug)]
struct TcpPath {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    /// The server's end: where packets come from.
    remote: SocketAddr,
    decoder: Decoder,
}

#[derive(Debug)]
pub struct ClientPeer {
    pub rtc: Rtc,
    /// The UDP socket (unused, and named in no candidate, with [`Transport::Tcp`]).
    pub socket: UdpSocket,
    /// The address of the local candidate: the UDP socket's, or the TCP connection's.
    pub local: SocketAddr,
    tcp: Option<TcpPath>,
    pub mids: Vec<Mid>,
    /// `Location` of this peer on the server.
    pub location: String,
    pub participant: u64,
    buf: Vec<u8>,
}

impl ClientPeer {
    /// Offer over WHIP or WHEP and apply the answer.
    pub async fn connect(
        http: SocketAddr,
        path_and_query: &str,
        token: &str,
        role: ClientRole,
    ) -> Result<(ClientPeer, HttpResponse)> {
        Self::connect_over(http, path_and_query, token, role, Transport::Udp).await
    }

    /// Hang up as a page does when it leaves: the WHIP/WHEP `DELETE` of this peer, at the
    /// signalling address `http` it connected to. The room ends the peer at once rather than
    /// after its silence timeout (a publisher leaves the screen). Returns the server's
    /// response (404 once the peer is gone).
    pub async fn hang_up(&self, http: SocketAddr, token: &str) -> Result<HttpResponse> {
        let auth = format!("Bearer {token}");
        http_request(
            http,
            "DELETE",
            &self.location,
            &[("authorization", &auth)],
            b"",
        )
        .await
    }

    /// [`ClientPeer::connect`] with media over `transport`.
    pub async fn connect_over(
        http: SocketAddr,
        path_and_query: &str,
        token: &str,
        role: ClientRole,
        transport: Transport,
    ) -> Result<(ClientPeer, HttpResponse)> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let mut local = socket.local_addr()?;
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(Instant::now());
        if transport == Transport::Udp {
            let candidate = Candidate::host(local, "udp").map_err(|e| Error::Sdp(e.to_string()))?;
            rtc.add_local_candidate(candidate);
        }
        let mut api = rtc.sdp_api();
        let mut mids = Vec::new();
        match role {
            ClientRole::Publish { simulcast } => {
                mids.push(api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
                let sim = simulcast.then(|| {
                    let mut s = Simulcast::new();
                    for (rid, _) in LAYERS {
                        s.add_send_layer(SimulcastLayer::new(rid));
                    }
                    s
                });
                mids.push(api.add_media(MediaKind::Video, Direction::SendOnly, None, None, sim));
            }
            ClientRole::View { slots } => {
                for _ in 0..slots {
                    mids.push(api.add_media(
                        MediaKind::Audio,
                        Direction::RecvOnly,
                        None,
                        None,
                        None,
                    ));
                    mids.push(api.add_media(
                        MediaKind::Video,
                        Direction::RecvOnly,
                        None,
                        None,
                        None,
                    ));
                }
            }
        }
        let (offer, pending) = api.apply().expect("media was added");
        let auth = format!("Bearer {token}");
        let resp = http_request(
            http,
            "POST",
            path_and_query,
            &[
                ("content-type", "application/sdp"),
                ("authorization", &auth),
            ],
            offer.to_sdp_string().as_bytes(),
        )
        .await?;
        if resp.status != 201 {
            return Err(Error::Sdp(format!("{} {}", resp.status, resp.text())));
        }
        let answer =
            SdpAnswer::from_sdp_string(&resp.text()).map_err(|e| Error::Sdp(e.to_string()))?;
        rtc.sdp_api().accept_answer(pending, answer)?;
        let tcp = match transport {
            Transport::Udp => None,
            Transport::Tcp => {
                let server = passive_tcp_candidate(&resp.text()).ok_or_else(|| {
                    Error::Sdp("the answer offers no passive TCP candidate".into())
                })?;
                let stream = TcpStream::connect(server).await?;
                stream.set_nodelay(true)?;
                local = stream.local_addr()?;
                let candidate = Candidate::builder()
                    .tcp()
                    .host(local)
                    .tcptype(TcpType::Active)
                    .build()
                    .map_err(|e| Error::Sdp(e.to_string()))?;
                rtc.add_local_candidate(candidate);
                let (read, write) = stream.into_split();
                Some(TcpPath {
                    read,
                    write,
                    remote: server,
                    decoder: Decoder::default(),
                })
            }
        };
        let participant = resp
            .header("x-participant")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let location = resp.header("location").unwrap_or_default().to_string();
        Ok((
            ClientPeer {
                rtc,
                socket,
                local,
                mids,
                location,
                participant,
                tcp,
                buf: vec![0; 16 * 1024],
            },
            resp,
        ))
    }

    /// Drive the connection until `until` or until events arrive; returns the events.
    pub async fn step(&mut self, until: Instant) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        loop {
            let timeout = loop {
                match self.rtc.poll_output()? {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => self.transmit(&t).await?,
                    Output::Event(e) => events.push(e),
                }
            };
            let now = Instant::now();
            if !events.is_empty() || now >= until || !self.rtc.is_alive() {
                return Ok(events);
            }
            let wake = timeout.min(until).max(now);
            if let Some(tcp) = &mut self.tcp {
                tokio::select! {
                    r = tcp.read.read(&mut self.buf) => {
                        let n = r?;
                        if n == 0 {
                            return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
                        }
                        tcp.decoder.push(&self.buf[..n]);
                        while let Some(packet) = tcp.decoder.next_frame()
                            .map_err(|e| Error::Io(std::io::Error::other(e)))?
                        {
                            let Ok(contents) = packet.as_slice().try_into() else { continue };
                            self.rtc.handle_input(Input::Receive(Instant::now(), Receive {
                                proto: Protocol::Tcp,
                                source: tcp.remote,
                                destination: self.local,
                                contents,
                            }))?;
                        }
                    }
                    _ = tokio::time::sleep_until(wake.into()) => {
                        self.rtc.handle_input(Input::Timeout(Instant::now()))?;
                    }
                }
                continue;
            }
            tokio::select! {
                r = self.socket.recv_from(&mut self.buf) => {
                    let (n, source) = r?;
                    let Ok(contents) = self.buf[..n].try_into() else { continue };
                    self.rtc.handle_input(Input::Receive(Instant::now(), Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: self.local,
                        contents,
                    }))?;
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    self.rtc.handle_input(Input::Timeout(Instant::now()))?;
                }
            }
        }
    }

    /// Send one packet str0m made, over the UDP socket or framed on the TCP connection.
    async fn transmit(&mut self, t: &Transmit) -> Result<()> {
        match (&mut self.tcp, t.proto) {
            (Some(tcp), Protocol::Tcp) if t.destination == tcp.remote => {
                let mut framed = Vec::with_capacity(t.contents.len() + 2);
                framing::encode(&t.contents, &mut framed);
                tcp.write.write_all(&framed).await?;
            }
            // Checks towards candidates it has no way to reach (a TCP peer's UDP pairs).
            (Some(_), _) => {}
            (None, _) => {
                self.socket.send_to(&t.contents, t.destination).await?;
            }
        }
        Ok(())
    }

    /// Publish one video frame per layer (or one without simulcast), stamped with `now`.
    pub fn send_video(
        &mut self,
        now: Instant,
        frame: u64,
        key: bool,
        simulcast: bool,
    ) -> Result<()> {
        let mid = self.mids[1];
        let Some(pt) = self.pt(mid, Codec::Vp8) else {
            return Ok(());
        };
        let time = MediaTime::new(frame * 3000, Frequency::NINETY_KHZ);
        if simulcast {
            for (rid, size) in LAYERS {
                let data = stamped_vp8_frame(key, now, size);
                let rid: Rid = rid.into();
                if let Some(w) = self.rtc.writer(mid) {
                    w.rid(rid).write(pt, now, time, data)?;
                }
            }
        } else if let Some(w) = self.rtc.writer(mid) {
            w.write(pt, now, time, stamped_vp8_frame(key, now, LAYERS[1].1))?;
        }
        Ok(())
    }

    /// Publish synthetic media until `end` or until the connection closes or breaks: 30 fps
    /// video (a keyframe every 5 s and whenever the SFU asks for one) and 50 fps Opus.
    /// Returns the video frames sent; only a frame that cannot be written is an error.
    pub async fn publish_until(&mut self, end: Instant, simulcast: bool) -> Result<u64> {
        let (mut frame, mut audio) = (0u64, 0u64);
        let (mut next_v, mut next_a) = (Instant::now(), Instant::now());
        let mut want_key = true;
        loop {
            let now = Instant::now();
            if now >= end || !self.rtc.is_alive() {
                return Ok(frame);
            }
            if self.rtc.is_connected() {
                if now >= next_v {
                    self.send_video(now, frame, want_key || frame % 150 == 0, simulcast)?;
                    want_key = false;
                    frame += 1;
                    next_v += Duration::from_millis(33);
                }
                if now >= next_a {
                    self.send_audio(now, audio)?;
                    audio += 1;
                    next_a += Duration::from_millis(20);
                }
            }
            let until = next_v
                .min(next_a)
                .min(end)
                .max(now + Duration::from_millis(1));
            let Ok(events) = self.step(until).await else {
                return Ok(frame);
            };
            want_key |= events
                .iter()
                .any(|e| matches!(e, Event::KeyframeRequest(_)));
        }
    }

    /// Publish one 20 ms Opus frame.
    pub fn send_audio(&mut self, now: Instant, frame: u64) -> Result<()> {
        let mid = self.mids[0];
        let Some(pt) = self.pt(mid, Codec::Opus) else {
            return Ok(());
        };
        let time = MediaTime::new(frame * 960, Frequency::FORTY_EIGHT_KHZ);
        if let Some(w) = self.rtc.writer(mid) {
            w.write(pt, now, time, vec![0xAB; 80])?;
        }
        Ok(())
    }

    /// Publish one encoded frame: VP8 (90 kHz RTP clock) on the video track or Opus (48 kHz)
    /// on the audio track, at RTP time `rtp_time`.
    pub fn send_encoded(
        &mut self,
        now: Instant,
        kind: MediaKind,
        rtp_time: u64,
        data: Vec<u8>,
    ) -> Result<()> {
        let (mid, codec, clock) = match kind {
            MediaKind::Audio => (self.mids[0], Codec::Opus, Frequency::FORTY_EIGHT_KHZ),
            MediaKind::Video => (self.mids[1], Codec::Vp8, Frequency::NINETY_KHZ),
        };
        let Some(pt) = self.pt(mid, codec) else {
            return Ok(());
        };
        if let Some(w) = self.rtc.writer(mid) {
            w.write(pt, now, MediaTime::new(rtp_time, clock), data)?;
        }
        Ok(())
    }

    fn pt(&mut self, mid: Mid, codec: Codec) -> Option<str0m::media::Pt> {
        self.rtc
            .writer(mid)?
            .payload_params()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
    }
}
