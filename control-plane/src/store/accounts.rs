//! Host accounts in the store: the profile, the slug chosen once, the avatar, rooms made on
//! the dashboard (local mode), OpenID Connect sign-ins in flight, and account deletion with
//! its audit record.
//!
//! The slug is written once, by [`Store::onboard`], in an `UPDATE … WHERE slug IS NULL`; the
//! database itself refuses any later change (a trigger on both backends). Slugs are kept
//! lower-case, so the unique index makes them unique case-insensitively. A deleted account's
//! slug stays in `account_deletions` and is never handed out again: links people were given
//! must not lead to someone else.

use serde::Serialize;
use sqlx::Row;

use super::{Pool, Store, StoreResult};

/// A host account as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub email: String,
    /// None until onboarding.
    pub slug: Option<String>,
    pub use_case: String,
    pub display_name: String,
    pub headline: String,
    pub color: String,
    pub notifications: bool,
    /// 0: no avatar; otherwise bumped with each upload (the image's cache key).
    pub avatar_version: i64,
}

/// What settings change; the slug and email are not among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub display_name: String,
    pub headline: String,
    pub color: String,
    pub notifications: bool,
}

/// Why onboarding did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotOnboarded {
    /// Another account has (or had) the slug.
    SlugTaken,
    /// This account already chose its slug.
    AlreadyDone,
}

/// An OpenID Connect sign-in between the redirect to the issuer and its return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcPending {
    /// The SHA-256 of the cookie of the browser that started it.
    pub browser: String,
    pub nonce: String,
    /// The PKCE code verifier.
    pub verifier: String,
    pub next: String,
}

/// A room made on the dashboard, as the local mode keeps it (the spec as JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptRoom {
    pub host: String,
    pub slug: String,
    pub owner: String,
    pub spec: String,
    pub passcode: Option<String>,
}

const ACCOUNT: &str = "SELECT email, slug, use_case, display_name, headline, color, notifications,
     avatar_version FROM accounts";

fn account_of<R: Row>(r: &R) -> StoreResult<Account>
where
    usize: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    bool: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Account {
        email: r.try_get(0)?,
        slug: r.try_get(1)?,
        use_case: r.try_get(2)?,
        display_name: r.try_get(3)?,
        headline: r.try_get(4)?,
        color: r.try_get(5)?,
        notifications: r.try_get(6)?,
        avatar_version: r.try_get(7)?,
    })
}

impl Store {
    /// The account of `email`, made on its first sign-in with `name` as display name.
    pub async fn ensure_account(&self, email: &str, name: &str, now: i64) -> StoreResult<Account> {
        on_pool!(self, p => {
            sqlx::query(
                "INSERT INTO accounts (email, display_name, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (email) DO NOTHING",
            )
            .bind(email)
            .bind(name)
            .bind(now)
            .execute(p)
            .await?;
            account_of(&sqlx::query(&format!("{ACCOUNT} WHERE email = $1")).bind(email).fetch_one(p).await?)
        })
    }

    pub async fn account(&self, email: &str) -> StoreResult<Option<Account>> {
        on_pool!(self, p => {
            sqlx::query(&format!("{ACCOUNT} WHERE email = $1"))
                .bind(email)
                .fetch_optional(p)
                .await?
                .map(|r| account_of(&r))
                .transpose()
        })
    }

    /// The account whose (lower-case) slug is `slug`.
    pub async fn account_by_slug(&self, slug: &str) -> StoreResult<Option<Account>> {
        on_pool!(self, p => {
            sqlx::query(&format!("{ACCOUNT} WHERE slug = $1"))
                .bind(slug.to_ascii_lowercase())
                .fetch_optional(p)
                .await?
                .map(|r| account_of(&r))
                .transpose()
        })
    }

    /// Whether no account has or had `slug` (already checked and lower-cased).
    pub async fn slug_free(&self, slug: &str) -> StoreResult<bool> {
        on_pool!(self, p => {
            let used: i64 = sqlx::query_scalar(SLUG_USED).bind(slug).fetch_one(p).await?;
            Ok(used == 0)
        })
    }

