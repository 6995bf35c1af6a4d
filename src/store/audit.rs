//! The audit log (migration 0014): one append-only row per security-relevant act, written in
//! the transaction of the act where there is one ([`Tx::audit`]), else right after it
//! ([`Store::audit`]). Tenant status changes are written by the database's trigger on `tenants`,
//! so no code path can change a status unrecorded. The database refuses UPDATE; only the
//! retention job deletes ([`Store::prune_audit`]).
//!
//! A store facility every layer records into (billing, provisioning, http, workspace): like the
//! rest of the store it knows only `domain`.

use std::net::IpAddr;

use serde_json::Value;

use crate::domain::audit::{Action, ActionFilter, Actor};
use crate::{with_conn, with_pool, with_reader};

use super::{Store, StoreResult, Tx, now_ms};

/// Largest `detail` kept as given; a bigger one is replaced by a note of its size (entries are
/// meant to be small: the act's own record holds the rest).
pub const MAX_DETAIL_BYTES: usize = 4096;

/// One act to record.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: Actor,
    pub action: Action,
    /// What was acted on: a tenant id, a key id, an event id.
    pub target: Option<String>,
    /// The client's address, when the act came over HTTP.
    pub ip: Option<IpAddr>,
    /// A small JSON object with what else an auditor needs (never a secret or a password).
    pub detail: Value,
}

impl AuditEntry {
    pub fn new(actor: Actor, action: Action) -> Self {
        Self {
            actor,
            action,
            target: None,
            ip: None,
            detail: Value::Object(Default::default()),
        }
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn ip(mut self, ip: Option<IpAddr>) -> Self {
        self.ip = ip;
        self
    }

    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }

    /// Adds one field to `detail` (the code that does the act knows things its caller does
    /// not, such as the status it found).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        if !self.detail.is_object() {
            self.detail = Value::Object(Default::default());
        }
        if let Value::Object(map) = &mut self.detail {
            map.insert(key.to_string(), value.into());
        }
        self
    }

    /// The stored `detail`: the JSON text, or a note of its size when over
    /// [`MAX_DETAIL_BYTES`].
    fn detail_text(&self) -> String {
        let text = self.detail.to_string();
        if text.len() <= MAX_DETAIL_BYTES {
            text
        } else {
            serde_json::json!({ "truncated": true, "bytes": text.len() }).to_string()
        }
    }

    /// The stored address: an IPv4 address mapped into IPv6 is the IPv4 address.
    fn ip_text(&self) -> Option<String> {
        self.ip.map(|ip| ip.to_canonical().to_string())
    }
}

const INSERT_SQL: &str = "INSERT INTO audit_log (at, actor, action, target, ip, detail) \
     VALUES ($1, $2, $3, $4, $5, $6)";

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRecord {
    /// Increasing with each entry: newest first is highest first.
    pub id: i64,
    /// Milliseconds.
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub ip: Option<String>,
    /// JSON text.
    pub detail: String,
}

/// Which entries to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<ActionFilter>,
    pub target: Option<String>,
    /// At or after (ms).
    pub from: Option<i64>,
    /// Before (ms).
    pub to: Option<i64>,
    /// Entries older than this id (the last one of the previous page).
    pub before_id: Option<i64>,
}

/// A bound parameter of the filter's query.
enum Param {
    Text(String),
    Int(i64),
}

impl AuditFilter {
    /// The WHERE clause with only the conditions set (so each uses its index) and its
    /// parameters in order.
    fn clause(&self) -> (String, Vec<Param>) {
        let mut conds: Vec<String> = Vec::new();
        let mut params: Vec<Param> = Vec::new();
        let mut add = |cond: &str, p: Param| {
            params.push(p);
            conds.push(cond.replace('?', &format!("${}", params.len())));
        };
        if let Some(actor) = &self.actor {
            add("actor = ?", Param::Text(actor.clone()));
        }
        match &self.action {
            Some(ActionFilter::Exact(a)) => add("action = ?", Param::Text(a.as_str().into())),
            // `api_key.` holds a LIKE wildcard (`_`): the group is matched literally.
            Some(ActionFilter::Prefix(p)) => add(
                "action LIKE ? ESCAPE '\\'",
                Param::Text(super::like_pattern(p, false)),
            ),
            None => {}
        }
        if let Some(target) = &self.target {
            add("target = ?", Param::Text(target.clone()));
        }
        if let Some(from) = self.from {
            add("at >= ?", Param::Int(from));
        }
        if let Some(to) = self.to {
            add("at < ?", Param::Int(to));
        }
        if let Some(id) = self.before_id {
            add("id < ?", Param::Int(id));
        }
        let clause = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        (clause, params)
    }
}

