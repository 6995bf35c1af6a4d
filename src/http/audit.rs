//! `GET /admin/audit`: the operator pages through the audit log (`store::audit`), newest first,
//! with filters. Reading the log is not itself audited (it changes nothing and exports nothing).
//! A browser asking for HTML gets the console's page of the same entries instead
//! (`console::logs`).

use axum::Json;
use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::admin::Operator;
use super::error::{ApiError, AppResult, ErrorBody};
use super::extract::QueryParams;
use crate::domain::audit::{ActionFilter, Actor};
use crate::store::{AuditFilter, AuditRecord, ms_to_datetime};

/// Page size when none is asked for.
const DEFAULT_LIMIT: i64 = 100;
/// Largest page.
const MAX_LIMIT: i64 = 500;
/// Longest `target` filter.
const MAX_TARGET_CHARS: usize = 256;

/// The filters of `GET /admin/audit`; each one given narrows the entries (all of them must hold).
#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Who acted, exactly: `operator`, `tenant:<tenant id>`, `user:<email>`, `stripe`, `system`
    /// or `anonymous`.
    pub actor: Option<String>,
    /// What was done: a code (`login.failed`) or a group with its dot (`login.`).
    pub action: Option<String>,
    /// What it was done to, exactly: a tenant id, a key id, a Stripe event id.
    pub target: Option<String>,
    /// Entries at or after this time: a date (YYYY-MM-DD, midnight UTC) or an RFC 3339 time.
    pub from: Option<String>,
    /// Entries before this time: a date (YYYY-MM-DD, midnight UTC) or an RFC 3339 time.
    pub to: Option<String>,
    /// Page size, 1–500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page (with the same filters).
    pub cursor: Option<String>,
}

/// One audit log entry.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AuditLogEntry {
    /// Increases with each entry.
    pub id: i64,
    /// When (RFC 3339, milliseconds, UTC).
    pub at: String,
    /// Who: `operator`, `tenant:<id>`, `user:<email>`, `stripe`, `system` or `anonymous`.
    #[schema(example = "operator")]
    pub actor: String,
    /// What, as a stable dotted code.
    #[schema(example = "operator.approve")]
    pub action: String,
    /// What it was done to (a tenant id, a key id, an event id), if anything.
    #[schema(required = true)]
    pub target: Option<String>,
    /// The client's address, when it came over HTTP.
    #[schema(required = true)]
    pub ip: Option<String>,
    /// What else was recorded (the status moved from and to, why a sign-in failed …).
    #[schema(value_type = Object)]
    pub detail: Value,
}

impl From<AuditRecord> for AuditLogEntry {
    fn from(r: AuditRecord) -> Self {
        let detail = serde_json::from_str(&r.detail)
            .unwrap_or_else(|_| serde_json::json!({ "unreadable": r.detail }));
        AuditLogEntry {
            id: r.id,
            at: ms_to_datetime(r.at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            actor: r.actor,
            action: r.action,
            target: r.target,
            ip: r.ip,
            detail,
        }
    }
}

/// A page of the audit log.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditLogEntry>,
    /// Pass as `cursor` (with the same filters) for the next page; null on the last one.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Operator: the audit log, newest first, filtered and paged.
#[utoipa::path(get, path = "/admin/audit", tag = "operators",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of entries (a browser asking for HTML gets the console's page of them)",
            content((AuditPage = "application/json"), (String = "text/html"))),
        (status = 303, description = "A browser asking for HTML (Accept: text/html, no Authorization) without an operator console session: to /admin/login"),
        (status = 400, description = "A filter, the limit or the cursor is invalid; `field` names it", body = ErrorBody),
        (status = 401, description = "Missing or wrong ADMIN_TOKEN", body = ErrorBody),
        (status = 403, description = "Operator endpoints are disabled (no ADMIN_TOKEN is set)", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
pub async fn audit_log(
    State(state): State<AppState>,
    _operator: Operator,
    QueryParams(q): QueryParams<AuditQuery>,
) -> AppResult<Json<AuditPage>> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(invalid("limit", format!("limit must be 1–{MAX_LIMIT}")));
    }
    let (entries, next_cursor) = read_page(&state, &filter_of(&q)?, limit).await?;
    Ok(Json(AuditPage {
        entries,
        next_cursor,
    }))
}

