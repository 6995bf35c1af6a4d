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
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

pub(super) async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let mut options = PgConnectOptions::from_str(url)?;
    // Named in pg_stat_activity, unless the URL names it otherwise.
    if options.get_application_name().is_none() {
        options = options.application_name("onboard");
    }
    if loopback_without_sslmode(url) {
        // TLS to a server on this very host protects nothing (whoever can read loopback traffic
        // can read the server's memory) and costs an encryption on both ends of every message:
        // the pipeline benchmark's paid-to-active median drops by about a tenth without it. An
        // explicit `sslmode` in DATABASE_URL is always obeyed.
        options = options.ssl_mode(PgSslMode::Disable);
    }
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .idle_timeout(Duration::from_secs(600))
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// Whether `url` names a loopback host (or none: a local socket) and leaves `sslmode` unset.
fn loopback_without_sslmode(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    if parsed
        .query_pairs()
        .any(|(k, _)| k == "sslmode" || k == "ssl-mode")
    {
        return false;
    }
    match parsed.host() {
        None => true,
        // `postgres:` is not a special scheme, so an IPv4 address arrives as an opaque host.
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::loopback_without_sslmode as local;

    #[test]
    fn tls_is_skipped_only_for_loopback_hosts_without_an_explicit_sslmode() {
        assert!(local("postgres://postgres@127.0.0.1:5432/test"));
        assert!(local("postgres://u@localhost/db?application_name=x"));
        assert!(local("postgres://u@[::1]:5432/db"));
        assert!(!local("postgres://u@127.0.0.1/db?sslmode=require"));
        assert!(!local("postgres://u@127.0.0.1/db?sslmode=prefer"));
        assert!(!local("postgres://u@db.example.com/db"));
        assert!(!local("postgres://u@10.0.0.5/db"));
    }
}
