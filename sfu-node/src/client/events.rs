//! A room-events WebSocket client: what a page's events socket does. The relay uses it for
//! its link to the origin and for watchers' proxied sockets; the [`super::Watcher`] and tests
//! use it as a page would.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{Error, Result};

fn ws_error(e: tokio_tungstenite::tungstenite::Error) -> Error {
    Error::Io(std::io::Error::other(e))
}

#[derive(Debug)]
pub struct EventSocket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl EventSocket {
    /// Open `ws://{host}/rooms/{room}/events` with a join token; `host` is `HOST:PORT`.
    pub async fn connect(host: &str, room: &str, token: &str) -> Result<EventSocket> {
        Self::connect_url(&format!("ws://{host}/rooms/{room}/events?token={token}")).await
    }

    /// Open an events socket at a full `ws://` URL (through the control plane's signalling
    /// proxy, say, or with `&participant=…&instance=…` to resume).
    pub async fn connect_url(url: &str) -> Result<EventSocket> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(ws_error)?;
        Ok(EventSocket { ws })
    }

    /// The next text message; `None` once the socket has closed.
    pub async fn next_text(&mut self) -> Option<String> {
        loop {
            match self.ws.next().await? {
                Ok(Message::Text(t)) => return Some(t.to_string()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next event, parsed; `None` once the socket has closed.
    pub async fn next_event(&mut self) -> Option<Value> {
        loop {
            let text = self.next_text().await?;
            if let Ok(v) = serde_json::from_str(&text) {
                return Some(v);
            }
        }
    }

    /// The next event of type `ty` within `within`, skipping others.
    pub async fn next_of(&mut self, ty: &str, within: Duration) -> Result<Value> {
        let wait = async {
            loop {
                match self.next_event().await {
                    Some(v) if v["type"] == ty => return Ok(v),
                    Some(_) => {}
                    None => {
                        return Err(Error::Io(std::io::Error::other(format!(
                            "events socket closed before a {ty} event"
                        ))));
                    }
                }
            }
        };
        tokio::time::timeout(within, wait).await.map_err(|_| {
            Error::Io(std::io::Error::other(format!(
                "no {ty} event within {within:?}"
            )))
        })?
    }

    pub async fn send_text(&mut self, text: String) -> Result<()> {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .map_err(ws_error)
    }

    pub async fn send(&mut self, command: &Value) -> Result<()> {
        self.send_text(command.to_string()).await
    }

    pub async fn close(&mut self) {
        let _ = self.ws.close(None).await;
    }
}
