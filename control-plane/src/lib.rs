//! The control plane: the HTTP API attendees' browsers talk to, and the web client it serves.
//!
//! It reads events, sessions, stages and rooms through a [`Catalog`] (Kubernetes watch caches,
//! or the local mode's manifests) and writes back only what people change in the UI. It decides
//! who may see and join what ([`access`], pure), issues sfu-node join tokens with the grants
//! the policy allows, and returns the SFU endpoint from the resource's status. People are known
//! by signed tokens ([`identity`]); what must be kept lives in the [`store`]: SQLite for one
//! replica, PostgreSQL for any number of them (everything replicas must agree on is there:
//! one-time codes, rate-limit counts, joins sent to relays, and chat, announced to all).
//!
//! Layout: `access` (decisions), `identity`, `store`, `mail`, `limiter`, `forwarded` (the
//! client's address behind trusted proxies), `browser_policy` (security headers, same-site
//! state changes), `catalog`; the handlers by subject in `people`, `events`, `stages`,
//! `rooms`, `chat`, and the pages in `pages`; `manifests` and `manifest_catalog`, the catalog
//! read from manifest files that the local all-in-one mode serves. SECURITY.md says what this
//! protects.

#![forbid(unsafe_code)]

pub mod access;
pub mod accounts;
pub mod browser_policy;
pub mod catalog;
pub mod chat;
pub mod dashboard;
pub mod error;
mod events;
pub mod forwarded;
pub mod identity;
pub mod limiter;
pub mod mail;
pub mod manifest_catalog;
pub mod manifests;
pub mod oidc;
mod pages;
pub(crate) mod people;
pub mod relays;
mod rooms;
pub mod serve;
pub mod signalling;
mod stages;
pub mod store;
pub mod turn;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::routing::{get, post};
use serde::Serialize;
use sfu_node::auth::Claims;
use sfu_node::rules::Grants;
use tokio::sync::broadcast;

pub use access::SessionLimits;
pub use catalog::{Catalog, Change, KubeCatalog};
pub use error::{ApiError, ApiResult};
pub use forwarded::{Cidr, Client, parse_cidrs};
pub use identity::{Keys, Person, RegistrationVerifier};
pub use mail::Mailer;
pub use manifest_catalog::LocalCatalog;
pub use store::Store;

use roundtable_crds::live_room::LiveRoom;

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
    /// `scheme://host[:port]` of `public_url`: where state-changing requests must come from.
    pub public_origin: String,
    /// Proxies whose `X-Forwarded-For` names the client (see [`forwarded`]).
    pub trusted_proxies: Vec<Cidr>,
    /// How many sessions attendees may make.
    pub session_limits: SessionLimits,
    pub clock: Clock,
    /// Where recordings are read from for download: `<dir>/<claim>/<file>`, the event's
    /// recording claim mounted (or, locally, a folder) under it.
    pub recordings_dir: Option<std::path::PathBuf>,
    /// Live event-wide chats on this replica, by scope.
    chats: Mutex<HashMap<String, broadcast::Sender<store::ChatEntry>>>,
    /// Hears the chat messages every replica keeps (PostgreSQL) and delivers them here.
    chat_feed: Option<tokio::task::JoinHandle<()>>,
    /// The signalling proxy's client to SFU pods ([`signalling`]).
    http: reqwest::Client,
    /// TURN servers handed to each join, if the deployment runs one ([`turn`]).
    pub turn: Option<turn::Turn>,
    /// How accounts work here ([`accounts`]).
    pub accounts: accounts::AccountSettings,
    /// The identity provider people may sign up with ([`oidc`]).
    pub oidc: Option<oidc::Oidc>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(feed) = &self.chat_feed {
            feed.abort();
        }
    }
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

/// What a deployment tunes against abuse; the defaults trust no proxy.
#[derive(Debug, Clone, Default)]
pub struct Protection {
    /// Proxies (the Ingress controller's addresses) trusted to say whom they forward for.
    pub trusted_proxies: Vec<Cidr>,
    pub session_limits: SessionLimits,
    /// TURN servers and their shared secret, for attendees whose networks block UDP.
    pub turn: Option<turn::Turn>,
    /// Sign-up with an identity provider, where dashboard rooms go, whom to ask.
    pub accounts: accounts::AccountSettings,
}

