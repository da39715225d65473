//! What the control plane keeps, behind one interface with two backends: SQLite (a file, or
//! memory; the local mode and single-replica installs) and PostgreSQL (clusters, any number of
//! replicas). Registrations, sign-in codes, room access links, name labels for prefill, event
//! chat history, the key that signs sign-in cookies, and the counts replicas must share:
//! attempts against rate limits and the joins sent to relays.
//!
//! The same SQL runs on both (`$n` parameters, `ON CONFLICT`, `RETURNING`); the schema is in
//! versioned migrations per backend ([`migrate`]). The rules stay outside: [`crate::limiter`]
//! decides from the attempts this returns, [`crate::relays`] picks from the ledger it keeps.
//!
//! One-time codes are stored as SHA-256 hashes; a code is used by setting `used_at` in the
//! same statement that checks it, so it is used once even when two replicas race for it (the
//! second `UPDATE` waits for the first's row lock and then finds it used).
//!
//! A registration made through the built-in form waits in `pending_registrations` under its
//! emailed code; only using that code (which proves the address) makes it a ticket, and it
//! never replaces a registration the address already has.
//!
//! Work that reads and then writes one key (a client's attempts, a room's relay ledger, a
//! scope's chat) holds a lock on that key for its transaction: an advisory transaction lock
//! on PostgreSQL; on SQLite the single connection already runs one transaction at a time.
//! Chat messages are announced with `NOTIFY` in the transaction that keeps them, so every
//! replica hears each kept message once, in the order they were kept ([`ChatFeed`]).

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgListener, PgPool};
use sqlx::sqlite::SqlitePool;
use sqlx::{PgConnection, Row, SqliteConnection};

use super::identity::Ticket;
use super::relays::{Ledger, RoomLedger};

pub mod migrate;

/// Messages of event-wide chat kept for late joiners.
pub const CHAT_KEPT: i64 = 200;

/// The channel chat messages are announced on (PostgreSQL).
const CHAT_CHANNEL: &str = "roundtable_chat";

/// A name label: how a person appears on their tile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub name: String,
    #[serde(default)]
    pub headline: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub color: String,
}

/// A chat message as kept and sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatEntry {
    pub at: i64,
    pub name: String,
    #[serde(skip)]
    pub email: String,
    pub text: String,
}

/// A sign-in code once used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    pub email: String,
    pub name: String,
    pub next: String,
}

/// The browser presenting a sign-in code, when it holds a claim cookie: the cookie's hash, and
/// the time after which that browser's earlier use of the same code is answered again.
#[derive(Debug, Clone, Copy)]
pub struct Claimant<'a> {
    pub browser: &'a str,
    pub again_since: i64,
}

/// The database: cheap to clone (a pool).
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.backend())
    }
}

pub type StoreError = sqlx::Error;
pub type StoreResult<T> = Result<T, StoreError>;

