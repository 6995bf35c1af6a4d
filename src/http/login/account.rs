//! `GET /account`: the signed-in tenant's account page.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::session::{current_session, no_store};
use crate::domain::TenantStatus;
use crate::http::AppState;
use crate::http::error::{ApiError, AppResult};
use crate::store::ms_to_datetime;

/// One activation milestone as listed on the account page.
struct MilestoneView {
    name: String,
    when: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    nav_current: &'static str,
    notice: Option<String>,
    /// Why closing the account was refused.
    error: Option<String>,
    /// Why the name was refused, and what was typed.
    name_error: Option<String>,
    /// The signed-in user's name (or what they typed, when refused).
    my_name: String,
    can_close: bool,
    tenant_id: String,
    company_name: String,
    email: String,
    plan: String,
    status: String,
    past_due: bool,
    suspended: bool,
    canceled: bool,
    /// When a canceled account's data is erased.
    erasure: String,
    subscription: String,
    cancel_at_period_end: bool,
    trial_end: String,
    marketing_opt_in: bool,
    unsubscribed: bool,
    session_expires: String,
    /// The signed-in user and their role.
    me_email: String,
    me_role: String,
    milestones: Vec<MilestoneView>,
}

/// What a form post has to say on the page it renders.
#[derive(Default)]
struct Said {
    notice: Option<String>,
    /// Closing the account refused.
    error: Option<String>,
    /// The name refused, with what was typed.
    name: Option<(String, String)>,
}

fn when(ms: i64) -> String {
    ms_to_datetime(ms).format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The signed-in customer's account page: account, billing, email preference, data (export,
/// closing with a typed confirmation) and progress; a redirect to `/login` when not signed in.
#[utoipa::path(get, path = "/account", tag = "account",
    responses(
        (status = 200, description = "The account page", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: go to /login"),
    ))]
pub async fn account_page(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let Some((session, tenant)) = current_session(&state, &headers).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    render(&state, &session, tenant, StatusCode::OK, Said::default()).await
}

async fn render(
    state: &AppState,
    session: &crate::workspace::sessions::Session,
    tenant: crate::store::Tenant,
    status: StatusCode,
    said: Said,
) -> AppResult<Response> {
    // The session carries the name (read with it), so the page needs no second look-up.
    let (my_name, name_error) = match said.name {
        Some((typed, why)) => (typed, Some(why)),
        None => (session.name.clone(), None),
    };
    let milestones = state
        .store
        .milestones(&tenant.id)
        .await?
        .into_iter()
        .map(|m| MilestoneView {
            name: m.milestone,
            when: when(m.occurred_at),
            detail: match m.detail {
                Some(d) => format!("{} ({d})", m.source),
                None => m.source,
            },
        })
        .collect();
    let billing = state.store.billing(&tenant.id).await?.unwrap_or_default();
    let erasure = billing
        .canceled_at
        .map(|at| when(crate::billing::notify::erasure_at(state, at)))
        .unwrap_or_default();
    let page = AccountPage {
        nav_current: "account",
        notice: said.notice,
        error: said.error,
        name_error,
        my_name,
        can_close: session.role.allows(crate::domain::Permission::CloseAccount),
        tenant_id: tenant.id.to_string(),
        company_name: tenant.company_name,
        email: tenant.email,
        plan: tenant.plan.to_string(),
        status: tenant.status.to_string(),
        past_due: tenant.status == TenantStatus::PastDue,
        suspended: tenant.status == TenantStatus::Suspended,
        canceled: tenant.status == TenantStatus::Canceled,
        erasure,
        subscription: billing
            .subscription_status
            .unwrap_or_else(|| "active".into()),
        cancel_at_period_end: billing.cancel_at_period_end,
        trial_end: billing
            .trial_end
            .map(|s| when(s * 1000))
            .unwrap_or_default(),
        marketing_opt_in: billing.marketing_opt_in,
        unsubscribed: billing.unsubscribed_at.is_some(),
        session_expires: when(session.expires_at),
        me_email: session.email.clone(),
        me_role: session.role.to_string(),
        milestones,
    };
    let html = page
        .render()
        .map_err(|e| ApiError::internal("render account page", e))?;
    let mut resp = (status, Html(html)).into_response();
    no_store(&mut resp);
    Ok(resp)
}