impl ApiState {
    /// A control plane with the default [`Protection`].
    pub async fn new(catalog: Arc<dyn Catalog>, settings: ApiSettings) -> Result<Self, ApiError> {
        Self::protected(catalog, settings, Protection::default()).await
    }

    /// Messages kept after this returns reach this replica's chat sockets, whichever replica
    /// kept them.
    pub async fn protected(
        catalog: Arc<dyn Catalog>,
        settings: ApiSettings,
        protection: Protection,
    ) -> Result<Self, ApiError> {
        let session_key = settings
            .store
            .setting_or("session_key", || rand::random::<[u8; 32]>().to_vec())
            .await
            .map_err(|e| ApiError::internal("reading the session key", e))?;
        let feed = settings
            .store
            .chat_feed()
            .await
            .map_err(|e| ApiError::internal("listening for chat", e))?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| ApiError::internal("building the signalling proxy's client", e))?;
        let state = ApiState(Arc::new_cyclic(|inner| Inner {
            catalog,
            keys: Keys::new(session_key, settings.join_key),
            limiter: limiter::Limiter::new(settings.store.clone()),
            store: settings.store,
            registration: settings.registration,
            mailer: settings.mailer,
            public_url: settings.public_url.trim_end_matches('/').to_string(),
            public_origin: browser_policy::origin_of(&settings.public_url),
            trusted_proxies: protection.trusted_proxies,
            session_limits: protection.session_limits,
            clock: settings.clock,
            recordings_dir: settings.recordings_dir,
            chats: Mutex::new(HashMap::new()),
            chat_feed: feed.map(|feed| tokio::spawn(deliver_chat(feed, inner.clone()))),
            http,
            turn: protection.turn,
            oidc: protection.accounts.oidc.clone().map(oidc::Oidc::new),
            accounts: protection.accounts,
        }));
        Ok(state)
    }

    /// The signed-in person (cookie) or the holder of a registration token (bearer), with their
    /// tickets from both the token and the built-in registration.
    pub async fn viewer(&self, headers: &HeaderMap) -> ApiResult<Option<Person>> {
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
        let account = self
            .store
            .account(&person.email)
            .await
            .map_err(|e| ApiError::internal("reading an account", e))?;
        if let Some(account) = account.filter(|a| a.slug.is_some()) {
            person.name = account.display_name;
        }
        let registered = self
            .store
            .tickets_of(&person.email)
            .await
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
    pub async fn join(
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
        let room_id = room.room_id();
        let relay = if servers.relays.is_empty() {
            None
        } else {
            self.store
                .with_relay_ledger(&room_id, now, |ledger| {
                    ledger.pick(&room_id, servers.relays, servers.per_relay, now)
                })
                .await
                .map_err(|e| ApiError::internal("counting joins sent to relays", e))?
                .filter(|relay| relay.endpoint.is_some())
        };
        let watch_at = relay.as_ref().and_then(|r| r.endpoint.clone());
        let watch_server = relay.map_or(signalling::ORIGIN.to_string(), |r| r.name);
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
        let ice_servers = self
            .turn
            .iter()
            .map(|t| t.ice_server(&hex_id(), now))
            .collect();
        Ok(Joined {
            sfu: sfu_url(watch_at.as_deref().unwrap_or(endpoint)),
            origin: sfu_url(endpoint),
            signalling: Signalling {
                sfu: signalling::proxied(&watch_server),
                origin: signalling::proxied(signalling::ORIGIN),
            },
            ice_servers,
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

    /// Hands a kept chat message to this replica's sockets of `scope`, unless the store
    /// announces it to every replica (then [`deliver_chat`] does, once, for all).
    fn publish_chat(&self, scope: &str, entry: store::ChatEntry) {
        if !self.store.announces_chat() {
            self.deliver(scope, entry);
        }
    }
}

impl Inner {
    fn deliver(&self, scope: &str, entry: store::ChatEntry) {
        let chats = self.chats.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = chats.get(scope) {
            let _ = channel.send(entry);
        }
    }
}

/// Delivers the messages of `feed` to this replica's chat sockets for as long as it runs.
async fn deliver_chat(mut feed: store::ChatFeed, inner: std::sync::Weak<Inner>) {
    loop {
        match feed.next().await {
            Ok((scope, entry)) => match inner.upgrade() {
                Some(inner) => inner.deliver(&scope, entry),
                None => return,
            },
            Err(e) => {
                tracing::warn!(error = %e, "listening for chat; reconnecting");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

/// A random id naming one join to the TURN server.
fn hex_id() -> String {
    rand::random::<[u8; 8]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
    /// The same two through this control plane's signalling proxy (paths on its origin): what
    /// browsers use, so a page served over https never calls an SFU pod directly.
    /// `sfu` and `origin` above stay for in-cluster clients and tools.
    pub signalling: Signalling,
    /// `RTCConfiguration.iceServers` for this join: TURN with short-lived credentials, when
    /// the deployment runs a TURN server.
    pub ice_servers: Vec<turn::IceServer>,
    pub room: String,
    /// The sfu-node join token.
    pub token: String,
    pub role: Role,
    pub expires_at: i64,
}

/// Signalling base paths on the control plane's own origin ([`signalling`]).
#[derive(Debug, Clone, Serialize)]
pub struct Signalling {
    /// Where to watch and open the events socket: `/sfu/origin` or `/sfu/<relay pod>`.
    pub sfu: String,
    /// Where to publish: `/sfu/origin`.
    pub origin: String,
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

/// The control plane's routes: the JSON API under `/api` and the web client's pages.
pub fn router(state: ApiState) -> Router {
    let router = Router::new()
        .route("/api/me", get(people::me))
        .route("/api/signin", post(people::sign_in))
        .route("/api/signin/verify", post(people::verify))
        .route("/api/signin/registration", post(people::registration))
        .route("/api/signout", post(people::sign_out))
        .route("/signin", get(people::sign_in_link))
        .route("/signin/oidc", get(oidc::flow::start))
        .route(oidc::flow::CALLBACK, get(oidc::flow::callback))
        .route("/api/account", get(accounts::profile::account))
        .route("/api/account/slug", get(accounts::profile::check_slug))
        .route("/api/account/onboarding", post(accounts::profile::onboard))
        .route(
            "/api/account/profile",
            axum::routing::put(accounts::profile::save_profile),
        )
        .route(
            "/api/account/avatar",
            post(accounts::profile::upload_avatar).layer(axum::extract::DefaultBodyLimit::max(
                2 * accounts::avatar::MAX_BYTES,
            )),
        )
        .route(
            "/api/account/delete",
            post(accounts::deletion::delete_account),
        )
        .route("/avatars/{file}", get(accounts::profile::avatar_image))
        .route("/api/hosts/{slug}", get(dashboard::dashboard))
        .route("/api/hosts/{slug}/rooms", post(dashboard::create_room))
        .route(
            "/api/hosts/{slug}/rooms/{room}",
            axum::routing::put(dashboard::edit_room).delete(dashboard::delete_room),
        )
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
        .route("/api/stages/{ns}/{name}/start", post(stages::start))
        .route("/api/stages/{ns}/{name}/end", post(stages::end))
        .route("/api/rooms/{host}/{slug}", get(rooms::room))
        .route("/api/rooms/{host}/{slug}/join", post(rooms::join))
        .route("/api/rooms/{host}/{slug}/passcode", post(rooms::passcode))
        .route(
            "/api/rooms/{host}/{slug}/access-link",
            post(rooms::access_link),
        )
        .route("/api/rooms/{host}/{slug}/lock", post(rooms::lock))
        .merge(signalling::routes())
        .merge(pages::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            browser_policy::guard,
        ))
        .with_state(state);
    sfu_node::rejection::layered(router)
}

/// The router's tests (`tests.rs`), once on each backend: each module includes the file with
/// its own `test_store`.
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
mod tests_postgres;
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
mod tests_sqlite;
