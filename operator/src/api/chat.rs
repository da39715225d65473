//! The event-wide chat: a WebSocket per attendee, history for late joiners from the database.
//! Session and backstage chats live in their SFU room (sfu-node), this one spans the event.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
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

pub async fn event_chat(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let (event, person, _) = attended(&state, &headers, &ns, &name)?;
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
        .map_err(|e| ApiError::internal("reading chat", e))?;
    let channel = state.chat_channel(&scope);
    Ok(upgrade.on_upgrade(move |socket| talk(state, socket, scope, person, history, channel)))
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
    let hello = json!({"type": "history", "messages": history}).to_string();
    if socket.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            message = incoming.recv() => match message {
                Ok(entry) => {
                    let text = json!({"type": "chat", "message": entry}).to_string();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            received = socket.recv() => {
                let Some(Ok(message)) = received else { return };
                let Message::Text(text) = message else { continue };
                let Ok(Incoming::Chat { text }) = serde_json::from_str::<Incoming>(&text) else {
                    continue;
                };
                let text = text.trim();
                if text.is_empty() || text.chars().count() > MAX_CHARS {
                    let refusal = json!({
                        "type": "refused",
                        "message": format!("A message has 1 to {MAX_CHARS} characters."),
                    });
                    let _ = socket.send(Message::Text(refusal.to_string().into())).await;
                    continue;
                }
                let entry = ChatEntry {
                    at: state.clock.now(),
                    name: person.name.clone(),
                    email: person.email.clone(),
                    text: text.to_string(),
                };
                if let Err(e) = state.store.add_chat(&scope, &entry) {
                    tracing::error!(error = %e, "keeping a chat message");
                }
                let _ = channel.send(entry);
            }
        }
    }
}
