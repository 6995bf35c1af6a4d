//! Persistence. One `Store` enum chosen at start-up from `DATABASE_URL`: SQLite (embedded
//! default) or PostgreSQL (several processes). SQL is written once where both accept it (`$n`
//! placeholders, `ON CONFLICT`, `RETURNING`); the `with_pool!`/`with_conn!` macros expand the same
//! query code for each backend, so only connection set-up and migrations differ
//! (`sqlite.rs`, `postgres.rs`, `migrations/{sqlite,postgres}`).
//!
//! Feature modules add their own queries as `impl Store` / `impl Tx` blocks next to the work
//! they serve; this module holds the connection, transactions and the shared tables' helpers,
//! and imports only `domain`.

pub mod audit;
pub mod operator_sessions;
mod postgres;
pub mod rate_limits;
mod sqlite;
pub mod tenants;

use std::time::{Duration, Instant};

use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

pub use audit::{AuditEntry, AuditFilter, AuditRecord};
pub use operator_sessions::OperatorSession;
pub use rate_limits::RateDecision;
pub use tenants::{NewTenant, StatusChange, Tenant, TenantCursor, TenantSearch};

/// The database behind the service.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePools),
    Postgres(PgPool),
}

/// SQLite has one writer at a time. Writes (and write transactions) go through a pool of one
/// connection, so writers queue in FIFO order inside the process instead of sleeping in SQLite's
/// busy handler (1, 2, 5, 10 … ms steps); reads use their own pool and run beside the writer
/// (WAL). The busy timeout still covers other processes on the same file.
#[derive(Clone, Debug)]
pub struct SqlitePools {
    pub write: SqlitePool,
    pub read: SqlitePool,
}

/// An open transaction on either backend.
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// Runs the same query code against the store's pool; on SQLite, its writer. Use it for any
/// statement that writes.
#[macro_export]
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite(pools) => {
                let $pool = &pools.write;
                $body
            }
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}

/// Like `with_pool!` for statements that only read: on SQLite they use the reader pool and do
/// not queue behind writers.
#[macro_export]
macro_rules! with_reader {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite(pools) => {
                let $pool = &pools.read;
                $body
            }
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}

/// Runs the same query code on the connection of an open transaction.
#[macro_export]
macro_rules! with_conn {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx {
            $crate::store::Tx::Sqlite(t) => {
                let $conn: &mut sqlx::SqliteConnection = &mut *t;
                $body
            }
            $crate::store::Tx::Postgres(t) => {
                let $conn: &mut sqlx::PgConnection = &mut *t;
                $body
            }
        }
    };
}

/// What can go wrong in the store, in terms callers act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error(transparent)]
    Transition(#[from] crate::domain::TransitionError),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// Whether this is the database being unreachable for a moment (restarting, failing over,
    /// out of connections, busy) rather than anything about the request: callers answer 503
    /// with `Retry-After`, never 500.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Database(e) if is_unavailable(e))
    }

    /// Maps a unique-constraint violation to `Conflict(what)`, anything else to `Database`.
    pub(crate) fn unique(e: sqlx::Error, what: &'static str) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
            _ => StoreError::Database(e),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Connection-level failures: the pool has no connection to give or was closed, the connection
/// broke (I/O, TLS, protocol), PostgreSQL's SQLSTATE class 08 (connection exception) or
/// 57P01-57P03 (the server is shutting down, crashed or not yet accepting connections), 53300
/// (too many connections), or SQLite's busy/locked database.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or_default();
            code.starts_with("08")
                || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
                // SQLite: SQLITE_BUSY (5) and SQLITE_LOCKED (6), with extended codes.
                || code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
        }
        _ => false,
    }
}

