//! The signed-in customer's pages: `/app`, the workspace (usage against the plan, billing,
//! documents with paging, upload and delete, a query box, API keys created, rotated and revoked
//! with a role), and `/setup`, the setup wizard in the tenant's variant (each step's state from
//! the server, skip to the sample data, upload, a real query, an integration key). Every action
//! is a plain form post (`/app/…`, `/setup/…`) that works without JavaScript; `static/app.js`
//! adds drag-and-drop and copy buttons. The work itself is the API's: the same validation, the
//! same workspace functions, the same milestones and audit entries.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, get, post};
use serde_json::Map;

use super::AppState;
use super::error::{ApiError, AppResult};
use super::extract::{ClientIp, PathParam};
use super::login::session::{current_session, form_session, no_store, require};
use super::v1::{self, GRANTABLE, Issuer};
use crate::analytics::wizard::{Variant, Wizard};
use crate::domain::audit::{Action, Actor};
use crate::domain::{Permission, Role, TenantStatus};
use crate::store::{AuditEntry, Tenant, ms_to_datetime};
use crate::workspace::documents::{self, NewDocument, QueryHit};
use crate::workspace::sessions::Session;
use crate::workspace::usage::current_period;

/// Documents per page of the workspace's list.
const DOCUMENTS_PER_PAGE: i64 = 10;
/// Results a page's query shows.
const PAGE_TOP_K: usize = 5;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/app", get(app_page))
        .route(
            "/app/documents",
            upload_on(Page::App, "/app?done=uploaded#documents"),
        )
        .route("/app/documents/{id}/delete", post(app_delete))
        .route("/app/query", query_on(Page::App))
        .route("/app/keys", create_key_on(Page::App))
        .route("/app/keys/{id}/revoke", post(app_revoke_key))
        .route("/app/keys/{id}/rotate", post(app_rotate_key))
        .route("/setup", get(setup_page))
        .route(
            "/setup/documents",
            upload_on(Page::Setup, "/setup?done=uploaded"),
        )
        .route("/setup/query", query_on(Page::Setup))
        .route("/setup/keys", create_key_on(Page::Setup))
        .route("/setup/steps/{step}/skip", post(setup_skip))
}

/// Where a customer lands after signing in: the wizard while a step is neither done nor
/// skipped (so a returning user resumes where they left off), else the workspace.
pub(crate) async fn landing(state: &AppState, tenant: &Tenant) -> &'static str {
    match state
        .store
        .wizard(&tenant.id, state.settings.wizard_split)
        .await
    {
        Ok(w) if w.steps.iter().any(|s| s.state == Some("pending")) => "/setup",
        Ok(_) => "/app",
        Err(e) => {
            tracing::warn!(error = %e, "could not read the wizard; landing on the workspace");
            "/app"
        }
    }
}

fn when(ms: i64) -> String {
    ms_to_datetime(ms).format("%Y-%m-%d %H:%M UTC").to_string()
}

fn field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// What the pages show once after an action: a notice, an error, a new key's secret, results.
#[derive(Default)]
struct Flash {
    notice: Option<String>,
    error: Option<String>,
    /// The field the error names, to mark it.
    error_field: Option<String>,
    /// A key just created or rotated: its name and secret, shown this once.
    secret: Option<(String, String)>,
    /// The query just run and its results.
    query: Option<(String, Vec<HitView>)>,
    /// What the upload form held when it was refused.
    title: String,
    content: String,
}

impl Flash {
    fn refused(e: &ApiError) -> Self {
        Flash {
            error: Some(e.message.clone()),
            error_field: e.field.clone(),
            ..Flash::default()
        }
    }
}

/// A hit as the pages list it.
struct HitView {
    rank: usize,
    title: String,
    snippet: String,
    score: String,
    sample: bool,
}

fn hits(results: Vec<QueryHit>) -> Vec<HitView> {
    results
        .into_iter()
        .enumerate()
        .map(|(i, h)| HitView {
            rank: i + 1,
            title: h.title,
            snippet: h.snippet,
            score: format!("{:.3}", h.score),
            sample: h.sample,
        })
        .collect()
}

/// One usage bar.
struct MeterView {
    label: &'static str,
    used: String,
    limit: String,
    /// 0–100, for the bar's width.
    percent: u64,
    high: bool,
}

fn meter(label: &'static str, used: i64, limit: Option<u64>, show: fn(u64) -> String) -> MeterView {
    let used_u = u64::try_from(used).unwrap_or(0);
    let percent = limit.map_or(0, |l| (used_u.saturating_mul(100) / l.max(1)).min(100));
    MeterView {
        label,
        used: show(used_u),
        limit: limit.map_or("unlimited".into(), show),
        percent,
        high: percent >= 90,
    }
}

