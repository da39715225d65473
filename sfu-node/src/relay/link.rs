//! The relay's link to its origin: one events socket and one WHEP peer as a hidden
//! participant with `grants.relay`, made again whenever either drops.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use super::RelayRequest;
use crate::auth::{Claims, mint};
use crate::client::{EventSocket, host_of, http_request};
use crate::http::ask_core;
use crate::rules::{Grants, ParticipantId};
use crate::{Error, Result};

/// Pause between attempts to reach the origin.
const RETRY: Duration = Duration::from_secs(1);
/// How long the origin has to welcome the relay.
const WELCOME_WITHIN: Duration = Duration::from_secs(10);
/// Lifetime of the relay's own join token (minted again on every attempt).
const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The origin sfu-node, `http://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    host: String,
}

impl Origin {
    pub fn parse(url: &str) -> Result<Origin> {
        Ok(Origin {
            host: host_of(url)?.to_string(),
        })
    }

    /// `HOST:PORT`.
    pub fn host(&self) -> &str {
        &self.host
    }

    async fn addr(&self) -> Result<SocketAddr> {
        tokio::net::lookup_host(&self.host)
            .await?
            .next()
            .ok_or_else(|| Error::Origin(format!("{} does not resolve", self.host)))
    }

    /// Open an events socket at the origin with `token`.
    pub async fn events(&self, room: &str, token: &str) -> Result<EventSocket> {
        EventSocket::connect(&self.host, room, token)
            .await
            .map_err(|e| Error::Origin(e.to_string()))
    }

    /// WHEP at the origin as `participant`; returns the answer.
    async fn whep(
        &self,
        room: &str,
        participant: ParticipantId,
        token: &str,
        offer: &str,
    ) -> Result<String> {
        let path = format!("/rooms/{room}/whep?participant={}", participant.0);
        let auth = format!("Bearer {token}");
        let resp = http_request(
            self.addr().await?,
            "POST",
            &path,
            &[
                ("content-type", "application/sdp"),
                ("authorization", &auth),
            ],
            offer.as_bytes(),
        )
        .await?;
        if resp.status != 201 {
            return Err(Error::Origin(format!(
                "WHEP {}: {}",
                resp.status,
                resp.text()
            )));
        }
        Ok(resp.text())
    }
}

/// The relay's own join token: `sub` `relay:<POD_NAME or HOSTNAME>`, `grants.relay`.
pub fn relay_token(key: &[u8], room: &str) -> String {
    let name = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "relay".into());
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + TOKEN_LIFETIME.as_secs();
    let mut claims = Claims::new(&format!("relay:{name}"), &name, room, exp);
    claims.grants = Grants {
        relay: true,
        ..Grants::default()
    };
    mint(key, &claims)
}

/// Keep the link up for as long as the relay runs.
pub async fn run_link(
    origin: Origin,
    room: String,
    key: Vec<u8>,
    requests: mpsc::Sender<RelayRequest>,
) {
    loop {
        match link_once(&origin, &room, &key, &requests).await {
            Ok(()) => tracing::info!(origin = origin.host(), "upstream closed; reconnecting"),
            Err(e) => tracing::warn!(origin = origin.host(), "upstream: {e}; retrying"),
        }
        if requests.send(RelayRequest::UpstreamLost).await.is_err() {
            return;
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// One life of the link: join, negotiate the upstream peer, then carry the origin's events
/// in until the socket or the peer ends.
async fn link_once(
    origin: &Origin,
    room: &str,
    key: &[u8],
    requests: &mpsc::Sender<RelayRequest>,
) -> Result<()> {
    let token = relay_token(key, room);
    let mut events = origin.events(room, &token).await?;
    let welcome = events.next_of("welcome", WELCOME_WITHIN).await?;
    let you = welcome["you"]
        .as_u64()
        .map(ParticipantId)
        .ok_or_else(|| Error::Origin("welcome without an id".into()))?;
    let _ = requests
        .send(RelayRequest::OriginEvent(welcome.to_string()))
        .await;
    let (closed, mut closed_rx) = oneshot::channel();
    let (reply, rx) = oneshot::channel();
    let start = RelayRequest::StartUpstream {
        relay: you,
        closed,
        reply,
    };
    let offer = ask_core(requests, start, rx).await??;
    let answer = origin.whep(room, you, &token, &offer).await?;
    let (reply, rx) = oneshot::channel();
    ask_core(requests, RelayRequest::UpstreamAnswer { answer, reply }, rx).await??;
    tracing::info!(origin = origin.host(), relay = %you, "upstream negotiated");
    loop {
        tokio::select! {
            text = events.next_text() => match text {
                Some(t) => requests
                    .send(RelayRequest::OriginEvent(t))
                    .await
                    .map_err(|_| Error::RoomGone)?,
                None => return Ok(()),
            },
            _ = &mut closed_rx => {
                events.close().await;
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_http_host_and_port() {
        assert_eq!(
            Origin::parse("http://10.0.0.7:8080/").unwrap().host(),
            "10.0.0.7:8080"
        );
        assert!(Origin::parse("10.0.0.7:8080").is_err());
        assert!(Origin::parse("http://10.0.0.7:8080/rooms").is_err());
    }
}
