//! `/admin/tenants`: the tenants, searched (email, company or id), filtered by status and paged;
//! a tenant's page (status history, provisioning steps with durations, activation events,
//! emails, audit entries, API keys) and its actions, each a CSRF-checked form that does what
//! the operator endpoints and commands do, audited as the operator: retry provisioning, resend
//! the welcome email, approve an enterprise request, suspend.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{CheckedForm, Chrome, SignedIn, given, problem, render, when};
use crate::domain::audit::{Action, Actor};
use crate::domain::{TenantId, TenantStatus};
use crate::http::AppState;
use crate::http::error::{ApiError, AppResult};
use crate::http::extract::{ClientIp, PathParam};
use crate::store::{AuditEntry, AuditFilter, StoreError, Tenant, TenantCursor, TenantSearch};

/// Tenants per page.
const PAGE_SIZE: i64 = 50;
/// Rows of each list on a tenant's page (its newest).
const DETAIL_ROWS: i64 = 50;

/// A tenant as a list shows it.
pub struct TenantRow {
    pub id: String,
    pub company: String,
    pub email: String,
    pub plan: String,
    pub status: String,
    /// The status badge's colour: `good`, `bad`, `warn` or `info`.
    pub tone: &'static str,
    pub created: String,
}

/// The badge colour of a status.
pub fn tone(status: TenantStatus) -> &'static str {
    use TenantStatus::*;
    match status {
        Active => "good",
        Failed | Suspended | Canceled => "bad",
        PastDue | PendingPayment | SalesReview => "warn",
        Provisioning | Abandoned => "info",
    }
}

impl From<Tenant> for TenantRow {
    fn from(t: Tenant) -> Self {
        TenantRow {
            tone: tone(t.status),
            status: t.status.to_string(),
            id: t.id.to_string(),
            company: t.company_name,
            email: t.email,
            plan: t.plan.to_string(),
            created: when(t.created_at),
        }
    }
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    q: Option<String>,
    status: Option<String>,
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/tenants.html")]
struct ListPage {
    chrome: Chrome,
    q: String,
    status: String,
    statuses: [TenantStatus; 9],
    error: Option<String>,
    rows: Vec<TenantRow>,
    total: i64,
    /// The next page's address, when there is one.
    next: Option<String>,
    first_page: Option<String>,
}

/// `GET /admin/tenants?q=&status=&cursor=`.
pub async fn list(
    State(state): State<AppState>,
    operator: SignedIn,
    Query(q): Query<ListQuery>,
) -> AppResult<Response> {
    let mut page = ListPage {
        chrome: Chrome::new(&operator, "/admin/tenants"),
        q: given(&q.q).unwrap_or_default().to_string(),
        status: given(&q.status).unwrap_or_default().to_string(),
        statuses: TenantStatus::ALL,
        error: None,
        rows: Vec::new(),
        total: 0,
        next: None,
        first_page: None,
    };
    let status = match given(&q.status).map(str::parse::<TenantStatus>) {
        Some(Err(e)) => {
            page.error = Some(e);
            return Ok(render(StatusCode::BAD_REQUEST, &page));
        }
        other => other.and_then(Result::ok),
    };
    let cursor = match given(&q.cursor).map(TenantCursor::parse) {
        Some(None) => {
            page.error = Some(
                "That page link is not one this console made; start again from the first page."
                    .into(),
            );
            return Ok(render(StatusCode::BAD_REQUEST, &page));
        }
        other => other.flatten(),
    };
    let search = TenantSearch {
        text: given(&q.q).map(str::to_string),
        status,
    };
    let (mut tenants, total) = state
        .store
        .search_tenants(&search, PAGE_SIZE + 1, cursor.as_ref())
        .await?;
    let more = tenants.len() as i64 > PAGE_SIZE;
    tenants.truncate(PAGE_SIZE as usize);
    let filters = |cursor: Option<&str>| {
        super::query_string(&[
            ("q", given(&q.q)),
            ("status", given(&q.status)),
            ("cursor", cursor),
        ])
    };
    if more && let Some(last) = tenants.last() {
        let c = TenantCursor::after(last).to_string();
        page.next = Some(format!("/admin/tenants?{}", filters(Some(&c))));
    }
    if cursor.is_some() {
        page.first_page = Some(format!("/admin/tenants?{}", filters(None)));
    }
    page.rows = tenants.into_iter().map(TenantRow::from).collect();
    page.total = total;
    Ok(render(StatusCode::OK, &page))
}

/// A provisioning step: name, outcome, duration, when, detail.
struct StepView {
    step: &'static str,
    outcome: String,
    tone: &'static str,
    duration: String,
    at: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "admin/tenant.html")]
