//! The event-wide chat: a WebSocket per attendee, history for late joiners from the database.
//! Session and backstage chats live in their SFU room (sfu-node), this one spans the event.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use sfu_node::rules::ChatPace;
use tokio::sync::broadcast;

use super::access::event_key;
use super::events::attended;
use super::identity::Person;
use super::store::ChatEntry;
use super::{ApiError, ApiResult, ApiState};

/// Longest chat message, as in session chats.
pub const MAX_CHARS: usize = sfu_node::rules::MAX_CHAT_CHARS;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Incoming {
    Chat { text: String },
}

/// What a text frame on the event chat socket says: the message to post (trimmed), or the
/// sentence refusing it; None for a frame that is not a chat message (it is ignored).
pub fn read_message(frame: &str) -> Option<Result<String, String>> {
    let Ok(Incoming::Chat { text }) = serde_json::from_str::<Incoming>(frame) else {
        return None;
    };
    let text = text.trim();
    if text.is_empty() || text.chars().count() > MAX_CHARS {
        return Some(Err(format!("A message has 1 to {MAX_CHARS} characters.")));
    }
    Some(Ok(text.to_string()))
}

pub async fn event_chat(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let (event, person, _) = attended(&state, &headers, &ns, &name).await?;
    if !event.spec.chat {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "no_chat",
            "This event has no event-wide chat.",
        ));
    }
    let scope = format!("event:{}", event_key(&ns, &name));
    let history = state
        .store
        .chat(&scope)
        .await
        .map_err(|e| ApiError::internal("reading chat", e))?;
    let channel = state.chat_channel(&scope);
    Ok(upgrade
        .max_message_size(sfu_node::http::MAX_COMMAND_BYTES)
        .max_frame_size(sfu_node::http::MAX_COMMAND_BYTES)
        .on_upgrade(move |socket| talk(state, socket, scope, person, history, channel)))
}

/// Writes a message; false when the socket is gone or has not taken it in 10 s (the reader
/// stopped reading: it is dropped rather than holding the chat's memory).
async fn send(socket: &mut WebSocket, text: String) -> bool {
    matches!(
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            socket.send(Message::Text(text.into()))
        )
        .await,
        Ok(Ok(()))
    )
}

async fn talk(
    state: ApiState,
    mut socket: WebSocket,
    scope: String,
    person: Person,
    history: Vec<ChatEntry>,
    channel: broadcast::Sender<ChatEntry>,
) {
    let mut incoming = channel.subscribe();
    let mut pace = ChatPace::default();
    let started = tokio::time::Instant::now();
    let hello = json!({"type": "history", "messages": history}).to_string();
    if !send(&mut socket, hello).await {
        return;
    }
    loop {
        tokio::select! {
            message = incoming.recv() => match message {
                Ok(entry) => {
                    let text = json!({"type": "chat", "message": entry}).to_string();
                    if !send(&mut socket, text).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            received = socket.recv() => {
                let Some(Ok(message)) = received else { return };
                let Message::Text(text) = message else { continue };
                let text = match read_message(&text) {
                    None => continue,
                    Some(Ok(text)) => text,
                    Some(Err(sentence)) => {
                        let refusal = json!({"type": "refused", "message": sentence});
                        let _ = send(&mut socket, refusal.to_string()).await;
                        continue;
                    }
                };
                let at_ms = started.elapsed().as_millis() as u64;
                if let Err(wait_ms) = pace.allow(at_ms) {
                    let refusal = json!({
                        "type": "refused",
                        "message": format!(
                            "You are sending messages too quickly. Wait {} seconds.",
                            wait_ms.div_ceil(1000)
                        ),
                    });
                    let _ = send(&mut socket, refusal.to_string()).await;
                    continue;
                }
                let entry = ChatEntry {
                    at: state.clock.now(),
                    name: person.name.clone(),
                    email: person.email.clone(),
                    text: text.to_string(),
                };
                match state.store.add_chat(&scope, &entry).await {
                    Ok(()) => state.publish_chat(&scope, entry),
                    Err(e) => {
                        tracing::error!(error = %e, "keeping a chat message");
                        let refusal = json!({
                            "type": "refused",
                            "message": "Your message could not be sent. Try again.",
                        });
                        let _ = send(&mut socket, refusal.to_string()).await;
                    }
                }
            }
        }
    }
}