/// `POST /account/close`: the account page's form to close the account, confirmed by typing
/// the company name (`confirm`; case and surrounding spaces aside). Cancels as `DELETE
/// /account` does; the page again, saying when the data will be erased, or why not.
pub(crate) async fn close_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    let (session, tenant) =
        match super::session::form_session(&state, &headers, "the account page").await {
            Ok(found) => found,
            Err(resp) => return Ok(resp),
        };
    let typed = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "confirm")
        .map(|(_, v)| v.trim().to_lowercase())
        .unwrap_or_default();
    let refused = |status, why: String| {
        (
            status,
            Said {
                error: Some(why),
                ..Said::default()
            },
        )
    };
    let (status, said) = if let Err(e) =
        super::session::require(&session, crate::domain::Permission::CloseAccount)
    {
        refused(e.status, e.message)
    } else if typed != tenant.company_name.trim().to_lowercase() {
        refused(
            StatusCode::BAD_REQUEST,
            "to close the account, type your company name exactly as shown above".to_string(),
        )
    } else {
        match crate::billing::account::cancel(&state, &tenant, "customer").await {
            Ok(erase_at) => (
                StatusCode::OK,
                Said {
                    notice: Some(format!(
                        "Your subscription is canceled. Your workspace and personal data will be erased after {}; export them before then.",
                        when(erase_at)
                    )),
                    ..Said::default()
                },
            ),
            Err(e) => {
                let e = ApiError::from(e);
                if !e.status.is_client_error() && e.status != StatusCode::BAD_GATEWAY {
                    return Err(e);
                }
                refused(e.status, e.message)
            }
        }
    };
    // Read again: the status changed if the account was closed.
    let tenant = state.store.tenant(&tenant.id).await?.unwrap_or(tenant);
    render(&state, &session, tenant, status, said).await
}

/// `POST /account/name`: the name the signed-in person is shown by (`name`, 1–100 characters),
/// any role; back to the account page, or the page again with the refusal at the field.
pub(crate) async fn name_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    crate::http::extract::ClientIp(ip): crate::http::extract::ClientIp,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    let (session, tenant) =
        match super::session::form_session(&state, &headers, "the account page").await {
            Ok(found) => found,
            Err(resp) => return Ok(resp),
        };
    let typed = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.into_owned());
    let name = match crate::http::members::valid_name(typed.as_deref()) {
        Ok(name) => name,
        Err(e) => {
            let said = Said {
                name: Some((typed.unwrap_or_default(), e.message)),
                ..Said::default()
            };
            return render(&state, &session, tenant, StatusCode::BAD_REQUEST, said).await;
        }
    };
    let mut tx = state.store.begin().await?;
    tx.set_user_name(&session.user_id, &name).await?;
    tx.audit(
        &crate::store::AuditEntry::new(
            crate::domain::audit::Actor::Member(session.user_id.clone()),
            crate::domain::audit::Action::MemberRenamed,
        )
        .target(&session.user_id)
        .ip(Some(ip))
        .with("tenant_id", tenant.id.as_str()),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to("/account").into_response())
}

/// `POST /account/consent`: the account page's email preference, recorded with its time,
/// source and client address; back to the account page.
pub(crate) async fn consent(
    State(state): State<AppState>,
    headers: HeaderMap,
    crate::http::extract::ClientIp(ip): crate::http::extract::ClientIp,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    // The account page's form; anything else gets the API's own 415, not a silent "no".
    let (session, tenant) =
        match super::session::form_session(&state, &headers, "the account page").await {
            Ok(found) => found,
            Err(resp) => return Ok(resp),
        };
    super::session::require(&session, crate::domain::Permission::ManagePreferences)?;
    // The box's field is present (any value) when ticked.
    let granted = url::form_urlencoded::parse(&body).any(|(k, _)| k == "marketing_opt_in");
    let mut tx = state.store.begin().await?;
    tx.record_marketing_consent(
        &tenant.id,
        granted,
        crate::email::consent::source::ACCOUNT_PAGE,
        Some(&ip.to_string()),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to("/account").into_response())
}
