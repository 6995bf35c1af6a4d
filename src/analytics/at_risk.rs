//! Stuck customers (the seed's hybrid approach: escalate to humans). A paying tenant is stuck
//! when its furthest activation milestone is older than that step's threshold, or when its
//! provisioning failed and was not retried; each stuck tenant has exactly one reason at a time.
//! Computed from the server's own truth (`tenant_activation`, `tenants.status`), through the
//! partial indexes of migration 0013, never from the event log.
//!
//! The daily digest marks each newly stuck tenant "needs a human" once per reason
//! (`at_risk_flags`) until an operator resolves it. The digest's email is not sent from here
//! (analytics does not know email): the caller flags in its transaction and composes the email.

use serde::Serialize;

use crate::domain::{Plan, TenantId, TenantStatus};
use crate::store::{Store, StoreError, StoreResult, Tx, ms_to_datetime, values_rows};
use crate::{with_conn, with_reader};

const HOUR_MS: i64 = 3_600_000;

/// Why a tenant is stuck (a stable code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = AtRiskReason)]
pub enum Reason {
    /// Paid and provisioned, no sign-in 24 h after the workspace was ready.
    NoLogin,
    /// Signed in, no document 24 h after the first sign-in.
    NoDocument,
    /// A document, no query 48 h after the first document.
    NoQuery,
    /// Provisioning failed and was not retried (the tenant is `failed`).
    ProvisioningFailed,
}

impl Reason {
    /// Every reason, in funnel order.
    pub const ALL: [Reason; 4] = [
        Reason::NoLogin,
        Reason::NoDocument,
        Reason::NoQuery,
        Reason::ProvisioningFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoLogin => "no_login",
            Reason::NoDocument => "no_document",
            Reason::NoQuery => "no_query",
            Reason::ProvisioningFailed => "provisioning_failed",
        }
    }

    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// How long after its last milestone a tenant becomes stuck (a failed provisioning is
    /// stuck at once: the customer cannot do anything until someone retries it).
    pub fn threshold_ms(self) -> i64 {
        match self {
            Reason::NoLogin | Reason::NoDocument => 24 * HOUR_MS,
            Reason::NoQuery => 48 * HOUR_MS,
            Reason::ProvisioningFailed => 0,
        }
    }

    /// The reason in a sentence, for the operator.
    pub fn sentence(self) -> &'static str {
        match self {
            Reason::NoLogin => {
                "Paid and provisioned, but nobody signed in within 24 hours of the workspace being ready."
            }
            Reason::NoDocument => {
                "Signed in, but no document was uploaded within 24 hours of the first sign-in."
            }
            Reason::NoQuery => {
                "Uploaded a document, but ran no query within 48 hours of the first upload."
            }
            Reason::ProvisioningFailed => {
                "Provisioning the workspace failed and has not been retried."
            }
        }
    }

    /// What a person could do about it.
    pub fn intervention(self) -> &'static str {
        match self {
            Reason::NoLogin => {
                "Write to or call the customer: check that the welcome email arrived (spam folder?) and offer a new sign-in link from the login page."
            }
            Reason::NoDocument => {
                "Offer a short onboarding call, or point them to the sample data and the upload guide (POST /v1/documents) so they can try it on their own content."
            }
            Reason::NoQuery => {
                "Show them how to run a first query on their document (POST /v1/query or the setup wizard) and ask whether something got in the way."
            }
            Reason::ProvisioningFailed => {
                "Read the failure reason in the tenant's status history, fix the cause, then retry with POST /provision and tell the customer when the workspace is ready."
            }
        }
    }

    /// The SQL that finds tenants stuck for this reason (see [`Branch`]).
    fn branch(self) -> Branch {
        let d = self.threshold_ms();
        let r = self.as_str();
        // The terms of the step's partial index (migration 0013), verbatim so that the
        // planners of both stores use it, and the threshold (`$1` is now). The index also
        // holds `at_risk_flag`, the reason of the tenant's open flag: "needs a human" is
        // read off the index too.
        let active = |column: &'static str, reached: &'static str| Branch {
            table: "tenant_activation a",
            join: " JOIN tenants t ON t.id = a.tenant_id",
            stuck: format!("a.tenant_status = 'active' AND {reached} AND a.{column} <= $1 - {d}"),
            since: format!("(a.{column} + {d})"),
            order: format!("a.{column}"),
            offset: d,
            id: "a.tenant_id",
            open: format!("a.at_risk_flag = '{r}'"),
            not_open: format!("(a.at_risk_flag IS NULL OR a.at_risk_flag <> '{r}')"),
            count_flags: false,
        };
        match self {
            Reason::NoLogin => active(
                "provisioned_at",
                "a.provisioned_at IS NOT NULL AND a.first_login_at IS NULL \
                 AND a.first_document_at IS NULL AND a.first_query_at IS NULL",
            ),
            Reason::NoDocument => active(
                "first_login_at",
                "a.first_login_at IS NOT NULL AND a.first_document_at IS NULL \
                 AND a.first_query_at IS NULL",
            ),
            Reason::NoQuery => active(
                "first_document_at",
                "a.first_document_at IS NOT NULL AND a.first_query_at IS NULL",
            ),
            // A tenant's `updated_at` is the moment of its last status change (migration
            // 0005), here when it failed; `tenants_status_idx` holds it in order. A flag of an
            // earlier failure does not count as open for this one.
            Reason::ProvisioningFailed => Branch {
                table: "tenants t",
                join: "",
                stuck: "t.status = 'failed' AND t.updated_at <= $1".into(),
                since: "t.updated_at".into(),
                order: "t.updated_at".into(),
                offset: 0,
                id: "t.id",
                open: "(f.resolved_at IS NULL AND f.since = t.updated_at)".into(),
                not_open:
                    "(f.tenant_id IS NULL OR f.resolved_at IS NOT NULL OR f.since <> t.updated_at)"
                        .into(),
                count_flags: true,
            },
        }
    }

    /// Whether the reason's stuck tenants are kept in `tenant_activation` (whose
    /// `at_risk_flag` mirrors their open flag).
    fn in_activation(self) -> bool {
        self != Reason::ProvisioningFailed
    }
}

