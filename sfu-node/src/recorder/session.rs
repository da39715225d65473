//! The recorder's connection to its room: the events WebSocket (who is on camera, which
//! track is whose) and one WHEP peer with a receive slot per possible person on camera.
//! The peer runs on its own task and hands media over a channel.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use str0m::Event;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::manifest::TrackKind;
use crate::auth::{Claims, mint};
use crate::client::{ClientPeer, ClientRole, http_request};
use crate::config::MAX_ON_CAMERA;
use crate::{Error, Result};

/// The recorder's identity in the room.
pub const RECORDER_USER: &str = "roundtable-recorder";
/// How long a recorder's join token is valid; it is only checked when joining.
const TOKEN_LIFETIME_S: u64 = 24 * 3600;

/// What the room tells the recorder, reduced to what recording needs.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomEvent {
    /// People on camera now (the recorder itself is never counted).
    OnCamera(u32),
    /// A person's name label, when they go on camera.
    Name {
        participant: u64,
        name: String,
    },
    /// `mid` of the recorder's peer now carries `participant`'s `kind` track.
    Track {
        mid: String,
        participant: u64,
        kind: TrackKind,
    },
    TrackEnded {
        mid: String,
    },
    /// The room stops: finish once nobody is on camera.
    Draining,
}

/// One media frame or packet received.
#[derive(Debug)]
pub struct Media {
    pub mid: String,
    pub rtp_time: u64,
    pub data: std::sync::Arc<[u8]>,
}

