//! Opening a database: connection options per backend, and the versioned schema migrations
//! compiled into the binary (`control-plane/migrations/<backend>/NNNN_name.sql`).
//!
//! sqlx's migrator records each applied version with its checksum in `_sqlx_migrations`, so
//! start-up applies only what is new, and refuses a database whose applied migration was
//! edited afterwards. On PostgreSQL it holds a session advisory lock while it runs: two replicas
//! starting at once apply each migration exactly once, the second waiting for the first. It runs
//! on a connection of its own, closed afterwards, so a failed start-up cannot leave that lock
//! held by a pooled connection. SQLite is opened by one process only (a single replica).

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{ConnectOptions, Connection};

use super::{Pool, StoreResult};

/// (version, description, SQL) of each SQLite migration, in order.
const SQLITE: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "shared counts",
        include_str!("../../migrations/sqlite/0002_shared_counts.sql"),
    ),
    (
        3,
        "sign-in claimant",
        include_str!("../../migrations/sqlite/0003_sign_in_claimant.sql"),
    ),
    (
        4,
        "accounts",
        include_str!("../../migrations/sqlite/0004_accounts.sql"),
    ),
];

/// (version, description, SQL) of each PostgreSQL migration, in order.
const POSTGRES: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "sign-in claimant",
        include_str!("../../migrations/postgres/0002_sign_in_claimant.sql"),
    ),
    (
        3,
        "accounts",
        include_str!("../../migrations/postgres/0003_accounts.sql"),
    ),
];

/// Migrations embedded in the binary.
#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// The highest schema version this binary knows, per backend (tests, `roundtable api` logs).
pub fn latest_version(postgres: bool) -> i64 {
    let all = if postgres { POSTGRES } else { SQLITE };
    all.last().map_or(0, |m| m.0)
}

async fn migrator(postgres: bool) -> StoreResult<Migrator> {
    Ok(Migrator::new(Embedded(if postgres { POSTGRES } else { SQLITE })).await?)
}

/// SQLite: one connection, as before (one writer at a time is what SQLite does anyway, and an
/// in-memory database lives exactly as long as its connection).
pub(super) async fn sqlite(options: SqliteConnectOptions) -> StoreResult<Pool> {
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await?;
    migrator(false).await?.run(&pool).await?;
    Ok(Pool::Sqlite(pool))
}

pub(super) fn sqlite_file(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new().filename(path)
}

pub(super) fn sqlite_memory() -> SqliteConnectOptions {
    SqliteConnectOptions::from_str("sqlite::memory:").expect("a valid SQLite URL")
}

/// PostgreSQL from a `postgres://` URL (libpq's parameters, e.g. `sslmode=require`).
pub(super) async fn postgres(url: &str, max_connections: u32) -> StoreResult<Pool> {
    let options = PgConnectOptions::from_str(url)?.application_name("roundtable-api");
    {
        let mut conn = options.connect().await?;
        migrator(true).await?.run(&mut conn).await?;
        conn.close().await?;
    }
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?;
    Ok(Pool::Postgres(pool))
}