fn plain(n: u64) -> String {
    n.to_string()
}

fn bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    match n {
        n if n >= KIB * KIB * KIB => format!("{:.1} GB", n as f64 / (KIB * KIB * KIB) as f64),
        n if n >= KIB * KIB => format!("{:.1} MB", n as f64 / (KIB * KIB) as f64),
        n if n >= KIB => format!("{:.1} KB", n as f64 / KIB as f64),
        n => format!("{n} bytes"),
    }
}

struct DocView {
    id: String,
    title: String,
    size: String,
    chunks: i64,
    added: String,
    sample: bool,
}

struct KeyView {
    id: String,
    name: String,
    prefix: String,
    role: String,
    created: String,
    last_used: String,
    live: bool,
    revoked: String,
}

#[derive(Template)]
#[template(path = "app.html")]
struct AppPage {
    nav_current: &'static str,
    company_name: String,
    plan: String,
    status: String,
    period: String,
    meters: Vec<MeterView>,
    subscription: String,
    can_bill: bool,
    can_keys: bool,
    role_choices: Vec<&'static str>,
    wizard_left: usize,
    docs: Vec<DocView>,
    /// The cursor of this page (for "first page") and of the next one.
    paged: bool,
    next_cursor: Option<String>,
    keys: Vec<KeyView>,
    flash: Flash,
}

/// The roles a signed-in user may give a key: theirs and below.
fn role_choices(role: Role) -> Vec<&'static str> {
    [Role::Member, Role::Admin, Role::Owner]
        .into_iter()
        .filter(|r| *r <= role)
        .map(Role::as_str)
        .collect()
}

