//! The control plane: the HTTP API attendees' browsers talk to, and the web client it serves.
//!
//! It reads events, sessions, stages and rooms through a [`Catalog`] (Kubernetes watch caches,
//! or the local mode's manifests) and writes back only what people change in the UI. It decides
//! who may see and join what ([`access`], pure), issues sfu-node join tokens with the grants
//! the policy allows, and returns the SFU endpoint from the resource's status. People are known
//! by signed tokens ([`identity`]); what must be kept lives in SQLite ([`store`]).
//!
//! Layout: `access` (decisions), `identity`, `store`, `mail`, `limiter`, `catalog`; the
//! handlers by subject in `people`, `events`, `stages`, `rooms`, `chat`, and the pages in
//! `pages`.

pub mod access;
pub mod catalog;
mod chat;
pub mod error;
mod events;
pub mod identity;
pub mod limiter;
pub mod mail;
mod pages;
mod people;
pub mod relays;
mod rooms;
mod stages;
pub mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::routing::{get, post};
use serde::Serialize;
use sfu_node::auth::Claims;
use sfu_node::rules::Grants;
use tokio::sync::broadcast;

pub use catalog::{Catalog, Change, KubeCatalog};
pub use error::{ApiError, ApiResult};
pub use identity::{Keys, Person, RegistrationVerifier};
pub use mail::Mailer;
pub use store::Store;

use crate::plan::room::LiveRoom;

/// The control plane's clock: the system's, or one a test sets.
#[derive(Debug, Default)]
pub struct Clock {
    /// Unix seconds; 0 means "use the system clock".
    fixed: AtomicI64,
}

impl Clock {
    /// A clock pinned at `now` (tests move it with [`Clock::set`]).
    pub fn fixed(now: i64) -> Self {
        Clock {
            fixed: AtomicI64::new(now),
        }
    }

    pub fn set(&self, now: i64) {
        self.fixed.store(now, Ordering::Relaxed);
    }

    /// Unix seconds.
    pub fn now(&self) -> i64 {
        match self.fixed.load(Ordering::Relaxed) {
            0 => jiff::Timestamp::now().as_second(),
            t => t,
        }
    }
}

/// How long an sfu-node join token is valid: the page asks for a new one to reconnect.
pub const JOIN_TOKEN_SECONDS: i64 = 2 * 3600;

/// Everything the handlers share.
#[derive(Clone)]
pub struct ApiState(Arc<Inner>);

pub struct Inner {
    pub catalog: Arc<dyn Catalog>,
    pub store: Store,
    pub keys: Keys,
    pub registration: RegistrationVerifier,
    pub mailer: Mailer,
    pub limiter: limiter::Limiter,
    /// The address people open, e.g. `https://events.example.com` (links in emails).
    pub public_url: String,
    pub clock: Clock,
    /// Where recordings are read from for download: `<dir>/<claim>/<file>`, the event's
    /// recording claim mounted (or, locally, a folder) under it.
    pub recordings_dir: Option<std::path::PathBuf>,
    /// Live event-wide chats, by event key.
    chats: Mutex<HashMap<String, broadcast::Sender<store::ChatEntry>>>,
    /// Joins sent to each relay since its last report.
    relay_joins: Mutex<relays::Ledger>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("public_url", &self.0.public_url)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for ApiState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// What an [`ApiState`] is made of.
#[derive(Debug)]
pub struct ApiSettings {
    pub store: Store,
    /// The sfu-node join-token key.
    pub join_key: Vec<u8>,
    pub registration: RegistrationVerifier,
    pub mailer: Mailer,
    pub public_url: String,
    pub clock: Clock,
    pub recordings_dir: Option<std::path::PathBuf>,
}

impl ApiState {
    pub fn new(catalog: Arc<dyn Catalog>, settings: ApiSettings) -> Result<Self, ApiError> {
        let session_key = settings
            .store
            .setting_or("session_key", || rand::random::<[u8; 32]>().to_vec())
            .map_err(|e| ApiError::internal("reading the session key", e))?;
        Ok(ApiState(Arc::new(Inner {
            catalog,
            keys: Keys::new(session_key, settings.join_key),
            store: settings.store,
            registration: settings.registration,
            mailer: settings.mailer,
            limiter: limiter::Limiter::default(),
            public_url: settings.public_url.trim_end_matches('/').to_string(),
            clock: settings.clock,
            recordings_dir: settings.recordings_dir,
            chats: Mutex::new(HashMap::new()),
            relay_joins: Mutex::new(relays::Ledger::default()),
        })))
    }