/// The filter the query's parameters ask for (all but the page size), or a 400 naming the
/// parameter at fault.
pub(crate) fn filter_of(q: &AuditQuery) -> AppResult<AuditFilter> {
    let filter = AuditFilter {
        actor: match given(&q.actor) {
            Some(a) => Some(
                Actor::parse(a)
                    .ok_or_else(|| {
                        invalid(
                            "actor",
                            format!(
                                "actor '{a}' is none of operator, tenant:<tenant id>, \
                                 user:<email>, stripe, system, anonymous"
                            ),
                        )
                    })?
                    .to_string(),
            ),
            None => None,
        },
        action: match given(&q.action) {
            Some(a) => Some(ActionFilter::parse(a).ok_or_else(|| {
                invalid(
                    "action",
                    format!(
                        "action '{a}' is neither a code ({}) nor a group with its dot ({})",
                        crate::domain::audit::Action::ALL
                            .map(|a| a.as_str())
                            .join(", "),
                        ActionFilter::groups().join(", ")
                    ),
                )
            })?),
            None => None,
        },
        target: match given(&q.target) {
            Some(t) if t.chars().count() > MAX_TARGET_CHARS => {
                return Err(invalid(
                    "target",
                    format!("target is longer than {MAX_TARGET_CHARS} characters"),
                ));
            }
            other => other.map(str::to_string),
        },
        from: time_param("from", &q.from)?,
        to: time_param("to", &q.to)?,
        before_id: match given(&q.cursor) {
            Some(c) => Some(decode_cursor(c).ok_or_else(|| {
                invalid(
                    "cursor",
                    "cursor is not a next_cursor this endpoint returned",
                )
            })?),
            None => None,
        },
    };
    if let (Some(from), Some(to)) = (filter.from, filter.to)
        && from >= to
    {
        return Err(invalid("to", "to must be later than from"));
    }
    Ok(filter)
}

/// Up to `limit` entries `filter` selects, newest first, and the cursor of the page after.
pub(crate) async fn read_page(
    state: &AppState,
    filter: &AuditFilter,
    limit: i64,
) -> AppResult<(Vec<AuditLogEntry>, Option<String>)> {
    let mut rows = state.store.audit_page(filter, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|r| encode_cursor(r.id)))
        .flatten();
    Ok((
        rows.into_iter().map(AuditLogEntry::from).collect(),
        next_cursor,
    ))
}

fn invalid(field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_query_parameter", message).with_field(field)
}

/// A parameter that was given a value (an empty one counts as not given).
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

fn time_param(name: &'static str, value: &Option<String>) -> AppResult<Option<i64>> {
    let Some(v) = given(value) else {
        return Ok(None);
    };
    crate::domain::parse_day_or_time(v)
        .map(|t| Some(t.timestamp_millis()))
        .ok_or_else(|| {
            invalid(
                name,
                format!("{name} must be a date (YYYY-MM-DD) or an RFC 3339 time, not '{v}'"),
            )
        })
}

/// The cursor after the entry `id`: opaque to clients, so its form may change.
fn encode_cursor(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("audit:{id}"))
}

fn decode_cursor(cursor: &str) -> Option<i64> {
    let raw = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let id: i64 = std::str::from_utf8(&raw)
        .ok()?
        .strip_prefix("audit:")?
        .parse()
        .ok()?;
    (id > 0).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_and_anything_else_is_refused() {
        assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
        for bad in ["", "42", "YXVkaXQ6", "YXVkaXQ6LTE", "not base64!"] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }
}