/// Parse one events-channel message into what the recorder acts on.
pub fn parse_event(text: &str) -> Vec<RoomEvent> {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    let num = |v: &Value| v.as_u64();
    let name_of = |p: &Value| -> Option<RoomEvent> {
        Some(RoomEvent::Name {
            participant: num(&p["id"])?,
            name: p["profile"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        })
    };
    match v["type"].as_str() {
        Some("welcome") => {
            let mut out: Vec<RoomEvent> = v["on_camera"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(name_of)
                .collect();
            if let Some(n) = num(&v["counts"]["on_camera"]) {
                out.push(RoomEvent::OnCamera(n as u32));
            }
            out
        }
        Some("counts") => num(&v["on_camera"])
            .map(|n| RoomEvent::OnCamera(n as u32))
            .into_iter()
            .collect(),
        Some("on_camera") => name_of(&v["participant"]).into_iter().collect(),
        Some("track") => {
            let kind = match v["kind"].as_str() {
                Some("audio") => TrackKind::Audio,
                Some("video") => TrackKind::Video,
                _ => return Vec::new(),
            };
            match (v["mid"].as_str(), num(&v["participant"])) {
                (Some(mid), Some(participant)) => vec![RoomEvent::Track {
                    mid: mid.to_string(),
                    participant,
                    kind,
                }],
                _ => Vec::new(),
            }
        }
        Some("track_ended") => v["mid"]
            .as_str()
            .map(|mid| RoomEvent::TrackEnded {
                mid: mid.to_string(),
            })
            .into_iter()
            .collect(),
        Some("draining") => vec![RoomEvent::Draining],
        _ => Vec::new(),
    }
}

/// A recorder join token for `room`, signed with the room's key.
pub fn recorder_token(key: &[u8], room: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut claims = Claims::new(RECORDER_USER, "Recorder", room, now + TOKEN_LIFETIME_S);
    claims.grants.watch = false;
    claims.grants.recorder = true;
    mint(key, &claims)
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The room's events channel.
#[derive(Debug)]
pub struct Events {
    ws: Ws,
}

impl Events {
    /// The next events from the room; `None` once the channel has closed.
    pub async fn next(&mut self) -> Option<Vec<RoomEvent>> {
        loop {
            match self.ws.next().await? {
                Ok(Message::Text(text)) => return Some(parse_event(&text)),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

/// A live connection to the room.
#[derive(Debug)]
pub struct Connection {
    pub events: Events,
    pub media: mpsc::Receiver<Media>,
    peer_task: JoinHandle<()>,
    http: SocketAddr,
    location: String,
    token: String,
    /// Events that arrived while joining.
    pub early: Vec<RoomEvent>,
}

impl Connection {
    /// Join `room` on the SFU at `http` as a hidden recorder.
    pub async fn open(http: SocketAddr, room: &str, key: &[u8]) -> Result<Connection> {
        let token = recorder_token(key, room);
        let url = format!("ws://{http}/rooms/{room}/events?token={token}");
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| Error::Recorder(format!("events channel of {room} at {http}: {e}")))?;
        // The welcome names our participant id; the WHEP peer joins as the same participant.
        let mut early = Vec::new();
        let you = loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .map_err(|_| Error::Recorder("no welcome from the room".into()))?;
            let Some(Ok(Message::Text(text))) = msg else {
                return Err(Error::Recorder("the room closed the events channel".into()));
            };
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            early.extend(parse_event(&text));
            if v["type"] == "welcome" {
                break v["you"].as_u64().unwrap_or(0);
            }
        };
        let path = format!("/rooms/{room}/whep?participant={you}");
        let role = ClientRole::View {
            slots: MAX_ON_CAMERA as usize,
        };
        let (peer, _) = ClientPeer::connect(http, &path, &token, role).await?;
        let location = peer.location.clone();
        let (tx, media) = mpsc::channel(1024);
        let peer_task = tokio::spawn(drive_peer(peer, tx));
        Ok(Connection {
            events: Events { ws },
            media,
            peer_task,
            http,
            location,
            token,
            early,
        })
    }

    /// Leave the room: end the peer connection and close the events channel.
    pub async fn leave(mut self) {
        self.peer_task.abort();
        let auth = format!("Bearer {}", self.token);
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            http_request(
                self.http,
                "DELETE",
                &self.location,
                &[("authorization", &auth)],
                b"",
            ),
        )
        .await;
        let _ = self.events.ws.send(Message::Close(None)).await;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.peer_task.abort();
    }
}

async fn drive_peer(mut peer: ClientPeer, tx: mpsc::Sender<Media>) {
    loop {
        let events = match peer.step(Instant::now() + Duration::from_millis(200)).await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!("recorder peer: {e}");
                return;
            }
        };
        for event in events {
            if let Event::MediaData(data) = event {
                let media = Media {
                    mid: data.mid.to_string(),
                    rtp_time: data.time.numer(),
                    data: data.data,
                };
                if tx.send(media).await.is_err() {
                    return;
                }
            }
        }
        if !peer.rtc.is_alive() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_events_are_read_from_the_sfu_protocol() {
        let welcome = r#"{"type":"welcome","you":4,"room":"r","kind":"session","share_policy":"open",
            "theme":"meeting","locked":false,"state":"watching",
            "counts":{"watching":3,"on_camera":2,"screen_share_available":true},
            "on_camera":[{"id":1,"profile":{"name":"Ada"}},{"id":2,"profile":{"name":"Bo"}}],
            "chat":[],"broadcasting":false,"share_requests":[],"join_requests":[]}"#;
        assert_eq!(
            parse_event(welcome),
            vec![
                RoomEvent::Name {
                    participant: 1,
                    name: "Ada".into()
                },
                RoomEvent::Name {
                    participant: 2,
                    name: "Bo".into()
                },
                RoomEvent::OnCamera(2),
            ]
        );
        assert_eq!(
            parse_event(
                r#"{"type":"counts","watching":1,"on_camera":0,"screen_share_available":true}"#
            ),
            vec![RoomEvent::OnCamera(0)]
        );
        assert_eq!(
            parse_event(
                r#"{"type":"track","mid":"3","participant":2,"kind":"video","source":"camera"}"#
            ),
            vec![RoomEvent::Track {
                mid: "3".into(),
                participant: 2,
                kind: TrackKind::Video
            }]
        );
        assert_eq!(
            parse_event(r#"{"type":"draining","grace_ms":1000}"#),
            vec![RoomEvent::Draining]
        );
        assert!(parse_event(r#"{"type":"chat","text":"hi"}"#).is_empty());
    }
}