struct TenantPage {
    chrome: Chrome,
    t: TenantRow,
    reason: String,
    activated: String,
    stripe_customer: String,
    history: Vec<Vec<String>>,
    steps: Vec<StepView>,
    events: Vec<Vec<String>>,
    emails: Vec<Vec<String>>,
    audit: Vec<Vec<String>>,
    keys: Vec<Vec<String>>,
    can_retry: bool,
    /// Retrying a tenant still in provisioning forces it (a stuck run).
    force: bool,
    can_resend: bool,
    can_approve: bool,
    can_suspend: bool,
}

#[derive(Deserialize, Default)]
pub struct DoneQuery {
    done: Option<String>,
}

fn tenant_id(raw: &str) -> AppResult<TenantId> {
    TenantId::parse(raw).ok_or_else(|| ApiError::not_found("tenant"))
}

/// `GET /admin/tenants/{tenant_id}`.
pub async fn show(
    State(state): State<AppState>,
    operator: SignedIn,
    PathParam(raw): PathParam<String>,
    Query(q): Query<DoneQuery>,
) -> AppResult<Response> {
    let chrome = Chrome::new(&operator, "/admin/tenants").done(q.done.as_deref());
    let Some(tenant) = (match TenantId::parse(&raw) {
        Some(id) => state.store.tenant(&id).await?,
        None => None,
    }) else {
        return Ok(problem(
            StatusCode::NOT_FOUND,
            &operator,
            "No such tenant",
            "There is no tenant with this id. Search for it by email or company name.",
            ("/admin/tenants", "Search tenants"),
        ));
    };
    let id = tenant.id.clone();
    let store = &state.store;
    let audit_filter = AuditFilter {
        target: Some(id.to_string()),
        ..Default::default()
    };
    let (history, records, events, emails, audit, keys) = tokio::try_join!(
        store.status_history(&id),
        store.provisioning_steps(&id),
        store.activation_events(&id, DETAIL_ROWS),
        store.list_emails(Some(id.as_str()), DETAIL_ROWS),
        store.audit_page(&audit_filter, DETAIL_ROWS),
        store.list_api_keys(&id),
    )?;
    let steps = crate::provisioning::STEPS
        .iter()
        .map(|name| match records.iter().find(|r| r.step == *name) {
            Some(r) => StepView {
                step: name,
                tone: match r.outcome.as_str() {
                    "done" => "good",
                    "failed" => "bad",
                    _ => "warn",
                },
                outcome: r.outcome.clone(),
                duration: super::duration(r.duration_ms),
                at: when(r.completed_at),
                detail: r.detail.clone().unwrap_or_default(),
            },
            None => StepView {
                step: name,
                outcome: "not yet".into(),
                tone: "info",
                duration: String::new(),
                at: String::new(),
                detail: String::new(),
            },
        })
        .collect();
    let status = tenant.status;
    let page = TenantPage {
        chrome,
        reason: tenant.status_reason.clone().unwrap_or_default(),
        activated: tenant.activated_at.map(when).unwrap_or_default(),
        stripe_customer: tenant.stripe_customer_id.clone().unwrap_or_default(),
        history: history
            .into_iter()
            .map(|h| {
                vec![
                    when(h.at),
                    h.from_status.unwrap_or_else(|| "(new)".into()),
                    h.to_status,
                    h.reason,
                    h.actor,
                ]
            })
            .collect(),
        steps,
        events: events
            .into_iter()
            .map(|e| {
                let flagged = if e.flagged { " (no server record)" } else { "" };
                vec![
                    e.occurred_at,
                    e.event_type,
                    format!("{}{flagged}", e.source),
                    e.metadata.to_string(),
                ]
            })
            .collect(),
        emails: emails
            .into_iter()
            .map(|m| {
                vec![
                    when(m.created_at),
                    m.kind,
                    m.subject,
                    m.status,
                    m.sent_at.map(when).unwrap_or_default(),
                ]
            })
            .collect(),
        audit: audit
            .into_iter()
            .map(|a| {
                vec![
                    when(a.at),
                    a.actor,
                    a.action,
                    a.ip.unwrap_or_default(),
                    a.detail,
                ]
            })
            .collect(),
        keys: keys
            .into_iter()
            .map(|k| {
                vec![
                    k.name,
                    k.prefix,
                    k.scopes,
                    when(k.created_at),
                    k.last_used_at.map(when).unwrap_or_else(|| "never".into()),
                    k.revoked_at.map(when).unwrap_or_else(|| "live".into()),
                ]
            })
            .collect(),
        can_retry: matches!(status, TenantStatus::Failed | TenantStatus::Provisioning),
        force: status == TenantStatus::Provisioning,
        can_resend: matches!(status, TenantStatus::Active | TenantStatus::PastDue),
        can_approve: status == TenantStatus::SalesReview,
        can_suspend: matches!(status, TenantStatus::Active | TenantStatus::PastDue),
        t: TenantRow::from(tenant),
    };
    Ok(render(StatusCode::OK, &page))
}

