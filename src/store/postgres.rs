//! PostgreSQL connection set-up.
//!
//! Connections are not pinged before each use (`test_before_acquire(false)`): on a busy
//! server that ping was one extra round trip per checkout, a large share of the database's
//! work. A connection broken by a database restart fails its next query instead, is dropped by
//! the pool, and that request answers 503 (jobs retry); idle connections are recycled after
//! 10 minutes anyway.

use std::str::FromStr;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub(super) async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)?.application_name("onboard");
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .idle_timeout(Duration::from_secs(600))
        .connect_with(options)
        .await?;
    Ok(pool)
}