async fn render_app(
    state: &AppState,
    session: &Session,
    tenant: &Tenant,
    cursor: Option<&str>,
    status: StatusCode,
    flash: Flash,
) -> AppResult<Response> {
    let limits = state.settings.plans.limits(tenant.plan);
    let period = current_period();
    let footprint = state.store.footprint(&tenant.id).await?;
    let queries = state
        .usage
        .queries(&state.store, &tenant.id, &period)
        .await?;
    let members = state.store.members(&tenant.id).await?.len() as i64;
    let meters = vec![
        meter(
            "Documents",
            footprint.documents,
            limits.max_documents,
            plain,
        ),
        meter("Storage", footprint.bytes, limits.max_bytes, bytes),
        meter(
            "Queries this month",
            queries,
            limits.max_queries_per_month,
            plain,
        ),
        meter("Team members", members, limits.max_users, plain),
    ];
    let before = cursor
        .and_then(|c| c.split_once('_'))
        .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_string())));
    let mut rows = state
        .store
        .list_documents(&tenant.id, DOCUMENTS_PER_PAGE + 1, before)
        .await?;
    let next_cursor = (rows.len() as i64 > DOCUMENTS_PER_PAGE)
        .then(|| {
            rows.truncate(DOCUMENTS_PER_PAGE as usize);
            rows.last().map(|d| format!("{}_{}", d.created_at, d.id))
        })
        .flatten();
    let docs = rows
        .into_iter()
        .map(|d| DocView {
            id: d.id,
            title: d.title,
            size: bytes(u64::try_from(d.bytes).unwrap_or(0)),
            chunks: d.chunk_count,
            added: when(d.created_at),
            sample: d.sample,
        })
        .collect();
    let can_keys = session.role.allows(Permission::ManageKeys);
    let keys = if can_keys {
        state
            .store
            .api_keys_page(&tenant.id, 100, None)
            .await?
            .into_iter()
            .map(|k| KeyView {
                live: k.revoked_at.is_none(),
                id: k.id,
                name: k.name,
                prefix: k.prefix,
                role: k.role,
                created: when(k.created_at),
                last_used: k.last_used_at.map_or_else(|| "never".into(), when),
                revoked: k.revoked_at.map(when).unwrap_or_default(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let wizard = state
        .store
        .wizard(&tenant.id, state.settings.wizard_split)
        .await?;
    let billing = state.store.billing(&tenant.id).await?.unwrap_or_default();
    let page = AppPage {
        nav_current: "app",
        company_name: tenant.company_name.clone(),
        plan: tenant.plan.to_string(),
        status: tenant.status.to_string(),
        period,
        meters,
        subscription: billing
            .subscription_status
            .unwrap_or_else(|| "active".into()),
        can_bill: session.role.allows(Permission::ManageBilling)
            && tenant.status != TenantStatus::Canceled,
        can_keys,
        role_choices: role_choices(session.role),
        wizard_left: wizard
            .steps
            .iter()
            .filter(|s| s.state == Some("pending"))
            .count(),
        docs,
        paged: cursor.is_some(),
        next_cursor,
        keys,
        flash,
    };
    page_response(status, page.render(), "workspace page")
}

fn page_response(
    status: StatusCode,
    html: Result<String, askama::Error>,
    what: &str,
) -> AppResult<Response> {
    let html = html.map_err(|e| ApiError::internal(&format!("render {what}"), e))?;
    let mut resp = (status, Html(html)).into_response();
    // Pages may hold a key's secret, shown once: never from a cache.
    no_store(&mut resp);
    Ok(resp)
}

fn cursor_of(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "cursor")
        .map(|(_, v)| v.into_owned())
        .filter(|c| !c.is_empty())
}

fn notice_of(query: Option<&str>) -> Option<String> {
    let code = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "done")
        .map(|(_, v)| v.into_owned())?;
    Some(
        match code.as_str() {
            "uploaded" => "Document added: it is searchable now.",
            "deleted" => "Document deleted, with its vectors.",
            "revoked" => "API key revoked: it stops working at once.",
            "skipped" => "Step skipped: your workspace has the sample documents to try.",
            _ => return None,
        }
        .to_string(),
    )
}

/// `GET /app`: the workspace; `/login` when not signed in.
async fn app_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> AppResult<Response> {
    let Some((session, tenant)) = current_session(&state, &headers).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    let flash = Flash {
        notice: notice_of(query.as_deref()),
        ..Flash::default()
    };
    let cursor = cursor_of(query.as_deref());
    render_app(
        &state,
        &session,
        &tenant,
        cursor.as_deref(),
        StatusCode::OK,
        flash,
    )
    .await
}

/// Which page a form came from, to answer with it.
#[derive(Clone, Copy, PartialEq)]
enum Page {
    App,
    Setup,
}

/// What a form post did: go on to a page, or show the page it came from with a result.
enum Done {
    To(&'static str),
    Show(Flash),
}

/// One form post of a workspace page: checks it ([`form_session`]), runs `act`, and answers
/// with a redirect, or the page with the result, or the page with the refusal at its field (an
/// upload's text kept) and the refusal's status.
async fn act(
    state: &AppState,
    headers: &HeaderMap,
    page: Page,
    body: &[u8],
    act: impl AsyncFnOnce(&Session, &Tenant) -> AppResult<Done>,
) -> Response {
    let (session, tenant) = match form_session(state, headers, "the page").await {
        Ok(found) => found,
        Err(resp) => return resp,
    };
    let (status, flash) = match act(&session, &tenant).await {
        Ok(Done::To(path)) => return Redirect::to(path).into_response(),
        Ok(Done::Show(flash)) => (StatusCode::OK, flash),
        Err(e) if e.status.is_client_error() => {
            let mut flash = Flash::refused(&e);
            flash.title = field(body, "title").unwrap_or_default();
            flash.content = field(body, "content").unwrap_or_default();
            (e.status, flash)
        }
        Err(e) => return e.into_response(),
    };
    let rendered = match page {
        Page::App => render_app(state, &session, &tenant, None, status, flash).await,
        Page::Setup => render_setup(state, &session, &tenant, status, flash).await,
    };
    rendered.unwrap_or_else(IntoResponse::into_response)
}

/// How a member acts on keys: their tenant, as themselves, audited as themselves.
fn issuer<'a>(
    session: &'a Session,
    audit: &'a (dyn Fn(Action, &str) -> AuditEntry + Sync),
) -> Issuer<'a> {
    Issuer {
        tenant: &session.tenant_id,
        created_by: Some(&session.user_id),
        role: session.role,
        audit,
    }
}

/// The upload form: `title` (optional: the text's first line) and `content`.
async fn upload(
    state: &AppState,
    session: &Session,
    tenant: &Tenant,
    body: &[u8],
) -> AppResult<()> {
    require(session, Permission::UseWorkspace)?;
    let content = field(body, "content").unwrap_or_default();
    let title = field(body, "title")
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| v1::title_from_text(&content));
    let doc = v1::validate_document(NewDocument {
        title,
        content,
        content_type: "text/plain".into(),
        metadata: Map::new(),
    })?;
    documents::ingest(state, &tenant.id, tenant.plan, doc).await?;
    Ok(())
}