/// One reason's query parts: the table the stuck condition reads (through its index) and the
/// join that adds the tenant's details to a page; the condition (`$1` is now); when the tenant
/// became stuck; the page's order, `since` minus `offset` (an indexed column); and what
/// "needs a human" is (on `f`, the tenant's flag, when `count_flags`).
struct Branch {
    table: &'static str,
    join: &'static str,
    stuck: String,
    since: String,
    order: String,
    offset: i64,
    id: &'static str,
    open: String,
    not_open: String,
    count_flags: bool,
}

/// The entry's columns (`t` the tenant, `f` its flag for the reason).
const COLUMNS: &str = "t.id AS tenant_id, t.company_name, t.email, t.plan, t.status, \
     f.since AS flag_since, f.flagged_at, f.resolved_at, f.resolved_by, f.resolution_note";

impl Branch {
    /// The tenant's flag for `reason`, if any, as `f`.
    fn flags(&self, reason: Reason) -> String {
        format!(
            " LEFT JOIN at_risk_flags f ON f.tenant_id = {} AND f.reason = '{}'",
            self.id,
            reason.as_str()
        )
    }

    /// The stuck tenants, with `conditions` added, each with its flag if it has one.
    fn select(&self, reason: Reason, conditions: &str) -> String {
        format!(
            "SELECT {COLUMNS}, '{r}' AS reason, {since} AS since FROM {table}{join}{flags} \
             WHERE {stuck}{conditions}",
            r = reason.as_str(),
            since = self.since,
            table = self.table,
            join = self.join,
            flags = self.flags(reason),
            stuck = self.stuck,
        )
    }

    /// The "needs a human" filter.
    fn needs_human(&self, needs_human: Option<bool>) -> String {
        match needs_human {
            None => String::new(),
            Some(true) => format!(" AND {}", self.open),
            Some(false) => format!(" AND {}", self.not_open),
        }
    }

    /// How many tenants are stuck for the reason (the index's entries alone, but for failed
    /// provisionings filtered by their flags).
    fn count(&self, reason: Reason, needs_human: Option<bool>) -> String {
        let flags = if self.count_flags && needs_human.is_some() {
            self.flags(reason)
        } else {
            String::new()
        };
        format!(
            "SELECT COUNT(*) FROM {}{flags} WHERE {}{}",
            self.table,
            self.stuck,
            self.needs_human(needs_human)
        )
    }