    /// The signed-in person (cookie) or the holder of a registration token (bearer), with their
    /// tickets from both the token and the built-in registration.
    pub fn viewer(&self, headers: &HeaderMap) -> ApiResult<Option<Person>> {
        let now = self.clock.now();
        let from_cookie = cookie(headers, identity::SESSION_COOKIE)
            .and_then(|t| self.keys.verify_session(&t, now as u64));
        let person = from_cookie.or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .and_then(|t| self.registration.verify(t.trim()))
        });
        let Some(mut person) = person else {
            return Ok(None);
        };
        let registered = self
            .store
            .tickets_of(&person.email)
            .map_err(|e| ApiError::internal("reading tickets", e))?;
        for ticket in registered {
            if !person.tickets.contains(&ticket) {
                person.tickets.push(ticket);
            }
        }
        Ok(Some(person))
    }

    /// A join token for `room` with `grants`, and where to use it: the origin's endpoint,
    /// and where to watch (the least loaded ready relay of `servers`, else the origin).
    pub fn join(
        &self,
        room: &LiveRoom,
        servers: Servers<'_>,
        subject: &str,
        label: &store::Label,
        grants: Grants,
        backstage: bool,
    ) -> ApiResult<Joined> {
        let endpoint = servers
            .origin
            .ok_or_else(|| ApiError::from(access::Refusal::NotLive))?;
        let now = self.clock.now();
        let watch_at = self
            .relay_joins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pick(&room.room_id(), servers.relays, servers.per_relay, now)
            .and_then(|relay| relay.endpoint);
        let room_id = room.room_id();
        let mut claims = Claims::new(
            subject,
            &label.name,
            &room_id,
            (now + JOIN_TOKEN_SECONDS) as u64,
        );
        claims.iat = Some(now as u64);
        claims.headline = label.headline.clone();
        claims.image = label.image.clone();
        claims.color = label.color.clone();
        claims.grants = grants;
        claims.backstage = backstage;
        Ok(Joined {
            sfu: sfu_url(watch_at.as_deref().unwrap_or(endpoint)),
            origin: sfu_url(endpoint),
            room: room_id,
            token: sfu_node::auth::mint(self.keys.join_key(), &claims),
            role: Role {
                share: grants.share,
                moderate: grants.moderate || grants.host,
                host: grants.host,
            },
            expires_at: now + JOIN_TOKEN_SECONDS,
        })
    }

    fn chat_channel(&self, key: &str) -> broadcast::Sender<store::ChatEntry> {
        let mut chats = self.chats.lock().unwrap_or_else(|p| p.into_inner());
        chats
            .entry(key.to_string())
            .or_insert_with(|| broadcast::channel(256).0)
            .clone()
    }
}

/// The SFU's signalling base URL from a status endpoint (`host:port` or a URL).
pub fn sfu_url(endpoint: &str) -> String {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        endpoint.trim_end_matches('/').to_string()
    } else {
        format!("http://{endpoint}")
    }
}

/// Where a room's SFUs are, from its status: the origin's `endpoint` (None: not live) and
/// the relays a join may be sent to (`relayPods`, each taking `watchersPerPod`).
#[derive(Debug, Clone, Copy)]
pub struct Servers<'a> {
    pub origin: Option<&'a str>,
    pub relays: &'a [roundtable_crds::RelayPod],
    pub per_relay: i32,
}

impl<'a> Servers<'a> {
    /// The origin alone: everyone joins there (rooms, backstages).
    pub fn origin_only(origin: Option<&'a str>) -> Self {
        Servers {
            origin,
            relays: &[],
            per_relay: 0,
        }
    }
}

/// What a successful join returns.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Joined {
    /// Base URL of the signalling where the page watches and opens its events socket
    /// (`{sfu}/rooms/{room}/whep`, `/events`): a relay when the room has one with room, else
    /// the origin.
    pub sfu: String,
    /// Base URL of the origin's signalling, where the page publishes (`{origin}/rooms/{room}/whip`).
    pub origin: String,
    pub room: String,
    /// The sfu-node join token.
    pub token: String,
    pub role: Role,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Role {
    pub share: bool,
    pub moderate: bool,
    pub host: bool,
}

/// The value of one cookie.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The client's address, for rate limits (the TCP peer; "local" when there is none, as in
/// router tests).
#[derive(Debug, Clone)]
pub struct Client(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Client(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_else(|| "local".into()),
        ))
    }
}

/// The control plane's routes: the JSON API under `/api` and the web client's pages.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/me", get(people::me))
        .route("/api/signin", post(people::sign_in))
        .route("/api/signin/verify", post(people::verify))
        .route("/api/signin/registration", post(people::registration))
        .route("/api/signout", post(people::sign_out))
        .route("/signin", get(people::sign_in_link))
        .route("/api/events/{ns}/{event}", get(events::event))
        .route("/api/events/{ns}/{event}/register", post(people::register))
        .route("/api/events/{ns}/{event}/tickets", get(events::tickets))
        .route(
            "/api/events/{ns}/{event}/sessions",
            post(events::create_session),
        )
        .route("/api/events/{ns}/{event}/chat", get(chat::event_chat))
        .route("/api/events/{ns}/{event}/report", get(events::report))
        .route(
            "/api/recordings/{ns}/{session}/{index}",
            get(events::download),
        )
        .route(
            "/api/sessions/{ns}/{name}",
            get(events::session).delete(events::delete_session),
        )
        .route("/api/sessions/{ns}/{name}/join", post(events::join_session))
        .route(
            "/api/sessions/{ns}/{name}/start",
            post(events::start_session),
        )
        .route("/api/stages/{ns}/{name}", get(stages::stage))
        .route("/api/stages/{ns}/{name}/join", post(stages::join))
        .route("/api/stages/{ns}/{name}/broadcast", post(stages::broadcast))
        .route("/api/rooms/{host}/{slug}", get(rooms::room))
        .route("/api/rooms/{host}/{slug}/join", post(rooms::join))
        .route(
            "/api/rooms/{host}/{slug}/access-link",
            post(rooms::access_link),
        )
        .route("/api/rooms/{host}/{slug}/lock", post(rooms::lock))
        .merge(pages::routes())
        .with_state(state)
}

#[cfg(test)]
mod tests;