/// The query form: `query`; the ranked results.
async fn run_query(
    state: &AppState,
    session: &Session,
    tenant: &Tenant,
    body: &[u8],
) -> AppResult<Flash> {
    require(session, Permission::UseWorkspace)?;
    let raw = field(body, "query").unwrap_or_default();
    let text = v1::query_text(&raw)?;
    let results = documents::query(state, &tenant.id, tenant.plan, text, PAGE_TOP_K).await?;
    Ok(Flash {
        query: Some((text.to_string(), hits(results))),
        ..Flash::default()
    })
}

/// How a signed-in member's acts on keys are audited: the member, from their address.
fn member_audit(
    session: &Session,
    ip: std::net::IpAddr,
) -> impl Fn(Action, &str) -> AuditEntry + Sync + use<> {
    let (user, tenant) = (session.user_id.clone(), session.tenant_id.clone());
    move |action, key_id: &str| {
        AuditEntry::new(Actor::Member(user.clone()), action)
            .target(key_id)
            .ip(Some(ip))
            .with("tenant_id", tenant.as_str())
    }
}

/// The key form: `name` and `role` (at most the member's own); every scope a key may carry.
async fn create_key(
    state: &AppState,
    session: &Session,
    ip: std::net::IpAddr,
    body: &[u8],
) -> AppResult<Flash> {
    require(session, Permission::ManageKeys)?;
    let name = field(body, "name").unwrap_or_default().trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(
            ApiError::bad_request("invalid_name", "name must be 1–100 characters")
                .with_field("name"),
        );
    }
    let role = match field(body, "role").filter(|r| !r.is_empty()) {
        None => session.role,
        Some(r) => r
            .parse::<Role>()
            .map_err(|e| ApiError::from(e).with_field("role"))?,
    };
    if role > session.role {
        return Err(ApiError::forbidden_role(format!(
            "you act as {}, so the keys you create can be at most {}",
            session.role, session.role
        ))
        .with_field("role"));
    }
    let audit = member_audit(session, ip);
    let created = v1::issue(
        state,
        &issuer(session, &audit),
        (&name, &GRANTABLE, None, role),
        None,
    )
    .await?;
    Ok(Flash {
        notice: Some(format!(
            "API key “{name}” created. Copy it now: it is shown only this once."
        )),
        secret: Some((name, created.api_key)),
        ..Flash::default()
    })
}

/// The upload form of `page`: on success, to `done`.
fn upload_on(page: Page, done: &'static str) -> MethodRouter<AppState> {
    post(
        move |State(state): State<AppState>, headers: HeaderMap, body: Bytes| async move {
            act(&state, &headers, page, &body, async |s, t| {
                upload(&state, s, t, &body).await?;
                Ok(Done::To(done))
            })
            .await
        },
    )
}

/// The query form of `page`: the page with the ranked results.
fn query_on(page: Page) -> MethodRouter<AppState> {
    post(
        move |State(state): State<AppState>, headers: HeaderMap, body: Bytes| async move {
            act(&state, &headers, page, &body, async |s, t| {
                run_query(&state, s, t, &body).await.map(Done::Show)
            })
            .await
        },
    )
}

/// The key form of `page`: the page with the new key's secret, once.
fn create_key_on(page: Page) -> MethodRouter<AppState> {
    post(
        move |State(state): State<AppState>,
              ClientIp(ip): ClientIp,
              headers: HeaderMap,
              body: Bytes| async move {
            act(&state, &headers, page, &body, async |s, _| {
                create_key(&state, s, ip, &body).await.map(Done::Show)
            })
            .await
        },
    )
}

async fn app_delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
) -> Response {
    act(&state, &headers, Page::App, &[], async |s, t| {
        require(s, Permission::UseWorkspace)?;
        documents::delete(&state, &t.id, &id).await?;
        Ok(Done::To("/app?done=deleted#documents"))
    })
    .await
}

async fn app_revoke_key(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
) -> Response {
    act(&state, &headers, Page::App, &[], async |s, _| {
        require(s, Permission::ManageKeys)?;
        let audit = member_audit(s, ip);
        v1::revoke(&state, &issuer(s, &audit), &id).await?;
        Ok(Done::To("/app?done=revoked#keys"))
    })
    .await
}