    /// After the cursor (`$2` the since, `$3` the tenant id), in the order of the page.
    fn after_cursor(&self) -> String {
        let (o, d, id) = (&self.order, self.offset, self.id);
        format!(" AND ({o} > $2 - {d} OR ({o} = $2 - {d} AND {id} > $3))")
    }

    fn order_by(&self) -> String {
        format!(" ORDER BY {}, {}", self.order, self.id)
    }
}

/// Which stuck tenants to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub reason: Option<Reason>,
    /// Only tenants flagged and not resolved (true), or the others (false).
    pub needs_human: Option<bool>,
}

/// Where a page ends: the `since` (ms) and id of its last tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub since: i64,
    pub tenant_id: String,
}

impl Cursor {
    /// A cursor this API returned (`{since}_{tenant_id}`).
    pub fn parse(s: &str) -> Option<Cursor> {
        let (since, id) = s.split_once('_')?;
        let tenant = TenantId::parse(id)?;
        Some(Cursor {
            since: since.parse().ok()?,
            tenant_id: tenant.to_string(),
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.since, self.tenant_id)
    }
}

/// A stuck tenant, with what the operator needs to act and its "needs a human" state.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AtRiskEntry {
    pub tenant_id: String,
    pub company_name: String,
    /// The customer's address, to reach them.
    pub email: String,
    pub plan: Plan,
    pub status: TenantStatus,
    pub reason: Reason,
    /// The reason in a sentence.
    pub reason_text: String,
    /// RFC 3339: when the tenant became stuck (its last milestone plus the threshold, or when
    /// provisioning failed).
    pub since: String,
    /// What a person could do about it, in a sentence.
    pub suggested_intervention: String,
    /// Flagged by a digest (for this time of being stuck) and not resolved yet.
    pub needs_human: bool,
    /// RFC 3339: when a digest flagged it for this reason.
    pub flagged_at: Option<String>,
    /// RFC 3339: when an operator resolved the flag.
    pub resolved_at: Option<String>,
    /// Who resolved it (`operator`).
    pub resolved_by: Option<String>,
    /// What the operator noted when resolving.
    pub resolution_note: Option<String>,
    /// `since` in Unix milliseconds (the page's cursor and the digest's dates).
    #[serde(skip)]
    pub since_ms: i64,
}

/// A page of the list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub tenants: Vec<AtRiskEntry>,
    /// Stuck tenants matching the filter, over every page.
    pub total: i64,
    /// Where the next page starts; `None` on the last one.
    pub next_cursor: Option<Cursor>,
}

/// RFC 3339 with milliseconds, UTC.
fn rfc3339(ms: i64) -> String {
    ms_to_datetime(ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(sqlx::FromRow)]
struct Row {
    tenant_id: String,
    company_name: String,
    email: String,
    plan: String,
    status: String,
    reason: String,
    since: i64,
    flag_since: Option<i64>,
    flagged_at: Option<i64>,
    resolved_at: Option<i64>,
    resolved_by: Option<String>,
    resolution_note: Option<String>,
}

impl Row {
    fn into_entry(self) -> StoreResult<AtRiskEntry> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("{what} of {}", self.tenant_id));
        let reason = Reason::parse(&self.reason).ok_or_else(|| corrupt("at-risk reason"))?;
        let plan = self.plan.parse().map_err(|_| corrupt("plan"))?;
        let status = self.status.parse().map_err(|_| corrupt("status"))?;
        Ok(AtRiskEntry {
            // An open flag of an earlier episode (provisioning failed again) does not count:
            // the next digest flags the new one.
            needs_human: self.flag_since == Some(self.since) && self.resolved_at.is_none(),
            reason_text: reason.sentence().to_string(),
            suggested_intervention: reason.intervention().to_string(),
            since: rfc3339(self.since),
            since_ms: self.since,
            flagged_at: self.flagged_at.map(rfc3339),
            resolved_at: self.resolved_at.map(rfc3339),
            reason,
            plan,
            status,
            tenant_id: self.tenant_id,
            company_name: self.company_name,
            email: self.email,
            resolved_by: self.resolved_by,
            resolution_note: self.resolution_note,
        })
    }
}

/// The reasons a filter asks for.
fn reasons(filter: &Filter) -> Vec<Reason> {
    match filter.reason {
        Some(r) => vec![r],
        None => Reason::ALL.to_vec(),
    }
}