/// Runs `$body` with `$p` bound to the pool, whichever the backend: the SQL is the same.
macro_rules! on_pool {
    ($store:expr, $p:ident => $body:expr) => {
        match &$store.pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

mod accounts;
pub use accounts::{Account, Deletion, KeptRoom, NotOnboarded, OidcPending, Profile};

/// Holds `key` for the rest of the current transaction.
trait Serialise {
    async fn serialise(&mut self, key: &str) -> StoreResult<()>;
}

impl Serialise for SqliteConnection {
    /// The pool's single connection already runs one transaction at a time.
    async fn serialise(&mut self, _key: &str) -> StoreResult<()> {
        Ok(())
    }
}

impl Serialise for PgConnection {
    async fn serialise(&mut self, key: &str) -> StoreResult<()> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(key)
            .execute(self)
            .await
            .map(drop)
    }
}

/// Expired attempts of every client are swept once in this many attempts.
const SWEEP_EVERY: u32 = 256;
static ATTEMPTS: AtomicU32 = AtomicU32::new(0);

impl Store {
    /// Opens (creating if needed) an SQLite database file and brings its schema up to date.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        Ok(Store {
            pool: migrate::sqlite(migrate::sqlite_file(path)).await?,
        })
    }

    /// A private in-memory SQLite database (tests).
    pub async fn in_memory() -> StoreResult<Self> {
        Ok(Store {
            pool: migrate::sqlite(migrate::sqlite_memory()).await?,
        })
    }

    /// Connects to PostgreSQL (`postgres://user:password@host/db?sslmode=require`) with up
    /// to `max_connections`, and brings its schema up to date.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        Ok(Store {
            pool: migrate::postgres(url, max_connections).await?,
        })
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Closes every connection (shutdown; tests that stop a replica).
    pub async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }

    /// The schema version applied (the highest migration recorded).
    pub async fn schema_version(&self) -> StoreResult<i64> {
        on_pool!(self, p => {
            sqlx::query("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success")
                .fetch_one(p)
                .await?
                .try_get::<i64, _>(0)
        })
    }

    /// The value of a setting, created by `make` the first time. Replicas starting at once
    /// all end up with the first value written.
    pub async fn setting_or(
        &self,
        key: &str,
        make: impl FnOnce() -> Vec<u8>,
    ) -> StoreResult<Vec<u8>> {
        on_pool!(self, p => {
            let found = sqlx::query("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(p)
                .await?;
            if let Some(row) = found {
                return row.try_get::<Vec<u8>, _>(0);
            }
            sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                .bind(key)
                .bind(make())
                .execute(p)
                .await?;
            sqlx::query("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_one(p)
                .await?
                .try_get::<Vec<u8>, _>(0)
        })
    }

    /// Registers `email` for an event with a ticket type, unless the address already has a
    /// registration for it: the first confirmed registration stays (tickets and name).
    pub async fn register(
        &self,
        event: &str,
        email: &str,
        name: &str,
        ticket_type: &str,
        now: i64,
    ) -> StoreResult<()> {
        on_pool!(self, p => {
            sqlx::query(REGISTER)
                .bind(event)
                .bind(email)
                .bind(name)
                .bind(ticket_type)
                .bind(now)
                .execute(p)
                .await
                .map(drop)
        })
    }

    /// Keeps a registration from the built-in form until `code_hash` (the code emailed to
    /// `email`) is used; see [`Store::use_sign_in`].
    pub async fn add_pending_registration(
        &self,
        code_hash: &str,
        event: &str,
        email: &str,
        name: &str,
        ticket_type: &str,
        expires_at: i64,
    ) -> StoreResult<()> {
        on_pool!(self, p => {
            sqlx::query(
                "INSERT INTO pending_registrations
                 (code_hash, event, email, name, ticket_type, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(code_hash)
            .bind(event)
            .bind(email)
            .bind(name)
            .bind(ticket_type)
            .bind(expires_at)
            .execute(p)
            .await
            .map(drop)
        })
    }

    /// Tickets from the built-in registration.
    pub async fn tickets_of(&self, email: &str) -> StoreResult<Vec<Ticket>> {
        on_pool!(self, p => {
            sqlx::query("SELECT event, ticket_type FROM registrations WHERE email = $1 ORDER BY created_at, event")
                .bind(email)
                .fetch_all(p)
                .await?
                .iter()
                .map(|r| {
                    Ok(Ticket {
                        event: r.try_get(0)?,
                        ticket_type: r.try_get(1)?,
                    })
                })
                .collect()
        })
    }

    /// The name someone registered with, if any.
    pub async fn registered_name(&self, email: &str) -> StoreResult<Option<String>> {
        on_pool!(self, p => {
            sqlx::query(REGISTERED_NAME)
                .bind(email)
                .fetch_optional(p)
                .await?
                .map(|r| r.try_get(0))
                .transpose()
        })
    }

    pub async fn add_sign_in(
        &self,
        code_hash: &str,
        email: &str,
        name: &str,
        next: &str,
        expires_at: i64,
    ) -> StoreResult<()> {
        on_pool!(self, p => {
            sqlx::query(
                "INSERT INTO sign_in_codes (code_hash, email, name, next, expires_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(code_hash)
            .bind(email)
            .bind(name)
            .bind(next)
            .bind(expires_at)
            .execute(p)
            .await
            .map(drop)
        })
    }

    /// Uses a sign-in code: once, before it expires. A registration waiting on the code
    /// becomes a ticket in the same transaction (unless the address already has one for that
    /// event), and the name is the address's registered name when it has one.
    ///
    /// The browser that used it ([`Claimant`]) is answered the same sign-in again after
    /// `again_since`: its first answer may have been lost with the replica that committed it.
    /// Any other browser, or one without a claim cookie, finds the code used.
    pub async fn use_sign_in(
        &self,
        code_hash: &str,
        claimant: Option<Claimant<'_>>,
        now: i64,
    ) -> StoreResult<Option<SignIn>> {
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let used = sqlx::query(
                "UPDATE sign_in_codes SET used_at = COALESCE(used_at, $2),
                   claimant = COALESCE(claimant, $3)
                 WHERE code_hash = $1 AND expires_at > $2
                   AND (used_at IS NULL OR (claimant = $3 AND used_at > $4))
                 RETURNING email, name, next",
            )
            .bind(code_hash)
            .bind(now)
            .bind(claimant.map(|c| c.browser))
            .bind(claimant.map_or(now, |c| c.again_since))
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| -> StoreResult<SignIn> {
                Ok(SignIn {
                    email: r.try_get(0)?,
                    name: r.try_get(1)?,
                    next: r.try_get(2)?,
                })
            })
            .transpose()?;
            let pending = sqlx::query(
                "DELETE FROM pending_registrations WHERE code_hash = $1
                 RETURNING event, email, name, ticket_type",
            )
            .bind(code_hash)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| -> StoreResult<(String, String, String, String)> {
                Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))
            })
            .transpose()?;
            sqlx::query("DELETE FROM pending_registrations WHERE expires_at <= $1")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let Some(mut used) = used else {
                tx.commit().await?;
                return Ok(None);
            };
            if let Some((event, email, name, ticket_type)) = pending
                && email == used.email
            {
                sqlx::query(REGISTER)
                    .bind(event)
                    .bind(email)
                    .bind(name)
                    .bind(ticket_type)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            let registered = sqlx::query(REGISTERED_NAME)
                .bind(&used.email)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = registered {
                used.name = row.try_get(0)?;
            }
            tx.commit().await?;
            Ok(Some(used))
        })
    }

    pub async fn add_access_link(
        &self,
        code_hash: &str,
        room: &str,
        email: &str,
        expires_at: i64,
    ) -> StoreResult<()> {
        on_pool!(self, p => {
            sqlx::query(
                "INSERT INTO access_links (code_hash, room, email, expires_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(code_hash)
            .bind(room)
            .bind(email)
            .bind(expires_at)
            .execute(p)
            .await
            .map(drop)
        })
    }

    /// The email an unused, unexpired access link to `room` was issued to.
    pub async fn access_link(
        &self,
        code_hash: &str,
        room: &str,
        now: i64,
    ) -> StoreResult<Option<String>> {
        on_pool!(self, p => {
            sqlx::query(
                "SELECT email FROM access_links
                 WHERE code_hash = $1 AND room = $2 AND used_at IS NULL AND expires_at > $3",
            )
            .bind(code_hash)
            .bind(room)
            .bind(now)
            .fetch_optional(p)
            .await?
            .map(|r| r.try_get(0))
            .transpose()
        })
    }

    /// Uses an access link; false if it was used meanwhile (here or at another replica).
    pub async fn use_access_link(
        &self,
        code_hash: &str,
        room: &str,
        now: i64,
    ) -> StoreResult<bool> {
        on_pool!(self, p => {
            let done = sqlx::query(
                "UPDATE access_links SET used_at = $3
                 WHERE code_hash = $1 AND room = $2 AND used_at IS NULL AND expires_at > $3",
            )
            .bind(code_hash)
            .bind(room)
            .bind(now)
            .execute(p)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    pub async fn save_label(&self, email: &str, label: &Label, now: i64) -> StoreResult<()> {
        on_pool!(self, p => {
            sqlx::query(
                "INSERT INTO labels (email, name, headline, image, color, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (email) DO UPDATE
                 SET name = $2, headline = $3, image = $4, color = $5, updated_at = $6",
            )
            .bind(email)
            .bind(&label.name)
            .bind(&label.headline)
            .bind(&label.image)
            .bind(&label.color)
            .bind(now)
            .execute(p)
            .await
            .map(drop)
        })
    }

    pub async fn label_of(&self, email: &str) -> StoreResult<Option<Label>> {
        on_pool!(self, p => {
            sqlx::query("SELECT name, headline, image, color FROM labels WHERE email = $1")
                .bind(email)
                .fetch_optional(p)
                .await?
                .map(|r| -> StoreResult<Label> {
                    Ok(Label {
                        name: r.try_get(0)?,
                        headline: r.try_get(1)?,
                        image: r.try_get(2)?,
                        color: r.try_get(3)?,
                    })
                })
                .transpose()
        })
    }

    /// Keeps a chat message, dropping the oldest beyond [`CHAT_KEPT`] for its scope. On
    /// PostgreSQL the message is announced to every replica's [`ChatFeed`] when it is kept.
    pub async fn add_chat(&self, scope: &str, entry: &ChatEntry) -> StoreResult<()> {
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            tx.serialise(&format!("chat:{scope}")).await?;
            sqlx::query("INSERT INTO chat (scope, at, name, email, text) VALUES ($1, $2, $3, $4, $5)")
                .bind(scope)
                .bind(entry.at)
                .bind(&entry.name)
                .bind(&entry.email)
                .bind(&entry.text)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "DELETE FROM chat WHERE scope = $1 AND id NOT IN
                 (SELECT id FROM chat WHERE scope = $1 ORDER BY id DESC LIMIT $2)",
            )
            .bind(scope)
            .bind(CHAT_KEPT)
            .execute(&mut *tx)
            .await?;
            if matches!(self.pool, Pool::Postgres(_)) {
                let announced = Announced { scope: scope.to_string(), message: entry.clone() };
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHAT_CHANNEL)
                    .bind(serde_json::to_string(&announced).expect("a chat entry serialises"))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        })
    }

    /// The kept chat of a scope, oldest first.
    pub async fn chat(&self, scope: &str) -> StoreResult<Vec<ChatEntry>> {
        on_pool!(self, p => {
            sqlx::query("SELECT at, name, email, text FROM chat WHERE scope = $1 ORDER BY id ASC")
                .bind(scope)
                .fetch_all(p)
                .await?
                .iter()
                .map(|r| {
                    Ok(ChatEntry {
                        at: r.try_get(0)?,
                        name: r.try_get(1)?,
                        email: r.try_get(2)?,
                        text: r.try_get(3)?,
                    })
                })
                .collect()
        })
    }

    /// Whether kept chat messages reach every replica through [`Store::chat_feed`]; if not
    /// (SQLite, one replica), the caller delivers them itself.
    pub fn announces_chat(&self) -> bool {
        matches!(self.pool, Pool::Postgres(_))
    }

    /// Listens for the chat messages every replica keeps (PostgreSQL; None on SQLite). Messages
    /// kept after this returns are heard.
    pub async fn chat_feed(&self) -> StoreResult<Option<ChatFeed>> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(None);
        };
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(CHAT_CHANNEL).await?;
        Ok(Some(ChatFeed { listener }))
    }

    /// Counts an attempt at `now` against `(scope, client)` if `decide`, given the times of the
    /// attempts still inside `window` seconds (oldest first), allows it; returns its answer.
    /// Concurrent attempts on one key, at any replica, are decided one after the other.
    pub async fn count_attempt(
        &self,
        scope: &str,
        client: &str,
        now: i64,
        window: i64,
        decide: impl FnOnce(&[i64]) -> Result<(), u64>,
    ) -> StoreResult<Result<(), u64>> {
        if ATTEMPTS
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY)
        {
            self.sweep_attempts(now).await?;
        }
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            tx.serialise(&format!("limit:{scope}:{client}")).await?;
            let times = sqlx::query_scalar::<_, i64>(RECENT)
                .bind(scope)
                .bind(client)
                .bind(now - window)
                .fetch_all(&mut *tx)
                .await?;
            let answer = decide(&times);
            if answer.is_ok() {
                sqlx::query("INSERT INTO rate_limit_hits (scope, client, at, expires_at) VALUES ($1, $2, $3, $4)")
                    .bind(scope)
                    .bind(client)
                    .bind(now)
                    .bind(now + window)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(answer)
        })
    }

    /// The times of `(scope, client)`'s attempts inside `window` seconds before `now`,
    /// oldest first.
    pub async fn attempts(
        &self,
        scope: &str,
        client: &str,
        now: i64,
        window: i64,
    ) -> StoreResult<Vec<i64>> {
        on_pool!(self, p => {
            sqlx::query_scalar::<_, i64>(RECENT)
                .bind(scope)
                .bind(client)
                .bind(now - window)
                .fetch_all(p)
                .await
        })
    }

    /// Forgets attempts whose windows are over, for every client.
    async fn sweep_attempts(&self, now: i64) -> StoreResult<()> {
        on_pool!(self, p => {
            sqlx::query("DELETE FROM rate_limit_hits WHERE expires_at <= $1")
                .bind(now)
                .execute(p)
                .await
                .map(drop)
        })
    }

    /// Runs `f` on `room`'s relay ledger and keeps what it changed; replicas take turns per
    /// room, so joins in flight are counted once whichever replica sent them.
    pub async fn with_relay_ledger<T>(
        &self,
        room: &str,
        now: i64,
        f: impl FnOnce(&mut Ledger) -> T,
    ) -> StoreResult<T> {
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            tx.serialise(&format!("relays:{room}")).await?;
            let saved: Option<String> = sqlx::query("SELECT state FROM relay_ledgers WHERE room = $1")
                .bind(room)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
            let saved: RoomLedger = saved
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default();
            let mut ledger = Ledger::with_room(room, saved);
            let answer = f(&mut ledger);
            let state = serde_json::to_string(&ledger.room(room)).expect("a ledger serialises");
            sqlx::query(
                "INSERT INTO relay_ledgers (room, state, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (room) DO UPDATE SET state = $2, updated_at = $3",
            )
            .bind(room)
            .bind(state)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(answer)
        })
    }
}