/// `POST /admin/tenants/{tenant_id}/actions/{action}` (`retry`, `resend-welcome`, `approve`,
/// `suspend`): does it through the same code as the operator endpoints and commands, audited
/// as the operator from the console, then back to the tenant's page.
pub async fn act(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    PathParam((raw, action)): PathParam<(String, String)>,
    form: CheckedForm,
) -> AppResult<Response> {
    let operator = &form.operator;
    let id = tenant_id(&raw)?;
    let page = format!("/admin/tenants/{id}");
    let audit = |action| {
        AuditEntry::new(Actor::Operator, action)
            .ip(Some(ip))
            .with("via", "console")
    };
    let refused = |message: String| {
        problem(
            StatusCode::CONFLICT,
            operator,
            "That cannot be done now",
            &message,
            (&page, "Back to the tenant"),
        )
    };
    let outcome = match action.as_str() {
        "retry" => {
            let force = form.get("force") == Some("true");
            let kind = if force {
                Action::OperatorForceProvision
            } else {
                Action::OperatorRetry
            };
            match crate::provisioning::retry(&state, &id, force, "operator", audit(kind)).await {
                Ok(_) => Ok("retried"),
                Err(StoreError::Transition(t)) => Err(format!(
                    "Only a failed tenant can be retried (or one stuck in provisioning, forced); \
                     this tenant is {}.",
                    t.from
                )),
                Err(e) => return Err(e.into()),
            }
        }
        "resend-welcome" => {
            use crate::provisioning::ResendError;
            let resent = crate::provisioning::resend_welcome(
                &state,
                &id,
                audit(Action::OperatorResendWelcome),
            );
            match resent.await {
                Ok(_) => Ok("resent"),
                Err(e @ ResendError::Status(_)) => Err(e.to_string()),
                Err(ResendError::Store(e)) => return Err(e.into()),
                Err(ResendError::Other(e)) => {
                    return Err(ApiError::internal("resend the welcome email", e));
                }
            }
        }
        "approve" => {
            let approved = crate::billing::account::approve(
                &state,
                &id,
                "operator",
                audit(Action::OperatorApprove),
            );
            match approved.await {
                Ok(_) => Ok("approved"),
                Err(e) => Err(account_refusal(e)?),
            }
        }
        "suspend" => {
            let suspended = crate::billing::account::suspend(
                &state,
                &id,
                "operator",
                audit(Action::OperatorSuspend),
            );
            match suspended.await {
                Ok(()) => Ok("suspended"),
                Err(e) => Err(account_refusal(e)?),
            }
        }
        _ => return Err(ApiError::not_found("tenant action")),
    };
    Ok(match outcome {
        Ok(code) => super::done(&page, code),
        Err(message) => refused(message),
    })
}

/// An account action's refusal (the tenant's status does not allow it, Stripe could not do it:
/// nothing changed) as a sentence for the operator; anything else is an error.
fn account_refusal(e: crate::billing::account::AccountError) -> AppResult<String> {
    let e = ApiError::from(e);
    match e.status {
        StatusCode::CONFLICT | StatusCode::BAD_GATEWAY => Ok(e.message),
        _ => Err(e),
    }
}
