//! `/admin/at-risk`: the stuck customers of `GET /activation/at-risk`, filtered by reason and
//! "needs a human", paged, each open flag with a "mark resolved" form (and an optional note).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{CheckedForm, Chrome, SignedIn, given, problem, render, tenants::tone};
use crate::analytics::at_risk::{AtRiskEntry, Cursor, Filter, Reason};
use crate::domain::TenantId;
use crate::domain::audit::{Action, Actor};
use crate::http::AppState;
use crate::http::error::{ApiError, AppResult};
use crate::http::extract::{ClientIp, PathParam};
use crate::store::{AuditEntry, now_ms};

/// Stuck tenants per page.
const PAGE_SIZE: i64 = 50;
/// Longest resolution note.
const MAX_NOTE_CHARS: usize = 500;

#[derive(Deserialize, Default)]
pub struct RiskQuery {
    reason: Option<String>,
    needs_human: Option<String>,
    cursor: Option<String>,
    done: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/at_risk.html")]
struct RiskPage {
    chrome: Chrome,
    reasons: [Reason; 4],
    reason: String,
    needs_human: String,
    error: Option<String>,
    entries: Vec<(AtRiskEntry, &'static str)>,
    total: i64,
    /// Where a resolve form comes back to: this very list.
    back: String,
    next: Option<String>,
    first_page: Option<String>,
}

/// `GET /admin/at-risk?reason=&needs_human=&cursor=`.
pub async fn page(
    State(state): State<AppState>,
    operator: SignedIn,
    Query(q): Query<RiskQuery>,
) -> AppResult<Response> {
    let filters = |cursor: Option<&str>| {
        super::query_string(&[
            ("reason", given(&q.reason)),
            ("needs_human", given(&q.needs_human)),
            ("cursor", cursor),
        ])
    };
    let mut page = RiskPage {
        chrome: Chrome::new(&operator, "/admin/at-risk").done(q.done.as_deref()),
        reasons: Reason::ALL,
        reason: given(&q.reason).unwrap_or_default().to_string(),
        needs_human: given(&q.needs_human).unwrap_or_default().to_string(),
        error: None,
        entries: Vec::new(),
        total: 0,
        back: format!("/admin/at-risk?{}", filters(given(&q.cursor))),
        next: None,
        first_page: None,
    };
    let parsed = (|| {
        let reason = given(&q.reason)
            .map(|r| Reason::parse(r).ok_or(format!("There is no reason '{r}'.")))
            .transpose()?;
        let needs_human = match given(&q.needs_human) {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(v) => return Err(format!("'{v}' is neither yes (true) nor no (false).")),
        };
        let cursor = given(&q.cursor)
            .map(|c| {
                Cursor::parse(c).ok_or("That page link is not one this console made.".to_string())
            })
            .transpose()?;
        Ok((
            Filter {
                reason,
                needs_human,
            },
            cursor,
        ))
    })();
    let (filter, cursor) = match parsed {
        Ok(p) => p,
        Err(e) => {
            page.error = Some(e);
            return Ok(render(StatusCode::BAD_REQUEST, &page));
        }
    };
    let list = state
        .store
        .at_risk(&filter, PAGE_SIZE, cursor.as_ref(), now_ms())
        .await?;
    page.next = list
        .next_cursor
        .map(|c| format!("/admin/at-risk?{}", filters(Some(&c.to_string()))));
    if cursor.is_some() {
        page.first_page = Some(format!("/admin/at-risk?{}", filters(None)));
    }
    page.total = list.total;
    page.entries = list
        .tenants
        .into_iter()
        .map(|e| {
            let t = tone(e.status);
            (e, t)
        })
        .collect();
    Ok(render(StatusCode::OK, &page))
}

/// `POST /admin/at-risk/{tenant_id}/resolve` (form: `note`, `back`): resolves the tenant's open
/// flags, as `POST /activation/at-risk/{tenant_id}/resolve` does, audited as the operator.
pub async fn resolve(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    PathParam(raw): PathParam<String>,
    form: CheckedForm,
) -> AppResult<Response> {
    let tenant = TenantId::parse(&raw).ok_or_else(|| ApiError::not_found("tenant"))?;
    let back = form
        .get("back")
        .filter(|b| b.starts_with("/admin/at-risk"))
        .unwrap_or("/admin/at-risk")
        .to_string();
    let note = form.get("note");
    if note.is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS) {
        return Ok(problem(
            StatusCode::BAD_REQUEST,
            &form.operator,
            "The note is too long",
            &format!("A note has at most {MAX_NOTE_CHARS} characters; nothing was changed."),
            (&back, "Back to the list"),
        ));
    }
    let resolved = state
        .store
        .resolve_at_risk(&tenant, "operator", note, now_ms())
        .await?;
    let Some(entry) = resolved else {
        return Ok(problem(
            StatusCode::NOT_FOUND,
            &form.operator,
            "Nothing to resolve",
            "This tenant has no open flag: it was never flagged by a digest, or someone resolved \
             it already.",
            (&back, "Back to the list"),
        ));
    };
    let mut audit = AuditEntry::new(Actor::Operator, Action::OperatorResolveAtRisk)
        .ip(Some(ip))
        .target(tenant.as_str())
        .with("via", "console")
        .with("reason", entry.reason.as_str());
    if let Some(n) = note {
        audit = audit.with("note", n);
    }
    state.store.audit(&audit).await?;
    Ok(super::done(&back, "resolved"))
}
