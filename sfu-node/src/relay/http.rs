//! A relay's public signalling: the same paths as an origin's ([`crate::http`]).
//!
//! - events: the watcher's socket is proxied to the origin with their own token, both ways;
//!   ids are the origin's; `view` commands stay here; the relay adds `track`/`track_ended`
//!   for its own slots and `reconnect` when it leaves;
//! - WHEP needs `?participant=ID` of an events socket open on this relay, same token subject;
//! - WHIP: `409 {"error":"publish_at_origin"}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware;
use axum::response::Response;
use axum::routing::{delete, get, post};
use tokio::sync::{mpsc, oneshot};

use super::{Origin, RelayRequest};
use crate::auth::TokenVerifier;
use crate::http::{
    ApiError, MediaQuery, answer_response, ask_core, cors, preflight, refusal_event,
    refuse_over_socket, token_of, verify,
};
use crate::http::{limit_frames, send_text};
use crate::media::PeerId;
use crate::rules::{ClientCommand, ParticipantId, Refusal};
use crate::shell::{Outgoing, StatusCell, events_channel};
use crate::{Error, Result};

#[derive(Clone)]
pub struct RelayState {
    pub room: String,
    pub verifier: Arc<TokenVerifier>,
    pub requests: mpsc::Sender<RelayRequest>,
    /// False once leaving: joins are refused at once.
    pub accepting: Arc<AtomicBool>,
    pub status: Arc<StatusCell>,
    /// Watchers this relay serves.
    pub capacity: u32,
    pub origin: Origin,
}

impl std::fmt::Debug for RelayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayState")
            .field("room", &self.room)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

pub fn router(state: RelayState) -> Router {
    let router = Router::new()
        .route("/rooms/{room}/whip", post(whip).options(preflight))
        .route("/rooms/{room}/whep", post(whep).options(preflight))
        .route(
            "/rooms/{room}/peers/{peer}",
            delete(delete_peer).options(preflight),
        )
        .route("/rooms/{room}/events", get(events))
        .layer(middleware::from_fn(cors));
    crate::rejection::layered(router).with_state(state)
}

async fn whip() -> ApiError {
    ApiError::from(Error::PublishAtOrigin)
}

async fn whep(
    State(state): State<RelayState>,
    Path(room): Path<String>,
    Query(q): Query<MediaQuery>,
    headers: HeaderMap,
    offer: String,
) -> Result<Response, ApiError> {
    if let Some(refused) = crate::rejection::refuse_non_sdp(&headers) {
        return Ok(refused);
    }
    let token = token_of(&headers, q.token.as_deref())?;
    let claims = verify(&state.room, &state.verifier, &room, &token)?;
    // Watching through a relay needs its events socket here: that is where the room is.
    let participant = q
        .participant
        .map(ParticipantId)
        .ok_or(Refusal::UnknownParticipant)?;
    let (reply, rx) = oneshot::channel();
    let request = RelayRequest::Watch {
        user: claims.sub,
        participant,
        offer,
        reply,
    };
    let (participant, peer, answer) = ask_core(&state.requests, request, rx).await??;
    Ok(answer_response(&room, participant, peer, answer))
}

async fn delete_peer(
    State(state): State<RelayState>,
    Path((room, peer)): Path<(String, u64)>,
    Query(q): Query<MediaQuery>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let token = token_of(&headers, q.token.as_deref())?;
    let claims = verify(&state.room, &state.verifier, &room, &token)?;
    let (reply, rx) = oneshot::channel();
    let request = RelayRequest::DeletePeer {
        user: claims.sub,
        peer: PeerId(peer),
        reply,
    };
    ask_core(&state.requests, request, rx).await??;
    Ok(StatusCode::OK)
}

async fn events(
    State(state): State<RelayState>,
    Path(room): Path<String>,
    Query(q): Query<MediaQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let token = token_of(&headers, q.token.as_deref())?;
    let claims = verify(&state.room, &state.verifier, &room, &token)?;
    // Refused here at once, before the origin sees a join (the core checks again on join).
    let refused = if !state.accepting.load(Ordering::Relaxed) {
        Some(Refusal::Draining)
    } else if state.status.get().counts.watching >= state.capacity {
        Some(Refusal::RoomFull {
            max: state.capacity,
        })
    } else {
        None
    };
    if let Some(r) = refused {
        return Ok(refuse_over_socket(ws, &ApiError::from(r)));
    }
    Ok(limit_frames(ws).on_upgrade(move |socket| proxy(socket, state, room, token, claims.sub)))
}

/// Pipe a watcher's socket to the origin with their token, until either side closes.
async fn proxy(
    mut socket: WebSocket,
    state: RelayState,
    room: String,
    token: String,
    user: String,
) {
    let mut origin = match state.origin.events(&room, &token).await {
        Ok(o) => o,
        Err(e) => {
            let text = refusal_event(&ApiError::from(e));
            let _ = socket.send(Message::Text(text.into())).await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    };
    let (tx, mut rx) = events_channel();
    let mut me: Option<ParticipantId> = None;
    loop {
        tokio::select! {
            text = origin.next_text() => {
                let Some(text) = text else { break };
                if me.is_none() {
                    match joined(&state, &text, &user, &tx).await {
                        Ok(id) => me = id,
                        Err(refused) => {
                            let text = refusal_event(&refused);
                            let _ = socket.send(Message::Text(text.into())).await;
                            break;
                        }
                    }
                }
                if !send_text(&mut socket, text.to_string()).await {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let view = match (me, serde_json::from_str::<ClientCommand>(&text)) {
                        (Some(participant), Ok(ClientCommand::View { mid, width, height })) => {
                            Some(RelayRequest::SetView { participant, mid, width, height })
                        }
                        _ => None,
                    };
                    match view {
                        Some(request) => {
                            if state.requests.send(request).await.is_err() {
                                break;
                            }
                        }
                        None => {
                            if origin.send_text(text.to_string()).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            out = rx.recv() => match out {
                Some(Outgoing::Event(event)) => {
                    let text = serde_json::to_string(&event).expect("events serialize");
                    if !send_text(&mut socket, text).await {
                        break;
                    }
                }
                Some(Outgoing::Close) | None => break,
            },
        }
    }
    origin.close().await;
    let _ = socket.send(Message::Close(None)).await;
    if let Some(participant) = me {
        let _ = state
            .requests
            .send(RelayRequest::Leave { participant })
            .await;
    }
}

/// If `text` is the origin's welcome, register the watcher here under the origin's id.
async fn joined(
    state: &RelayState,
    text: &str,
    user: &str,
    events: &mpsc::Sender<Outgoing>,
) -> Result<Option<ParticipantId>, ApiError> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return Ok(None);
    };
    let Some(id) = v["you"].as_u64().filter(|_| v["type"] == "welcome") else {
        return Ok(None);
    };
    let participant = ParticipantId(id);
    let (reply, rx) = oneshot::channel();
    let request = RelayRequest::Join {
        participant,
        user: user.to_string(),
        events: events.clone(),
        reply,
    };
    ask_core(&state.requests, request, rx).await??;
    Ok(Some(participant))
}