impl Tx {
    /// Records `entry` in this transaction: it commits, or rolls back, with the act.
    pub async fn audit(&mut self, entry: &AuditEntry) -> StoreResult<()> {
        with_conn!(self, |conn| {
            sqlx::query(INSERT_SQL)
                .bind(now_ms())
                .bind(entry.actor.to_string())
                .bind(entry.action.as_str())
                .bind(&entry.target)
                .bind(entry.ip_text())
                .bind(entry.detail_text())
                .execute(&mut *conn)
                .await?;
        });
        Ok(())
    }
}

impl Store {
    /// Records `entry` on its own, for an act that has no transaction of its own (a refused
    /// sign-in, a download).
    pub async fn audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        with_pool!(self, |pool| {
            sqlx::query(INSERT_SQL)
                .bind(now_ms())
                .bind(entry.actor.to_string())
                .bind(entry.action.as_str())
                .bind(&entry.target)
                .bind(entry.ip_text())
                .bind(entry.detail_text())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Up to `limit` entries `filter` selects, newest first.
    pub async fn audit_page(
        &self,
        filter: &AuditFilter,
        limit: i64,
    ) -> StoreResult<Vec<AuditRecord>> {
        let (clause, params) = filter.clause();
        let sql = format!(
            "SELECT id, at, actor, action, target, ip, detail FROM audit_log {clause} \
             ORDER BY id DESC LIMIT ${}",
            params.len() + 1
        );
        Ok(with_reader!(self, |pool| {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()));
            for p in &params {
                q = match p {
                    Param::Text(s) => q.bind(s.as_str()),
                    Param::Int(i) => q.bind(*i),
                };
            }
            q.bind(limit).fetch_all(pool).await?
        }))
    }

    /// Deletes up to `batch` entries recorded before `older_than` (ms), oldest first; how many
    /// went. The retention job calls it until a batch comes back short, so no statement holds
    /// the table (or SQLite's one writer) for long.
    pub async fn prune_audit(&self, older_than: i64, batch: i64) -> StoreResult<u64> {
        Ok(with_pool!(self, |pool| {
            sqlx::query(
                "DELETE FROM audit_log WHERE id IN \
                 (SELECT id FROM audit_log WHERE at < $1 ORDER BY id LIMIT $2)",
            )
            .bind(older_than)
            .bind(batch)
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_binds_only_what_is_set_in_order() {
        let (clause, params) = AuditFilter::default().clause();
        assert_eq!(clause, "");
        assert!(params.is_empty());
        let f = AuditFilter {
            actor: Some("operator".into()),
            action: Some(ActionFilter::Prefix("api_key.".into())),
            to: Some(5),
            before_id: Some(9),
            ..Default::default()
        };
        let (clause, params) = f.clause();
        assert_eq!(
            clause,
            "WHERE actor = $1 AND action LIKE $2 ESCAPE '\\' AND at < $3 AND id < $4"
        );
        assert!(matches!(&params[1], Param::Text(p) if p == "api\\_key.%"));
        assert!(matches!(params[3], Param::Int(9)));
    }

    #[test]
    fn an_oversized_detail_is_replaced_by_its_size() {
        let small = AuditEntry::new(Actor::System, Action::WebhookProcessed)
            .detail(serde_json::json!({"type": "checkout.session.completed"}));
        assert_eq!(
            small.detail_text(),
            r#"{"type":"checkout.session.completed"}"#
        );
        let big = small.detail(serde_json::json!({ "x": "y".repeat(MAX_DETAIL_BYTES) }));
        let kept: Value = serde_json::from_str(&big.detail_text()).unwrap();
        assert_eq!(kept["truncated"], true);
        assert_eq!(kept["bytes"], MAX_DETAIL_BYTES + 8);
    }

    #[test]
    fn mapped_ipv4_addresses_are_stored_as_ipv4() {
        let e = AuditEntry::new(Actor::Anonymous, Action::LoginFailed)
            .ip(Some("::ffff:203.0.113.7".parse().unwrap()));
        assert_eq!(e.ip_text().as_deref(), Some("203.0.113.7"));
    }
}
