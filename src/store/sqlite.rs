//! SQLite connection set-up: WAL, `synchronous=NORMAL` (durable across process crashes; the
//! last commits may be lost only on power loss), foreign keys, a busy timeout, and temporary
//! storage in memory (statement journals and sorts: a multi-row insert whose triggers write
//! other tables keeps its statement journal in RAM instead of a temporary file).

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub(super) async fn connect(url: &str, max_connections: u32) -> anyhow::Result<super::SqlitePools> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        .pragma("temp_store", "memory");
    // A local file cannot go away under an open connection: no ping before each use.
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options.clone())
        .await?;
    let read = SqlitePoolOptions::new()
        .max_connections(max_connections)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options.create_if_missing(false))
        .await?;
    Ok(super::SqlitePools { write, read })
}