async fn app_rotate_key(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
) -> Response {
    act(&state, &headers, Page::App, &[], async |s, _| {
        require(s, Permission::ManageKeys)?;
        let audit = member_audit(s, ip);
        let created = v1::rotate(&state, &issuer(s, &audit), &id).await?;
        Ok(Done::Show(Flash {
            notice: Some(format!(
                "API key “{}” rotated: the old secret stopped working; copy the new one now.",
                created.key.name
            )),
            secret: Some((created.key.name.clone(), created.api_key)),
            ..Flash::default()
        }))
    })
    .await
}

// ---------------------------------------------------------------- the setup wizard

/// A step as the wizard page shows it.
struct StepView {
    number: u32,
    title: &'static str,
    description: &'static str,
    state: &'static str,
    /// What the step's form does: `document`, `query`, `key` or `call`.
    kind: &'static str,
    current: bool,
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    nav_current: &'static str,
    company_name: String,
    variant: &'static str,
    steps: Vec<StepView>,
    done: usize,
    total: usize,
    finished: bool,
    can_keys: bool,
    app_url: String,
    flash: Flash,
}

fn step_kind(action: &str) -> &'static str {
    match action {
        "POST /v1/documents" => "document",
        "POST /v1/query" => "query",
        "POST /v1/api-keys" => "key",
        _ => "call",
    }
}

async fn render_setup(
    state: &AppState,
    session: &Session,
    tenant: &Tenant,
    status: StatusCode,
    flash: Flash,
) -> AppResult<Response> {
    let wizard: Wizard = state
        .store
        .wizard(&tenant.id, state.settings.wizard_split)
        .await?;
    // Showing the wizard is a view of its first pending step (recorded once, server-side).
    state
        .store
        .note_wizard_progress(&tenant.id, &wizard)
        .await?;
    let current = wizard
        .steps
        .iter()
        .find(|s| s.state == Some("pending"))
        .map(|s| s.step);
    let steps: Vec<StepView> = wizard
        .steps
        .iter()
        .map(|s| StepView {
            number: s.step,
            title: s.title,
            description: s.description,
            state: s.state.unwrap_or("pending"),
            kind: step_kind(s.action),
            current: Some(s.step) == current,
        })
        .collect();
    let done = steps.iter().filter(|s| s.state != "pending").count();
    let page = SetupPage {
        nav_current: "setup",
        company_name: tenant.company_name.clone(),
        variant: match wizard.variant {
            Variant::Quick => "quick",
            Variant::Guided => "guided",
        },
        total: steps.len(),
        finished: current.is_none(),
        steps,
        done,
        can_keys: session.role.allows(Permission::ManageKeys),
        app_url: state
            .settings
            .app_url
            .as_str()
            .trim_end_matches('/')
            .to_string(),
        flash,
    };
    page_response(status, page.render(), "setup wizard")
}

/// `GET /setup`: the wizard at the first step still pending; `/login` when not signed in.
async fn setup_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> AppResult<Response> {
    let Some((session, tenant)) = current_session(&state, &headers).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    let flash = Flash {
        notice: notice_of(query.as_deref()),
        ..Flash::default()
    };
    render_setup(&state, &session, &tenant, StatusCode::OK, flash).await
}

/// `POST /setup/steps/{step}/skip`: recorded once with a `wizard_step_skipped` event, as
/// `POST /wizard/steps/{step}/skip` does.
async fn setup_skip(
    State(state): State<AppState>,
    headers: HeaderMap,
    PathParam(step): PathParam<String>,
) -> Response {
    act(&state, &headers, Page::Setup, &[], async |s, t| {
        require(s, Permission::UseWorkspace)?;
        super::activation::skip(&state, &t.id, super::activation::step_number(&step)?).await?;
        Ok(Done::To("/setup?done=skipped"))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meters_fill_in_proportion_and_warn_near_the_limit() {
        let m = meter("Documents", 50, Some(1000), plain);
        assert_eq!((m.percent, m.high), (5, false));
        assert_eq!(meter("Documents", 950, Some(1000), plain).percent, 95);
        assert!(meter("Documents", 950, Some(1000), plain).high);
        assert_eq!(meter("Documents", 5000, Some(1000), plain).percent, 100);
        let unlimited = meter("Documents", 5000, None, plain);
        assert_eq!(
            (unlimited.percent, unlimited.limit.as_str()),
            (0, "unlimited")
        );
        assert_eq!(bytes(1536), "1.5 KB");
        assert_eq!(bytes(100 * 1024 * 1024), "100.0 MB");
    }

    #[test]
    fn a_member_gives_keys_at_most_their_own_role() {
        assert_eq!(role_choices(Role::Member), vec!["member"]);
        assert_eq!(role_choices(Role::Owner), vec!["member", "admin", "owner"]);
    }
}