impl Store {
    /// The tenants stuck at `now` that `filter` selects, oldest stuck first (then by tenant
    /// id), `limit` of them after `after`, and how many there are in all. Each reason reads its
    /// own index range in page order and stops after `limit + 1` rows; the pages are merged.
    /// The counts read index entries (and, for failed provisionings, their flags).
    pub async fn at_risk(
        &self,
        filter: &Filter,
        limit: i64,
        after: Option<&Cursor>,
        now: i64,
    ) -> StoreResult<Page> {
        let mut rows: Vec<Row> = Vec::new();
        let mut total = 0;
        for reason in reasons(filter) {
            let b = reason.branch();
            let mut conditions = b.needs_human(filter.needs_human);
            if after.is_some() {
                conditions.push_str(&b.after_cursor());
            }
            let sql = format!(
                "{}{} LIMIT {}",
                b.select(reason, &conditions),
                b.order_by(),
                limit + 1
            );
            let count = b.count(reason, filter.needs_human);
            let (page, n): (Vec<Row>, i64) = with_reader!(self, |pool| {
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(now);
                if let Some(c) = after {
                    q = q.bind(c.since).bind(c.tenant_id.as_str());
                }
                let page = q.fetch_all(pool).await?;
                let n = sqlx::query_scalar(sqlx::AssertSqlSafe(count))
                    .bind(now)
                    .fetch_one(pool)
                    .await?;
                (page, n)
            });
            rows.extend(page);
            total += n;
        }
        rows.sort_by(|a, b| (a.since, &a.tenant_id).cmp(&(b.since, &b.tenant_id)));
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let tenants = rows
            .into_iter()
            .map(Row::into_entry)
            .collect::<StoreResult<Vec<_>>>()?;
        let next_cursor = more
            .then(|| {
                tenants.last().map(|t| Cursor {
                    since: t.since_ms,
                    tenant_id: t.tenant_id.clone(),
                })
            })
            .flatten();
        Ok(Page {
            tenants,
            total,
            next_cursor,
        })
    }