/// `(scope, client)`'s attempts inside the window, oldest first.
const RECENT: &str = "SELECT at FROM rate_limit_hits
     WHERE scope = $1 AND client = $2 AND at > $3 ORDER BY at";

/// A chat message as announced between replicas.
#[derive(Debug, Serialize, Deserialize)]
struct Announced {
    scope: String,
    message: ChatEntry,
}

/// The chat messages kept by any replica, as they are kept (PostgreSQL `LISTEN`).
pub struct ChatFeed {
    listener: PgListener,
}

impl std::fmt::Debug for ChatFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChatFeed")
    }
}

impl ChatFeed {
    /// The next kept message and its scope. After a lost connection the listener reconnects
    /// on the next call; messages kept meanwhile are in the history, not in the feed.
    pub async fn next(&mut self) -> StoreResult<(String, ChatEntry)> {
        loop {
            let notification = self.listener.recv().await?;
            match serde_json::from_str::<Announced>(notification.payload()) {
                Ok(a) => return Ok((a.scope, a.message)),
                Err(e) => tracing::warn!(error = %e, "an unreadable chat announcement"),
            }
        }
    }
}

const REGISTER: &str = "INSERT INTO registrations (event, email, name, ticket_type, created_at)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (event, email) DO NOTHING";

/// The first name an address registered with: later registrations never rename a person.
const REGISTERED_NAME: &str =
    "SELECT name FROM registrations WHERE email = $1 ORDER BY created_at ASC LIMIT 1";

#[cfg(test)]
pub(crate) mod tests;