    /// Onboarding, once: the use case, the display name and the slug (checked, lower-case).
    pub async fn onboard(
        &self,
        email: &str,
        use_case: &str,
        display_name: &str,
        slug: &str,
        now: i64,
    ) -> StoreResult<Result<(), NotOnboarded>> {
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let used: i64 = sqlx::query_scalar(SLUG_USED).bind(slug).fetch_one(&mut *tx).await?;
            if used > 0 {
                return Ok(Err(NotOnboarded::SlugTaken));
            }
            let done = sqlx::query(
                "UPDATE accounts SET slug = $2, use_case = $3, display_name = $4, onboarded_at = $5
                 WHERE email = $1 AND slug IS NULL",
            )
            .bind(email)
            .bind(slug)
            .bind(use_case)
            .bind(display_name)
            .bind(now)
            .execute(&mut *tx)
            .await;
            match done {
                Ok(done) if done.rows_affected() == 1 => {
                    tx.commit().await?;
                    Ok(Ok(()))
                }
                Ok(_) => Ok(Err(NotOnboarded::AlreadyDone)),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    Ok(Err(NotOnboarded::SlugTaken))
                }
                Err(e) => Err(e),
            }
        })
    }

    pub async fn save_profile(&self, email: &str, profile: &Profile) -> StoreResult<()> {
        on_pool!(self, p => {
            sqlx::query(
                "UPDATE accounts SET display_name = $2, headline = $3, color = $4, notifications = $5
                 WHERE email = $1",
            )
            .bind(email)
            .bind(&profile.display_name)
            .bind(&profile.headline)
            .bind(&profile.color)
            .bind(profile.notifications)
            .execute(p)
            .await
            .map(drop)
        })
    }

    /// Keeps a processed avatar; returns its new version.
    pub async fn save_avatar(&self, email: &str, png: &[u8]) -> StoreResult<i64> {
        on_pool!(self, p => {
            sqlx::query_scalar(
                "UPDATE accounts SET avatar = $2, avatar_version = avatar_version + 1
                 WHERE email = $1 RETURNING avatar_version",
            )
            .bind(email)
            .bind(png)
            .fetch_one(p)
            .await
        })
    }

    /// The avatar of the host with `slug`, as kept (PNG).
    pub async fn avatar(&self, slug: &str) -> StoreResult<Option<Vec<u8>>> {
        on_pool!(self, p => {
            sqlx::query_scalar::<_, Option<Vec<u8>>>("SELECT avatar FROM accounts WHERE slug = $1")
                .bind(slug)
                .fetch_optional(p)
                .await
                .map(Option::flatten)
        })
    }

    /// Starts an OpenID Connect sign-in (`state` hashed), valid until `expires_at`.
    pub async fn add_oidc_state(
        &self,
        state_hash: &str,
        pending: &OidcPending,
        expires_at: i64,
    ) -> StoreResult<()> {
        on_pool!(self, p => {
            sqlx::query(
                "INSERT INTO oidc_states (state_hash, browser, nonce, verifier, next, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(state_hash)
            .bind(&pending.browser)
            .bind(&pending.nonce)
            .bind(&pending.verifier)
            .bind(&pending.next)
            .bind(expires_at)
            .execute(p)
            .await
            .map(drop)
        })
    }

    /// Uses a `state`: once, before it expires (at any replica). Expired ones are swept.
    pub async fn use_oidc_state(
        &self,
        state_hash: &str,
        now: i64,
    ) -> StoreResult<Option<OidcPending>> {
        on_pool!(self, p => {
            sqlx::query("DELETE FROM oidc_states WHERE expires_at <= $1")
                .bind(now - 3600)
                .execute(p)
                .await?;
            sqlx::query(
                "UPDATE oidc_states SET used_at = $2
                 WHERE state_hash = $1 AND used_at IS NULL AND expires_at > $2
                 RETURNING browser, nonce, verifier, next",
            )
            .bind(state_hash)
            .bind(now)
            .fetch_optional(p)
            .await?
            .map(|r| -> StoreResult<OidcPending> {
                Ok(OidcPending {
                    browser: r.try_get(0)?,
                    nonce: r.try_get(1)?,
                    verifier: r.try_get(2)?,
                    next: r.try_get(3)?,
                })
            })
            .transpose()
        })
    }

    /// Every room made on the dashboard (local mode).
    pub async fn kept_rooms(&self) -> StoreResult<Vec<KeptRoom>> {
        on_pool!(self, p => {
            sqlx::query("SELECT host, slug, owner, spec, passcode FROM dashboard_rooms ORDER BY created_at, slug")
                .fetch_all(p)
                .await?
                .iter()
                .map(|r| {
                    Ok(KeptRoom {
                        host: r.try_get(0)?,
                        slug: r.try_get(1)?,
                        owner: r.try_get(2)?,
                        spec: r.try_get(3)?,
                        passcode: r.try_get(4)?,
                    })
                })
                .collect()
        })
    }

    /// Creates (`create`) or replaces a dashboard room; false if creating one that exists.
    pub async fn keep_room(&self, room: &KeptRoom, create: bool, now: i64) -> StoreResult<bool> {
        on_pool!(self, p => {
            let sql = if create {
                "INSERT INTO dashboard_rooms (host, slug, owner, spec, passcode, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (host, slug) DO NOTHING"
            } else {
                "UPDATE dashboard_rooms SET spec = $4, passcode = $5, updated_at = $6
                 WHERE host = $1 AND slug = $2 AND owner = $3"
            };
            let done = sqlx::query(sql)
                .bind(&room.host)
                .bind(&room.slug)
                .bind(&room.owner)
                .bind(&room.spec)
                .bind(&room.passcode)
                .bind(now)
                .execute(p)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    pub async fn forget_room(&self, host: &str, slug: &str) -> StoreResult<bool> {
        on_pool!(self, p => {
            let done = sqlx::query("DELETE FROM dashboard_rooms WHERE host = $1 AND slug = $2")
                .bind(host)
                .bind(slug)
                .execute(p)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Removes `email`'s account and personal data and keeps the audit record, which also
    /// lists `elsewhere` (what the caller removed outside the store, e.g. Room resources);
    /// None if there is no such account. Chat lines stay in their history, anonymised.
    pub async fn delete_account(
        &self,
        email: &str,
        elsewhere: Vec<(String, u64)>,
        now: i64,
    ) -> StoreResult<Option<Deletion>> {
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let Some(slug) = sqlx::query_scalar::<_, Option<String>>("SELECT slug FROM accounts WHERE email = $1")
                .bind(email)
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Ok(None);
            };
            let mut removed = elsewhere;
            for (what, sql) in ERASE {
                let n = sqlx::query(sql).bind(email).execute(&mut *tx).await?.rows_affected();
                removed.push(((*what).to_string(), n));
            }
            let slug = slug.unwrap_or_default();
            let deletion = Deletion { email: email.to_string(), slug, at: now, removed };
            sqlx::query("INSERT INTO account_deletions (email, slug, deleted_at, removed) VALUES ($1, $2, $3, $4)")
                .bind(&deletion.email)
                .bind(&deletion.slug)
                .bind(now)
                .bind(deletion.summary())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some(deletion))
        })
    }

    /// The audit records of deleted accounts, oldest first.
    pub async fn deletions(&self) -> StoreResult<Vec<(String, String, i64, String)>> {
        on_pool!(self, p => {
            sqlx::query("SELECT email, slug, deleted_at, removed FROM account_deletions ORDER BY id")
                .fetch_all(p)
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
                .collect()
        })
    }
}

/// How many accounts have or had a slug.
const SLUG_USED: &str = "SELECT (SELECT COUNT(*) FROM accounts WHERE slug = $1)
     + (SELECT COUNT(*) FROM account_deletions WHERE slug = $1)";

/// What deleting an account removes or anonymises, each keyed by the email (`$1`), in order.
const ERASE: &[(&str, &str)] = &[
    (
        "dashboard rooms",
        "DELETE FROM dashboard_rooms WHERE owner = $1",
    ),
    ("name labels", "DELETE FROM labels WHERE email = $1"),
    (
        "sign-in links",
        "DELETE FROM sign_in_codes WHERE email = $1",
    ),
    ("access links", "DELETE FROM access_links WHERE email = $1"),
    (
        "registrations",
        "DELETE FROM registrations WHERE email = $1",
    ),
    (
        "pending registrations",
        "DELETE FROM pending_registrations WHERE email = $1",
    ),
    (
        "chat messages anonymised",
        "UPDATE chat SET name = 'Deleted account', email = '' WHERE email = $1",
    ),
    (
        "account and profile",
        "DELETE FROM accounts WHERE email = $1",
    ),
];

/// An account deletion: who, when, and how many rows of what were removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deletion {
    pub email: String,
    pub slug: String,
    pub at: i64,
    pub removed: Vec<(String, u64)>,
}

impl Deletion {
    /// The audit record's "what": `name labels: 1; …`.
    pub fn summary(&self) -> String {
        self.removed
            .iter()
            .map(|(what, n)| format!("{what}: {n}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests;
