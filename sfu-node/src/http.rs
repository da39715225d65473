//! Public signalling: WHIP/WHEP-shaped SDP offer/answer and the room-events WebSocket.
//!
//! - `POST /rooms/{room}/whip[?participant=ID&source=camera|screen]` — body `application/sdp`
//!   offer, `201 Created` with the answer, `Location` of the peer and `X-Participant`.
//! - `POST /rooms/{room}/whep[?participant=ID]` — the same for watching; the offer's
//!   receive-only m-lines are the slots the room fills with publishers' tracks.
//! - `DELETE /rooms/{room}/peers/{peer}` — end one peer connection.
//! - `GET /rooms/{room}/events?token=JWT` — WebSocket of [`ServerEvent`]s and
//!   [`ClientCommand`]s as JSON text frames.
//!
//! Every request carries a join token: `Authorization: Bearer JWT` or `?token=JWT`.
//! Errors are JSON `{"error": code, "message": text}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::auth::{Claims, TokenVerifier};
use crate::media::{PeerId, Source};
use crate::rules::{ClientCommand, ParticipantId, Refusal};
use crate::shell::{Outgoing, RoomRequest, SEND_TIMEOUT, events_channel};
use crate::{Error, Result};

#[derive(Clone)]
pub struct AppState {
    pub room: String,
    pub verifier: Arc<TokenVerifier>,
    pub requests: mpsc::Sender<RoomRequest>,
    /// False once draining: new joins are refused before they reach the room.
    pub accepting: Arc<AtomicBool>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("room", &self.room)
            .finish()
    }
}

pub fn router(state: AppState) -> Router {
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

/// Browsers load the web client from the control plane's origin, not this one.
pub(crate) async fn cors(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, DELETE, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("location, x-participant"),
    );
    response
}

pub(crate) async fn preflight() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// The one error type handlers return; clients get a clear JSON body.
#[derive(Debug)]
pub struct ApiError(Error);