    /// Resolves every open flag of `tenant` (by `by`, with an optional note); the entry of the
    /// most recent one, or `None` when the tenant has no open flag.
    pub async fn resolve_at_risk(
        &self,
        tenant: &TenantId,
        by: &str,
        note: Option<&str>,
        now: i64,
    ) -> StoreResult<Option<AtRiskEntry>> {
        let mut tx = self.begin().await?;
        let resolved: Vec<(String, i64, i64)> = with_conn!(&mut tx, |conn| {
            let resolved = sqlx::query_as(
                "UPDATE at_risk_flags SET resolved_at = $1, resolved_by = $2, resolution_note = $3 \
                 WHERE tenant_id = $4 AND resolved_at IS NULL RETURNING reason, since, flagged_at",
            )
            .bind(now)
            .bind(by)
            .bind(note)
            .bind(tenant.as_str())
            .fetch_all(&mut *conn)
            .await?;
            sqlx::query("UPDATE tenant_activation SET at_risk_flag = NULL WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .execute(&mut *conn)
                .await?;
            resolved
        });
        let Some((reason, since, flagged_at)) = resolved.into_iter().max_by_key(|r| r.1) else {
            return Ok(None);
        };
        tx.commit().await?;
        let t = self
            .tenant(tenant)
            .await?
            .ok_or(StoreError::NotFound("tenant"))?;
        Row {
            tenant_id: t.id.to_string(),
            company_name: t.company_name,
            email: t.email,
            plan: t.plan.as_str().to_string(),
            status: t.status.as_str().to_string(),
            reason,
            since,
            flag_since: Some(since),
            flagged_at: Some(flagged_at),
            resolved_at: Some(now),
            resolved_by: Some(by.to_string()),
            resolution_note: note.map(str::to_string),
        }
        .into_entry()
        .map(Some)
    }
}

/// Flags written per statement.
const FLAG_BATCH: usize = 200;

impl Tx {
    /// Claims the digest of `day` (a date) for this transaction; false when a digest of that
    /// day was already sent (or is being sent by a transaction that holds the claim).
    pub async fn claim_at_risk_digest(&mut self, day: &str, now: i64) -> StoreResult<bool> {
        let n = with_conn!(self, |conn| {
            sqlx::query(
                "INSERT INTO at_risk_digests (day, ran_at, flagged) VALUES ($1, $2, 0) \
                 ON CONFLICT (day) DO NOTHING",
            )
            .bind(day)
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Records what the digest of `day` flagged and the email it queued.
    pub async fn record_at_risk_digest(
        &mut self,
        day: &str,
        flagged: usize,
        email_id: Option<&str>,
    ) -> StoreResult<()> {
        with_conn!(self, |conn| {
            sqlx::query("UPDATE at_risk_digests SET flagged = $1, email_id = $2 WHERE day = $3")
                .bind(flagged as i64)
                .bind(email_id)
                .bind(day)
                .execute(&mut *conn)
                .await?;
        });
        Ok(())
    }

    /// Marks "needs a human" every tenant stuck at `now` that no digest flagged yet for its
    /// reason, or that became stuck again for it since (a new episode: its flag starts over);
    /// returns them, oldest stuck first.
    pub async fn flag_new_at_risk(&mut self, now: i64) -> StoreResult<Vec<AtRiskEntry>> {
        let mut rows: Vec<Row> = Vec::new();
        for reason in Reason::ALL {
            let b = reason.branch();
            let sql = format!(
                "{}{}",
                b.select(
                    reason,
                    &format!(" AND (f.tenant_id IS NULL OR f.since <> {})", b.since)
                ),
                b.order_by()
            );
            let found: Vec<Row> = with_conn!(&mut *self, |conn| {
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .fetch_all(&mut *conn)
                    .await?
            });
            for chunk in found.chunks(FLAG_BATCH) {
                self.write_flags(reason, chunk, now).await?;
            }
            rows.extend(found);
        }
        rows.sort_by(|a, b| (a.since, &a.tenant_id).cmp(&(b.since, &b.tenant_id)));
        rows.into_iter()
            .map(|r| {
                Row {
                    flag_since: Some(r.since),
                    flagged_at: Some(now),
                    resolved_at: None,
                    resolved_by: None,
                    resolution_note: None,
                    ..r
                }
                .into_entry()
            })
            .collect()
    }

    /// Opens the flags of `reason` of `rows` (a new one, or a new episode over the old one),
    /// and mirrors them in `tenant_activation.at_risk_flag`, which the list's indexes read.
    async fn write_flags(&mut self, reason: Reason, rows: &[Row], now: i64) -> StoreResult<()> {
        let upsert = format!(
            "INSERT INTO at_risk_flags (tenant_id, reason, since, flagged_at) VALUES {} \
             ON CONFLICT (tenant_id, reason) DO UPDATE SET since = excluded.since, \
             flagged_at = excluded.flagged_at, resolved_at = NULL, resolved_by = NULL, \
             resolution_note = NULL",
            values_rows(rows.len(), 4)
        );
        let ids: Vec<String> = (2..rows.len() + 2).map(|i| format!("${i}")).collect();
        let mirror = format!(
            "UPDATE tenant_activation SET at_risk_flag = $1 WHERE tenant_id IN ({})",
            ids.join(", ")
        );
        with_conn!(&mut *self, |conn| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(upsert));
            for r in rows {
                q = q
                    .bind(&r.tenant_id)
                    .bind(reason.as_str())
                    .bind(r.since)
                    .bind(now);
            }
            q.execute(&mut *conn).await?;
            if reason.in_activation() {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(mirror)).bind(reason.as_str());
                for r in rows {
                    q = q.bind(&r.tenant_id);
                }
                q.execute(&mut *conn).await?;
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_and_thresholds_follow_the_issue() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
            assert!(r.sentence().ends_with('.') && r.intervention().ends_with('.'));
        }
        assert_eq!(Reason::parse("stuck"), None);
        assert_eq!(Reason::NoLogin.threshold_ms(), 86_400_000);
        assert_eq!(Reason::NoDocument.threshold_ms(), 86_400_000);
        assert_eq!(Reason::NoQuery.threshold_ms(), 2 * 86_400_000);
        assert_eq!(Reason::ProvisioningFailed.threshold_ms(), 0);
    }

    #[test]
    fn cursors_round_trip_and_refuse_what_this_api_never_returned() {
        let c = Cursor {
            since: 1_700_000_000_000,
            tenant_id: "tenant_01JD5Z8W3Q4T6V9X2B7N1K0M3P".into(),
        };
        assert_eq!(Cursor::parse(&c.to_string()), Some(c));
        for bad in ["", "x_tenant_1", "12", "12_user_1", "12_tenant_a b"] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }
}
