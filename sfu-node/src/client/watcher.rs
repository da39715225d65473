//! A watcher as a page is one: an events socket, then WHEP as that participant; then media
//! in until a deadline. For the process tests, the autoscale end-to-end test and its
//! benchmark, against an origin or a relay alike.

use std::time::{Duration, Instant};

use serde_json::Value;
use str0m::Event;

use super::{ClientPeer, ClientRole, EventSocket, Transport, frame_sent_at};
use crate::{Error, Result};

/// How long a join may wait for the room's welcome (a locked room's host included).
const WELCOME_WITHIN: Duration = Duration::from_secs(10);

/// `HOST:PORT` of a base URL `http://HOST:PORT`.
pub fn host_of(base: &str) -> Result<&str> {
    let host = base
        .strip_prefix("http://")
        .ok_or_else(|| Error::Config(format!("{base:?}: use http://HOST:PORT")))?
        .trim_end_matches('/');
    if host.is_empty() || host.contains('/') {
        return Err(Error::Config(format!("{base:?}: use http://HOST:PORT")));
    }
    Ok(host)
}

/// `http://HOST:PORT[/PREFIX]`: the host, and the path the room's routes sit under (empty at
/// an SFU itself; the control plane's signalling proxy serves one at `/sfu/<server>`).
pub fn split_base(base: &str) -> Result<(&str, &str)> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| Error::Config(format!("{base:?}: use http://HOST:PORT[/PATH]")))?
        .trim_end_matches('/');
    let (host, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if host.is_empty() {
        return Err(Error::Config(format!(
            "{base:?}: use http://HOST:PORT[/PATH]"
        )));
    }
    Ok((host, prefix))
}

/// Counts as last pushed to the watcher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeenCounts {
    pub watching: u64,
    pub on_camera: u64,
}

impl SeenCounts {
    fn from(v: &Value) -> Self {
        SeenCounts {
            watching: v["watching"].as_u64().unwrap_or(0),
            on_camera: v["on_camera"].as_u64().unwrap_or(0),
        }
    }
}

/// What one watcher saw.
#[derive(Debug, Clone, Default)]
pub struct WatchOutcome {
    pub video_frames: u64,
    pub audio_frames: u64,
    /// From the start of the join to the first video frame.
    pub first_frame: Option<Duration>,
    /// The largest gap between consecutive video frames, and from the last frame to the end
    /// of watching (unless the relay closed the socket after asking to reconnect).
    pub max_gap: Duration,
    /// Send-to-receive delay of frames stamped by a publisher in this process
    /// ([`ClientPeer::publish_until`]).
    pub delays: Vec<Duration>,
    /// When a `reconnect` was asked, and why.
    pub reconnect: Option<(Instant, String)>,
    pub counts: SeenCounts,
    /// Whether the events socket was closed by the server.
    pub closed: bool,
    /// Why the media connection stopped before the end, if it failed (a socket or str0m
    /// error): without it a failed client would look like "0 frames, nothing wrong".
    pub failed: Option<String>,
}

#[derive(Debug)]
pub struct Watcher {
    /// The participant id (the origin's, also through a relay).
    pub participant: u64,
    pub events: EventSocket,
    pub peer: ClientPeer,
    started: Instant,
    counts: SeenCounts,
}

impl Watcher {
    /// Join `room` at `base` (`http://HOST:PORT` of an origin or a relay) with a join token:
    /// open the events socket, wait for the welcome, then WHEP with `?participant=` into
    /// `slots` audio and video slot pairs. A refusal is an error carrying its code.
    pub async fn join(base: &str, room: &str, token: &str, slots: usize) -> Result<Watcher> {
        Watcher::join_over(base, room, token, slots, Transport::Udp).await
    }

    /// [`Watcher::join`] with media over `transport`. `base` may carry a path: the room's
    /// SFU behind the control plane's signalling proxy (`http://CONTROL-PLANE/sfu/<server>`).
    pub async fn join_over(
        base: &str,
        room: &str,
        token: &str,
        slots: usize,
        transport: Transport,
    ) -> Result<Watcher> {
        let started = Instant::now();
        let (host, prefix) = split_base(base)?;
        let mut events = EventSocket::connect_url(&format!(
            "ws://{host}{prefix}/rooms/{room}/events?token={token}"
        ))
        .await?;
        let welcome = tokio::time::timeout(WELCOME_WITHIN, async {
            loop {
                match events.next_event().await {
                    Some(v) if v["type"] == "welcome" => return Ok(v),
                    Some(v) if v["type"] == "refused" => {
                        return Err(Error::Io(std::io::Error::other(format!(
                            "refused {}: {}",
                            v["code"].as_str().unwrap_or_default(),
                            v["message"].as_str().unwrap_or_default()
                        ))));
                    }
                    Some(_) => {}
                    None => {
                        return Err(Error::Io(std::io::Error::other(
                            "events socket closed before the welcome",
                        )));
                    }
                }
            }
        })
        .await
        .map_err(|_| Error::Io(std::io::Error::other("no welcome in time")))??;
        let participant = welcome["you"].as_u64().unwrap_or(0);
        let addr = tokio::net::lookup_host(host)
            .await?
            .next()
            .ok_or_else(|| Error::Config(format!("{host} does not resolve")))?;
        let path = format!("{prefix}/rooms/{room}/whep?participant={participant}");
        let role = ClientRole::View { slots };
        let (peer, _) = ClientPeer::connect_over(addr, &path, token, role, transport).await?;
        Ok(Watcher {
            participant,
            events,
            peer,
            started,
            counts: SeenCounts::from(&welcome["counts"]),
        })
    }

    /// Receive media and events until `end`, or until the server closes the events socket
    /// after asking to reconnect, or the peer connection dies.
    pub async fn watch_until(mut self, end: Instant) -> WatchOutcome {
        let mut out = WatchOutcome {
            counts: self.counts,
            ..WatchOutcome::default()
        };
        let mut last_video: Option<Instant> = None;
        let mut events_open = true;
        while Instant::now() < end && self.peer.rtc.is_alive() {
            tokio::select! {
                stepped = self.peer.step(end) => {
                    let events = match stepped {
                        Ok(events) => events,
                        Err(e) => {
                            out.failed = Some(e.to_string());
                            break;
                        }
                    };
                    let now = Instant::now();
                    for e in events {
                        let Event::MediaData(m) = e else { continue };
                        if !m.params.spec().codec.is_video() {
                            out.audio_frames += 1;
                            continue;
                        }
                        out.video_frames += 1;
                        out.first_frame.get_or_insert(now - self.started);
                        if let Some(last) = last_video {
                            out.max_gap = out.max_gap.max(now - last);
                        }
                        last_video = Some(now);
                        if let Some(sent) = frame_sent_at(&m.data)
                            && sent <= now
                            && now - sent < Duration::from_secs(10)
                        {
                            out.delays.push(now - sent);
                        }
                    }
                }
                event = self.events.next_event(), if events_open => match event {
                    Some(v) if v["type"] == "counts" => out.counts = SeenCounts::from(&v),
                    Some(v) if v["type"] == "reconnect" => {
                        let reason = v["reason"].as_str().unwrap_or_default().to_string();
                        out.reconnect = Some((Instant::now(), reason));
                    }
                    Some(_) => {}
                    None => {
                        events_open = false;
                        out.closed = true;
                        if out.reconnect.is_some() {
                            return out;
                        }
                    }
                },
            }
        }
        if let Some(last) = last_video {
            out.max_gap = out.max_gap.max(Instant::now().min(end) - last);
        }
        out
    }
}
