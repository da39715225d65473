//! What the control plane keeps: an embedded SQLite database (a file in local mode and on the
//! control plane's volume in a cluster). Registrations, sign-in codes, room access links,
//! name labels for prefill, event chat history, and the key that signs sign-in cookies.
//!
//! One-time codes are stored as SHA-256 hashes; a code is used by setting `used_at`, in the
//! same statement that checks it, so it cannot be used twice.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::identity::Ticket;

/// Messages of event-wide chat kept for late joiners.
pub const CHAT_KEPT: i64 = 200;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS registrations (
  event TEXT NOT NULL, email TEXT NOT NULL, name TEXT NOT NULL, ticket_type TEXT NOT NULL,
  created_at INTEGER NOT NULL, PRIMARY KEY (event, email));
CREATE TABLE IF NOT EXISTS sign_in_codes (
  code_hash TEXT PRIMARY KEY, email TEXT NOT NULL, name TEXT NOT NULL, next TEXT NOT NULL,
  expires_at INTEGER NOT NULL, used_at INTEGER);
CREATE TABLE IF NOT EXISTS access_links (
  code_hash TEXT PRIMARY KEY, room TEXT NOT NULL, email TEXT NOT NULL,
  expires_at INTEGER NOT NULL, used_at INTEGER);
CREATE TABLE IF NOT EXISTS labels (
  email TEXT PRIMARY KEY, name TEXT NOT NULL, headline TEXT NOT NULL, image TEXT NOT NULL,
  color TEXT NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chat (
  id INTEGER PRIMARY KEY AUTOINCREMENT, scope TEXT NOT NULL, at INTEGER NOT NULL,
  name TEXT NOT NULL, email TEXT NOT NULL, text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chat_scope ON chat (scope, id);
";

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

pub struct Store {
    db: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store(sqlite)")
    }
}

pub type StoreResult<T> = rusqlite::Result<T>;

impl Store {
    /// Opens (creating if needed) the database file.
    pub fn open(path: &Path) -> StoreResult<Self> {
        Self::init(Connection::open(path)?)
    }

    /// A private in-memory database (tests).
    pub fn in_memory() -> StoreResult<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(db: Connection) -> StoreResult<Self> {
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "busy_timeout", 5000)?;
        db.execute_batch(SCHEMA)?;
        Ok(Store { db: Mutex::new(db) })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        f(&db)
    }

    /// The value of a setting, created by `make` the first time.
    pub fn setting_or(&self, key: &str, make: impl FnOnce() -> Vec<u8>) -> StoreResult<Vec<u8>> {
        self.with(|db| {
            let found: Option<Vec<u8>> = db
                .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                    r.get(0)
                })
                .optional()?;
            match found {
                Some(v) => Ok(v),
                None => {
                    let v = make();
                    db.execute(
                        "INSERT INTO settings (key, value) VALUES (?1, ?2)",
                        params![key, v],
                    )?;
                    Ok(v)
                }
            }
        })
    }

    /// Registers `email` for an event with a ticket type (the latest registration wins).
    pub fn register(
        &self,
        event: &str,
        email: &str,
        name: &str,
        ticket_type: &str,
        now: i64,
    ) -> StoreResult<()> {
        self.with(|db| {
            db.execute(
                "INSERT INTO registrations (event, email, name, ticket_type, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (event, email) DO UPDATE SET name = ?3, ticket_type = ?4",
                params![event, email, name, ticket_type, now],
            )
            .map(drop)
        })
    }

    /// Tickets from the built-in registration.
    pub fn tickets_of(&self, email: &str) -> StoreResult<Vec<Ticket>> {
        self.with(|db| {
            let mut q =
                db.prepare("SELECT event, ticket_type FROM registrations WHERE email = ?1")?;
            q.query_map([email], |r| {
                Ok(Ticket {
                    event: r.get(0)?,
                    ticket_type: r.get(1)?,
                })
            })?
            .collect()
        })
    }

    /// The name someone registered with, if any.
    pub fn registered_name(&self, email: &str) -> StoreResult<Option<String>> {
        self.with(|db| {
            db.query_row(
                "SELECT name FROM registrations WHERE email = ?1 ORDER BY created_at DESC LIMIT 1",
                [email],
                |r| r.get(0),
            )
            .optional()
        })
    }

    pub fn add_sign_in(
        &self,
        code_hash: &str,
        email: &str,
        name: &str,
        next: &str,
        expires_at: i64,
    ) -> StoreResult<()> {
        self.with(|db| {
            db.execute(
                "INSERT INTO sign_in_codes (code_hash, email, name, next, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![code_hash, email, name, next, expires_at],
            )
            .map(drop)
        })
    }

    /// Uses a sign-in code: once, before it expires.
    pub fn use_sign_in(&self, code_hash: &str, now: i64) -> StoreResult<Option<SignIn>> {
        self.with(|db| {
            db.query_row(
                "UPDATE sign_in_codes SET used_at = ?2
                 WHERE code_hash = ?1 AND used_at IS NULL AND expires_at > ?2
                 RETURNING email, name, next",
                params![code_hash, now],
                |r| {
                    Ok(SignIn {
                        email: r.get(0)?,
                        name: r.get(1)?,
                        next: r.get(2)?,
                    })
                },
            )
            .optional()
        })
    }

    pub fn add_access_link(
        &self,
        code_hash: &str,
        room: &str,
        email: &str,
        expires_at: i64,
    ) -> StoreResult<()> {
        self.with(|db| {
            db.execute(
                "INSERT INTO access_links (code_hash, room, email, expires_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![code_hash, room, email, expires_at],
            )
            .map(drop)
        })
    }

    /// The email an unused, unexpired access link to `room` was issued to.
    pub fn access_link(
        &self,
        code_hash: &str,
        room: &str,
        now: i64,
    ) -> StoreResult<Option<String>> {
        self.with(|db| {
            db.query_row(
                "SELECT email FROM access_links
                 WHERE code_hash = ?1 AND room = ?2 AND used_at IS NULL AND expires_at > ?3",
                params![code_hash, room, now],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Uses an access link; false if it was used meanwhile.
    pub fn use_access_link(&self, code_hash: &str, room: &str, now: i64) -> StoreResult<bool> {
        self.with(|db| {
            let n = db.execute(
                "UPDATE access_links SET used_at = ?3
                 WHERE code_hash = ?1 AND room = ?2 AND used_at IS NULL AND expires_at > ?3",
                params![code_hash, room, now],
            )?;
            Ok(n == 1)
        })
    }

    pub fn save_label(&self, email: &str, label: &Label, now: i64) -> StoreResult<()> {
        self.with(|db| {
            db.execute(
                "INSERT INTO labels (email, name, headline, image, color, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (email) DO UPDATE
                 SET name = ?2, headline = ?3, image = ?4, color = ?5, updated_at = ?6",
                params![
                    email,
                    label.name,
                    label.headline,
                    label.image,
                    label.color,
                    now
                ],
            )
            .map(drop)
        })
    }

    pub fn label_of(&self, email: &str) -> StoreResult<Option<Label>> {
        self.with(|db| {
            db.query_row(
                "SELECT name, headline, image, color FROM labels WHERE email = ?1",
                [email],
                |r| {
                    Ok(Label {
                        name: r.get(0)?,
                        headline: r.get(1)?,
                        image: r.get(2)?,
                        color: r.get(3)?,
                    })
                },
            )
            .optional()
        })
    }

    /// Keeps a chat message, dropping the oldest beyond [`CHAT_KEPT`] for its scope.
    pub fn add_chat(&self, scope: &str, entry: &ChatEntry) -> StoreResult<()> {
        self.with(|db| {
            db.execute(
                "INSERT INTO chat (scope, at, name, email, text) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![scope, entry.at, entry.name, entry.email, entry.text],
            )?;
            db.execute(
                "DELETE FROM chat WHERE scope = ?1 AND id NOT IN
                 (SELECT id FROM chat WHERE scope = ?1 ORDER BY id DESC LIMIT ?2)",
                params![scope, CHAT_KEPT],
            )
            .map(drop)
        })
    }

    /// The kept chat of a scope, oldest first.
    pub fn chat(&self, scope: &str) -> StoreResult<Vec<ChatEntry>> {
        self.with(|db| {
            let mut q = db.prepare(
                "SELECT at, name, email, text FROM chat WHERE scope = ?1 ORDER BY id ASC",
            )?;
            q.query_map([scope], |r| {
                Ok(ChatEntry {
                    at: r.get(0)?,
                    name: r.get(1)?,
                    email: r.get(2)?,
                    text: r.get(3)?,
                })
            })?
            .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_kept_survives_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roundtable.db");
        let key = {
            let store = Store::open(&path).unwrap();
            store
                .register("default/gala", "ada@example.org", "Ada", "vip", 1)
                .unwrap();
            store.setting_or("k", || vec![1, 2, 3]).unwrap()
        };
        let store = Store::open(&path).unwrap();
        assert_eq!(store.setting_or("k", || vec![9]).unwrap(), key);
        assert_eq!(
            store.tickets_of("ada@example.org").unwrap(),
            vec![Ticket {
                event: "default/gala".into(),
                ticket_type: "vip".into()
            }]
        );
    }

    #[test]
    fn codes_are_single_use_and_expire() {
        let store = Store::in_memory().unwrap();
        store
            .add_sign_in("h", "ada@example.org", "Ada", "/", 100)
            .unwrap();
        assert_eq!(store.use_sign_in("h", 100).unwrap(), None, "expired at 100");
        store
            .add_sign_in("h2", "ada@example.org", "Ada", "/", 100)
            .unwrap();
        assert!(store.use_sign_in("h2", 99).unwrap().is_some());
        assert_eq!(store.use_sign_in("h2", 99).unwrap(), None, "used once");

        store
            .add_access_link("a", "room", "bo@corp.example", 50)
            .unwrap();
        assert_eq!(store.access_link("a", "other", 10).unwrap(), None);
        assert_eq!(
            store.access_link("a", "room", 10).unwrap().as_deref(),
            Some("bo@corp.example")
        );
        assert!(store.use_access_link("a", "room", 10).unwrap());
        assert!(!store.use_access_link("a", "room", 11).unwrap());
        assert_eq!(store.access_link("a", "room", 11).unwrap(), None);
    }

    #[test]
    fn chat_keeps_the_latest_messages_per_scope() {
        let store = Store::in_memory().unwrap();
        for i in 0..(CHAT_KEPT + 5) {
            let entry = ChatEntry {
                at: i,
                name: "Ada".into(),
                email: "ada@example.org".into(),
                text: format!("m{i}"),
            };
            store.add_chat("event:a", &entry).unwrap();
        }
        let kept = store.chat("event:a").unwrap();
        assert_eq!(kept.len() as i64, CHAT_KEPT);
        assert_eq!(kept.first().unwrap().text, "m5");
        assert!(store.chat("event:b").unwrap().is_empty());
    }
}