impl<E: Into<Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl ApiError {
    /// The HTTP status and the stable error code clients read.
    fn parts(&self) -> (StatusCode, &'static str) {
        match &self.0 {
            Error::Token(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            Error::WrongRoom { .. } => (StatusCode::FORBIDDEN, "wrong_room"),
            Error::Refused(r) => (refusal_status(r), r.code()),
            Error::Sdp(_) | Error::Rtc(_) => (StatusCode::BAD_REQUEST, "bad_offer"),
            Error::UnknownPeer => (StatusCode::NOT_FOUND, "unknown_peer"),
            Error::Config(_) => (StatusCode::NOT_FOUND, "no_such_room"),
            Error::RoomGone => (StatusCode::SERVICE_UNAVAILABLE, "room_gone"),
            Error::Io(_) | Error::Recorder(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            Error::PublishAtOrigin => (StatusCode::CONFLICT, "publish_at_origin"),
            Error::Origin(_) => (StatusCode::BAD_GATEWAY, "origin_unreachable"),
        }
    }
}

impl ApiError {
    /// What the client is told: the refusal's sentence, or for failures inside (WebRTC
    /// negotiation, I/O, the recorder) a fixed sentence; their details go to the log only.
    fn message(&self) -> String {
        match &self.0 {
            Error::Rtc(_) => "the offer could not be negotiated: send a WebRTC SDP offer".into(),
            Error::Io(_) | Error::Recorder(_) => "something went wrong on the server".into(),
            other => other.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        if status.is_server_error() {
            tracing::warn!("request failed: {}", self.0);
        } else if matches!(self.0, Error::Rtc(_)) {
            tracing::info!("offer refused: {}", self.0);
        }
        let body = serde_json::json!({ "error": code, "message": self.message() });
        (status, Json(body)).into_response()
    }
}

fn refusal_status(r: &Refusal) -> StatusCode {
    match r {
        Refusal::RoomFull { .. }
        | Refusal::CameraFull { .. }
        | Refusal::ScreenShareFull { .. }
        | Refusal::LobbyFull { .. }
        | Refusal::AlreadyWaiting => StatusCode::CONFLICT,
        Refusal::TooManyJoins { .. } | Refusal::ChatTooFast { .. } => StatusCode::TOO_MANY_REQUESTS,
        Refusal::Draining => StatusCode::SERVICE_UNAVAILABLE,
        Refusal::UnknownParticipant => StatusCode::NOT_FOUND,
        _ => StatusCode::FORBIDDEN,
    }
}

#[derive(Debug, Deserialize)]
pub struct MediaQuery {
    pub(crate) token: Option<String>,
    pub(crate) participant: Option<u64>,
    pub(crate) source: Option<String>,
    /// Events socket: with `participant`, resume that participant of this run of the room
    /// (the `instance` its welcome gave) instead of joining anew.
    pub(crate) instance: Option<u64>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The join token of a request: `Authorization: Bearer` or `?token=`.
pub(crate) fn token_of(headers: &HeaderMap, query_token: Option<&str>) -> Result<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer
        .or(query_token)
        .map(str::to_string)
        .ok_or_else(|| Error::Token("missing: send Authorization: Bearer <join token>".into()))
}

fn authenticate(
    state: &AppState,
    room: &str,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Result<Claims> {
    let token = token_of(headers, query_token)?;
    verify(&state.room, &state.verifier, room, &token)
}

/// Check a request for `room` on a server of room `served` carries a valid token for it.
pub(crate) fn verify(
    served: &str,
    verifier: &TokenVerifier,
    room: &str,
    token: &str,
) -> Result<Claims> {
    if room != served {
        return Err(Error::Config(format!("this server serves room {served:?}")));
    }
    let claims = verifier.verify(token, now_unix())?;
    if !claims.grants.enters() {
        return Err(Refusal::NotAllowed.into());
    }
    Ok(claims)
}

async fn ask<T>(state: &AppState, request: RoomRequest, reply: oneshot::Receiver<T>) -> Result<T> {
    ask_core(&state.requests, request, reply).await
}

/// Send a request to the task owning the core and wait for its reply.
pub(crate) async fn ask_core<R, T>(
    requests: &mpsc::Sender<R>,
    request: R,
    reply: oneshot::Receiver<T>,
) -> Result<T> {
    requests.send(request).await.map_err(|_| Error::RoomGone)?;
    reply.await.map_err(|_| Error::RoomGone)
}

pub(crate) fn answer_response(
    room: &str,
    participant: ParticipantId,
    peer: PeerId,
    sdp: String,
) -> Response {
    let location = format!("/rooms/{room}/peers/{}", peer.0);
    (
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_string()),
            (header::LOCATION, location),
            (
                header::HeaderName::from_static("x-participant"),
                participant.0.to_string(),
            ),
        ],
        sdp,
    )
        .into_response()
}

fn check_accepting(state: &AppState, participant: Option<u64>) -> Result<()> {
    // Peers of people already in may still be added while draining; new joins may not.
    if participant.is_none() && !state.accepting.load(Ordering::Relaxed) {
        return Err(Refusal::Draining.into());
    }
    Ok(())
}

async fn whip(
    State(state): State<AppState>,
    Path(room): Path<String>,
    Query(q): Query<MediaQuery>,
    headers: HeaderMap,
    offer: String,
) -> Result<Response, ApiError> {
    if let Some(refused) = crate::rejection::refuse_non_sdp(&headers) {
        return Ok(refused);
    }
    let claims = authenticate(&state, &room, &headers, q.token.as_deref())?;
    check_accepting(&state, q.participant)?;
    let source = match q.source.as_deref() {
        None | Some("camera") => Source::Camera,
        Some("screen") => Source::Screen,
        Some(other) => {
            return Err(Error::Sdp(format!("unknown source {other:?}: camera or screen")).into());
        }
    };
    let (reply, rx) = oneshot::channel();
    let request = RoomRequest::Publish {
        identity: claims.identity(),
        participant: q.participant.map(ParticipantId),
        source,
        offer,
        reply,
    };
    let (participant, peer, answer) = ask(&state, request, rx).await??;
    Ok(answer_response(&room, participant, peer, answer))
}

async fn whep(
    State(state): State<AppState>,
    Path(room): Path<String>,
    Query(q): Query<MediaQuery>,
    headers: HeaderMap,
    offer: String,
) -> Result<Response, ApiError> {
    if let Some(refused) = crate::rejection::refuse_non_sdp(&headers) {
        return Ok(refused);
    }
    let claims = authenticate(&state, &room, &headers, q.token.as_deref())?;
    check_accepting(&state, q.participant)?;
    let (reply, rx) = oneshot::channel();
    let request = RoomRequest::View {
        identity: claims.identity(),
        participant: q.participant.map(ParticipantId),
        offer,
        reply,
    };
    let (participant, peer, answer) = ask(&state, request, rx).await??;
    Ok(answer_response(&room, participant, peer, answer))
}

async fn delete_peer(
    State(state): State<AppState>,
    Path((room, peer)): Path<(String, u64)>,
    Query(q): Query<MediaQuery>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let claims = authenticate(&state, &room, &headers, q.token.as_deref())?;
    let (reply, rx) = oneshot::channel();
    let request = RoomRequest::DeletePeer {
        user: claims.sub,
        peer: PeerId(peer),
        reply,
    };
    ask(&state, request, rx).await??;
    Ok(StatusCode::OK)
}

async fn events(
    State(state): State<AppState>,
    Path(room): Path<String>,
    Query(q): Query<MediaQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    // A bad token is refused before the upgrade (401/403); the room's own refusals (full,
    // draining, not allowed) are told over the socket, because a browser cannot read the
    // body of a refused upgrade and the page should show the room's sentence.
    let claims = authenticate(&state, &room, &headers, q.token.as_deref())?;
    // A resume brings back someone already in, so a draining room takes it.
    let resume = q
        .participant
        .zip(q.instance)
        .map(|(p, i)| (ParticipantId(p), i));
    let admitted = async {
        check_accepting(&state, resume.map(|(p, _)| p.0))?;
        let (tx, rx) = events_channel();
        let weak = tx.downgrade();
        let (reply, reply_rx) = oneshot::channel();
        let request = RoomRequest::Connect {
            identity: claims.identity(),
            resume,
            events: tx,
            reply,
        };
        let participant = ask(&state, request, reply_rx).await??;
        Ok::<_, ApiError>((participant, rx, weak))
    }
    .await;
    let (participant, rx, weak) = match admitted {
        Ok(admitted) => admitted,
        Err(refused) => return Ok(refuse_over_socket(ws, &refused)),
    };
    let requests = state.requests.clone();
    let failed = state.requests.clone();
    let failed_weak = weak.clone();
    Ok(limit_frames(ws)
        .on_failed_upgrade(move |_| {
            let _ = failed.try_send(RoomRequest::Disconnect {
                participant,
                events: failed_weak,
            });
        })
        .on_upgrade(move |socket| event_loop(socket, participant, rx, weak, requests)))
}

/// The largest command a client sends: a chat message of [`crate::rules::MAX_CHAT_CHARS`]
/// characters (up to 4 bytes each) in its JSON. Longer frames and messages end the socket
/// before they are buffered.
pub const MAX_COMMAND_BYTES: usize = 16 * 1024;

/// An events socket that refuses frames and messages over [`MAX_COMMAND_BYTES`].
pub(crate) fn limit_frames(ws: WebSocketUpgrade) -> WebSocketUpgrade {
    ws.max_message_size(MAX_COMMAND_BYTES)
        .max_frame_size(MAX_COMMAND_BYTES)
}

/// Writes a text message; false when the socket is gone or has not taken it within
/// [`SEND_TIMEOUT`] (the peer stopped reading).
pub(crate) async fn send_text(socket: &mut WebSocket, text: String) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into()))).await,
        Ok(Ok(()))
    )
}