impl Store {
    /// Connects to `url` (`sqlite:…` or `postgres://…`) and applies pending migrations.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let store = if url.starts_with("sqlite:") {
            Store::Sqlite(sqlite::connect(url, max_connections).await?)
        } else {
            Store::Postgres(postgres::connect(url, max_connections).await?)
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without applying any migration: with [`Store::migrate_to`], how migration tests
    /// build yesterday's schema and fill it before today's migrations run.
    #[doc(hidden)]
    pub async fn connect_unmigrated(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        Ok(if url.starts_with("sqlite:") {
            Store::Sqlite(sqlite::connect(url, max_connections).await?)
        } else {
            Store::Postgres(postgres::connect(url, max_connections).await?)
        })
    }

    /// Applies the migrations up to and including `version` (migration tests).
    #[doc(hidden)]
    pub async fn migrate_to(&self, version: i64) -> anyhow::Result<()> {
        fn upto(mut m: sqlx::migrate::Migrator, version: i64) -> sqlx::migrate::Migrator {
            let kept: Vec<_> = m
                .migrations
                .iter()
                .filter(|x| x.version <= version)
                .cloned()
                .collect();
            m.migrations = std::borrow::Cow::Owned(kept);
            m
        }
        match self {
            Store::Sqlite(pools) => {
                upto(sqlx::migrate!("migrations/sqlite"), version)
                    .run(&pools.write)
                    .await?
            }
            Store::Postgres(pool) => {
                upto(sqlx::migrate!("migrations/postgres"), version)
                    .run(pool)
                    .await?
            }
        }
        Ok(())
    }

    /// Applies every migration not yet applied (idempotent; safe with several processes).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Store::Sqlite(pools) => {
                sqlx::migrate!("migrations/sqlite")
                    .run(&pools.write)
                    .await?
            }
            Store::Postgres(pool) => sqlx::migrate!("migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Round-trips a trivial query; the health check's database probe.
    pub async fn ping(&self) -> StoreResult<Duration> {
        let started = Instant::now();
        with_reader!(self, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(started.elapsed())
    }

    /// Starts a write transaction. SQLite takes the write lock up front (`BEGIN IMMEDIATE`) so
    /// two writers queue on the busy timeout instead of failing when a reader upgrades.
    pub async fn begin(&self) -> StoreResult<Tx> {
        Ok(match self {
            Store::Sqlite(pools) => Tx::Sqlite(pools.write.begin_with("BEGIN IMMEDIATE").await?),
            Store::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// A write transaction whose commit need not wait for the disk: for writes that a crash may
    /// lose without harm because they are re-created (a provisioning step that is recorded only
    /// by a later, durable transaction, or vectors the caller can write again). PostgreSQL:
    /// `synchronous_commit = off` for this transaction only, still atomic and visible at once.
    /// SQLite (WAL, `synchronous=NORMAL`): the same as [`begin`].
    ///
    /// Never use it for anything acknowledged to the outside (a webhook receipt) or that other
    /// work acts on irrevocably (the transaction that queues an email).
    ///
    /// [`begin`]: Store::begin
    pub async fn begin_relaxed(&self) -> StoreResult<Tx> {
        Ok(match self {
            Store::Sqlite(_) => self.begin().await?,
            // One round trip: the simple-query protocol takes both statements at once.
            Store::Postgres(pool) => Tx::Postgres(
                pool.begin_with("BEGIN; SET LOCAL synchronous_commit = off")
                    .await?,
            ),
        })
    }

    /// Closes every connection; later queries fail. Used on shutdown.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(pools) => {
                pools.read.close().await;
                pools.write.close().await;
            }
            Store::Postgres(pool) => pool.close().await,
        }
    }
}

impl Tx {
    pub async fn commit(self) -> StoreResult<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }
}

/// `($1, $2, …), ($k+1, …)…`: the VALUES rows of a multi-row insert of `rows` rows of `columns`
/// parameters each (both backends take `$n` placeholders).
pub fn values_rows(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| {
            let params: Vec<String> = (1..=columns)
                .map(|c| format!("${}", r * columns + c))
                .collect();
            format!("({})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `text` as a LIKE pattern that matches it literally (`\\`, `%` and `_` escaped; use with
/// `ESCAPE '\\'`), with `%` before it when `anywhere` and always after it: a prefix, or a
/// substring.
pub(crate) fn like_pattern(text: &str, anywhere: bool) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    if anywhere {
        out.push('%');
    }
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Now as Unix milliseconds, the unit of every stored timestamp.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A stored timestamp as a UTC date-time.
pub fn ms_to_datetime(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_rows_numbers_parameters_row_by_row() {
        assert_eq!(super::values_rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(super::values_rows(0, 3), "");
    }

    #[test]
    fn like_patterns_match_their_text_literally() {
        assert_eq!(super::like_pattern("api_key.", false), "api\\_key.%");
        assert_eq!(super::like_pattern("50%\\x", true), "%50\\%\\\\x%");
    }
}