/// Accept the upgrade only to tell the refusal (a `refused` event) and close.
pub(crate) fn refuse_over_socket(ws: WebSocketUpgrade, refused: &ApiError) -> Response {
    let text = refusal_event(refused);
    ws.on_upgrade(move |mut socket| async move {
        let _ = socket.send(Message::Text(text.into())).await;
        let _ = socket.send(Message::Close(None)).await;
    })
}

/// The `refused` event for an error, with its HTTP status and stable code.
pub(crate) fn refusal_event(refused: &ApiError) -> String {
    let (status, code) = refused.parts();
    serde_json::json!({
        "type": "refused",
        "code": code,
        "status": status.as_u16(),
        "message": refused.message(),
    })
    .to_string()
}

async fn event_loop(
    mut socket: WebSocket,
    participant: ParticipantId,
    mut events: mpsc::Receiver<Outgoing>,
    sender: mpsc::WeakSender<Outgoing>,
    requests: mpsc::Sender<RoomRequest>,
) {
    loop {
        tokio::select! {
            out = events.recv() => match out {
                Some(Outgoing::Event(event)) => {
                    let text = serde_json::to_string(&event).expect("events serialize");
                    if !send_text(&mut socket, text).await {
                        break;
                    }
                }
                Some(Outgoing::Close) | None => {
                    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Close(None))).await;
                    return;
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    match serde_json::from_str::<ClientCommand>(&text) {
                        Ok(command) => {
                            let request = RoomRequest::Command { participant, command };
                            if requests.send(request).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let body = serde_json::json!({
                                "type": "refused", "code": "bad_command",
                                "message": format!("not a command: {e}"),
                            });
                            if !send_text(&mut socket, body.to_string()).await {
                                break;
                            }
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = requests
        .send(RoomRequest::Disconnect {
            participant,
            events: sender,
        })
        .await;
}
