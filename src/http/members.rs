//! The team: `/v1/members` (JSON, behind an API key acting with its role), accepting an
//! invitation (`/invitations/accept`, a page and its form or JSON), and the signed-in members
//! page (`/app/members`, forms that work without JavaScript).
//!
//! The rules (seats, roles, last owner, single-use links) are `workspace::members`'; this edge
//! adds the invitation email, sent in the same transaction as the invitation it carries.

use askama::Template;
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, AppResult, ErrorBody};
use super::extract::{ClientIp, JsonBody, PathParam, parse_json};
use super::login::session::{
    current_session, form_session, no_store, require, secure_cookies, session_token,
    started_cookie, with_cookie,
};
use super::login::{cross_site_refused, is_cross_site, login_refusal, session_ttl_ms, token_param};
use crate::analytics::Milestone;
use crate::domain::audit::Actor;
use crate::domain::{Email, FieldError, Password, Permission, Role, password};
use crate::email::templates;
use crate::store::{Tenant, ms_to_datetime, now_ms};
use crate::workspace::hashing::HashFor;
use crate::workspace::members::{
    Accepted, Acting, Invitation, InvitationState, MAX_NAME_CHARS, MemberError, User,
};
use crate::workspace::sessions::{LoginMethod, Session};

impl From<MemberError> for ApiError {
    fn from(e: MemberError) -> Self {
        let message = e.to_string();
        match e {
            MemberError::NotFound(what) => ApiError::not_found(what),
            MemberError::Forbidden(_) => ApiError::forbidden_role(message),
            MemberError::SeatLimit { .. } => {
                ApiError::new(StatusCode::PAYMENT_REQUIRED, "seat_limit_reached", message)
            }
            MemberError::EmailTaken => {
                ApiError::conflict("email_taken", message).with_field("email")
            }
            MemberError::AlreadyInvited(_) => {
                ApiError::conflict("already_invited", message).with_field("email")
            }
            MemberError::LastOwner => ApiError::conflict("last_owner", message),
            MemberError::InvitationClosed(..) => ApiError::conflict("invitation_closed", message),
            MemberError::Store(e) => e.into(),
        }
    }
}

// ---------------------------------------------------------------- views

/// A member of the team.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct MemberView {
    /// `usr_…`
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub joined_at: i64,
}

impl From<User> for MemberView {
    fn from(u: User) -> Self {
        MemberView {
            id: u.id,
            email: u.email,
            name: u.name,
            role: u.role,
            joined_at: u.created_at,
        }
    }
}

/// An invitation (its link is only in the email).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct InvitationView {
    /// `inv_…`
    pub id: String,
    pub email: String,
    pub role: Role,
    #[schema(value_type = String, example = "pending")]
    pub state: InvitationStateName,
    /// Who invited, as the audit log names them.
    pub invited_by: String,
    pub created_at: i64,
    pub sent_at: i64,
    pub expires_at: i64,
}

/// `pending`, `expired`, `accepted` or `revoked`.
pub type InvitationStateName = String;

fn state_name(s: InvitationState) -> &'static str {
    match s {
        InvitationState::Pending => "pending",
        InvitationState::Expired => "expired",
        InvitationState::Accepted => "accepted",
        InvitationState::Revoked => "revoked",
    }
}

impl From<Invitation> for InvitationView {
    fn from(i: Invitation) -> Self {
        InvitationView {
            state: state_name(i.state(now_ms())).to_string(),
            role: i.role.parse().unwrap_or(Role::Member),
            id: i.id,
            email: i.email,
            invited_by: i.invited_by,
            created_at: i.created_at,
            sent_at: i.sent_at,
            expires_at: i.expires_at,
        }
    }
}

/// Seats used (members plus pending invitations) against the plan's `max_users`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Seats {
    pub used: u64,
    /// None: unlimited.
    pub limit: Option<u64>,
}

/// The team: members, open invitations and seats.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct MemberList {
    pub members: Vec<MemberView>,
    /// Invitations neither accepted nor revoked (pending or expired), newest first.
    pub invitations: Vec<InvitationView>,
    pub seats: Seats,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    #[schema(example = "bob@example.com", format = Email, max_length = 254)]
    pub email: String,
    /// `admin` or `member` (default `member`).
    pub role: Option<Role>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    pub role: Role,
}

// ---------------------------------------------------------------- shared acts

/// Who acts through an API key: the key's role; the audit log names the key's creator when
/// known, else the tenant.
fn acting_key(caller: &Caller) -> Acting {
    Acting {
        tenant: caller.tenant().clone(),
        role: caller.role(),
        user_id: caller.principal.created_by.clone(),
        actor: match &caller.principal.created_by {
            Some(user) => Actor::Member(user.clone()),
            None => Actor::Tenant(caller.tenant().clone()),
        },
    }
}

fn acting_session(session: &Session) -> Acting {
    Acting {
        tenant: session.tenant_id.clone(),
        role: session.role,
        user_id: Some(session.user_id.clone()),
        actor: Actor::Member(session.user_id.clone()),
    }
}

fn allowed(by: &Acting, p: Permission) -> AppResult<()> {
    ApiError::require_role(by.role, p)
}

async fn tenant_of(state: &AppState, by: &Acting) -> AppResult<Tenant> {
    state
        .store
        .tenant(&by.tenant)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))
}

/// The team as listed.
async fn team(state: &AppState, tenant: &Tenant) -> AppResult<MemberList> {
    let members = state.store.members(&tenant.id).await?;
    let invitations = state.store.open_invitations(&tenant.id).await?;
    let now = now_ms();
    // Seats: the members, and the invitations whose link still works (as the rule counts them).
    let pending = invitations
        .iter()
        .filter(|i| i.state(now) == InvitationState::Pending)
        .count();
    Ok(MemberList {
        seats: Seats {
            used: (members.len() + pending) as u64,
            limit: state.settings.plans.limits(tenant.plan).max_users,
        },
        members: members.into_iter().map(MemberView::from).collect(),
        invitations: invitations.into_iter().map(InvitationView::from).collect(),
    })
}

/// How the invitation email names who sent it: their name, else their email, else the company.
async fn inviter_name(state: &AppState, by: &Acting, tenant: &Tenant) -> AppResult<String> {
    if let Some(id) = &by.user_id
        && let Some(u) = state.store.user(&tenant.id, id).await?
    {
        return Ok(if u.name.trim().is_empty() {
            u.email
        } else {
            u.name
        });
    }
    Ok(tenant.company_name.clone())
}

/// Queues the invitation's email with its link, in `tx`.
async fn queue_invitation_email(
    state: &AppState,
    tx: &mut crate::store::Tx,
    tenant: &Tenant,
    inviter: &str,
    inv: &Invitation,
    token: &str,
) -> AppResult<()> {
    let url = state
        .settings
        .app_url
        .join(&format!("invitations/accept?token={token}"))
        .map_err(|e| ApiError::internal("invitation link", e))?;
    let mail = templates::invitation(
        state.mailer.brand(),
        tenant.id.as_str(),
        &inv.email,
        &tenant.company_name,
        inviter,
        &inv.role,
        url.as_str(),
    );
    tx.queue_email(&mail, &state.settings.sendgrid_from_email)
        .await?;
    Ok(())
}

async fn invite(state: &AppState, by: &Acting, email: &str, role: Role) -> AppResult<Invitation> {
    allowed(by, Permission::ManageMembers)?;
    let email = Email::parse(email)?;
    let tenant = tenant_of(state, by).await?;
    let inviter = inviter_name(state, by, &tenant).await?;
    let mut tx = state.store.begin().await?;
    let (inv, token) = tx
        .invite_member(
            &state.settings.plans,
            tenant.plan,
            by,
            email.as_str(),
            email.normalized(),
            role,
        )
        .await?;
    queue_invitation_email(state, &mut tx, &tenant, &inviter, &inv, &token).await?;
    tx.commit().await?;
    tracing::info!(tenant_id = %tenant.id, invitation = %inv.id, role = %role, "member invited");
    Ok(inv)
}

async fn resend(state: &AppState, by: &Acting, id: &str) -> AppResult<Invitation> {
    allowed(by, Permission::ManageMembers)?;
    let tenant = tenant_of(state, by).await?;
    let inviter = inviter_name(state, by, &tenant).await?;
    let mut tx = state.store.begin().await?;
    let (inv, token) = tx
        .resend_invitation(&state.settings.plans, tenant.plan, by, id)
        .await?;
    queue_invitation_email(state, &mut tx, &tenant, &inviter, &inv, &token).await?;
    tx.commit().await?;
    Ok(inv)
}

async fn revoke(state: &AppState, by: &Acting, id: &str) -> AppResult<()> {
    allowed(by, Permission::ManageMembers)?;
    let mut tx = state.store.begin().await?;
    tx.revoke_invitation(by, id).await?;
    tx.commit().await?;
    Ok(())
}

async fn change_role(state: &AppState, by: &Acting, id: &str, role: Role) -> AppResult<User> {
    let mut tx = state.store.begin().await?;
    let (user, revoked) = tx.set_member_role(by, id, role).await?;
    tx.commit().await?;
    if !revoked.is_empty() {
        state.keys.invalidate();
    }
    Ok(user)
}

async fn remove(state: &AppState, by: &Acting, id: &str) -> AppResult<()> {
    let mut tx = state.store.begin().await?;
    let revoked = tx.remove_member(by, id).await?;
    tx.commit().await?;
    if !revoked.is_empty() {
        state.keys.invalidate();
    }
    tracing::info!(tenant_id = %by.tenant, user_id = %id, "member removed");
    Ok(())
}

// ---------------------------------------------------------------- /v1/members

/// The team: members, open invitations and seats used against the plan's limit.
#[utoipa::path(get, path = "/v1/members", tag = "members",
    responses((status = 200, body = MemberList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_members(
    State(state): State<AppState>,
    caller: Caller,
) -> AppResult<Json<MemberList>> {
    let by = acting_key(&caller);
    allowed(&by, Permission::ViewMembers)?;
    let tenant = tenant_of(&state, &by).await?;
    Ok(Json(team(&state, &tenant).await?))
}

/// Invite someone by email (admin or owner): they get a link that works once, for 7 days.
/// Members plus pending invitations may not exceed the plan's `max_users`.
#[utoipa::path(post, path = "/v1/members/invitations", tag = "members", request_body = InviteRequest,
    responses(
        (status = 201, body = InvitationView),
        (status = 400, description = "The email or role is malformed; `field` names it", body = ErrorBody),
        (status = 402, description = "Every seat of the plan is taken; the message names the plan that has more", body = ErrorBody),
        (status = 403, description = "The key's role cannot manage members, or the role asked is owner", body = ErrorBody),
        (status = 409, description = "The email already belongs to a user, or has a pending invitation", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn create_invitation(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<InviteRequest>,
) -> AppResult<(StatusCode, Json<InvitationView>)> {
    let by = acting_key(&caller);
    let inv = invite(&state, &by, &req.email, req.role.unwrap_or(Role::Member)).await?;
    Ok((StatusCode::CREATED, Json(inv.into())))
}

/// Send an open invitation again with a new link (the old one stops working), valid 7 more days.
#[utoipa::path(post, path = "/v1/members/invitations/{id}/resend", tag = "members",
    params(("id" = String, Path, description = "invitation id, `inv_…`")),
    responses((status = 200, body = InvitationView), (status = 402, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Accepted or revoked already", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn resend_invitation(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> AppResult<Json<InvitationView>> {
    let inv = resend(&state, &acting_key(&caller), &id).await?;
    Ok(Json(inv.into()))
}

/// Revoke an open invitation: its link stops working and its seat is free.
#[utoipa::path(delete, path = "/v1/members/invitations/{id}", tag = "members",
    params(("id" = String, Path, description = "invitation id, `inv_…`")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Accepted or revoked already", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn revoke_invitation(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> AppResult<StatusCode> {
    revoke(&state, &acting_key(&caller), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change a member's role. Admins manage admins and members; only an owner makes or changes
/// an owner; the last owner cannot be demoted. Keys the member created above the new role are
/// revoked.
#[utoipa::path(patch, path = "/v1/members/{id}", tag = "members", request_body = RoleChange,
    params(("id" = String, Path, description = "user id, `usr_…`")),
    responses((status = 200, body = MemberView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "The last owner cannot be demoted", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn update_member(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    JsonBody(req): JsonBody<RoleChange>,
) -> AppResult<Json<MemberView>> {
    let user = change_role(&state, &acting_key(&caller), &id, req.role).await?;
    Ok(Json(user.into()))
}

/// Remove a member: their sessions end at once and the keys they created are revoked. The last
/// owner cannot be removed.
#[utoipa::path(delete, path = "/v1/members/{id}", tag = "members",
    params(("id" = String, Path, description = "user id, `usr_…`")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The last owner cannot be removed", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_member(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> AppResult<StatusCode> {
    remove(&state, &acting_key(&caller), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- accepting

/// Accepting an invitation: its token (from the link), a name and a password.
#[derive(Deserialize, ToSchema)]
pub struct AcceptRequest {
    #[schema(required = true, nullable = false)]
    pub token: Option<String>,
    #[schema(
        required = true,
        nullable = false,
        min_length = 1,
        max_length = 100,
        example = "Bob Smith"
    )]
    pub name: Option<String>,
    #[schema(
        required = true,
        nullable = false,
        min_length = 8,
        max_length = 128,
        example = "SecurePass123!"
    )]
    pub password: Option<String>,
}

/// The new member, signed in (the session is in the `Set-Cookie` header).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AcceptResponse {
    pub tenant_id: String,
    pub user_id: String,
    pub role: Role,
    #[schema(example = "/app/members")]
    pub redirect: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Template)]
#[template(path = "invitation_accept.html")]
struct AcceptPage<'a> {
    company_name: &'a str,
    email: &'a str,
    role: &'a str,
    token: &'a str,
    name: &'a str,
    error: Option<&'a str>,
    /// The email this browser is signed in with, if any: joining signs it out.
    signed_in_as: Option<&'a str>,
}

fn closed_page(outcome: &Accepted) -> Response {
    let (status, title, message) = match outcome {
        Accepted::AlreadyUsed => (
            StatusCode::GONE,
            "This invitation was already accepted",
            "Each invitation link works once. If you accepted it, sign in with your email and \
             password.",
        ),
        Accepted::Expired => (
            StatusCode::GONE,
            "This invitation has expired",
            "Invitations work for 7 days. Ask whoever invited you to send it again.",
        ),
        Accepted::Revoked => (
            StatusCode::GONE,
            "This invitation was withdrawn",
            "The account that invited you revoked this invitation. Ask them if you think this is \
             a mistake.",
        ),
        Accepted::Unknown | Accepted::Joined(_) => (
            StatusCode::BAD_REQUEST,
            "This invitation link is not valid",
            "We do not recognise this link; it may have been cut off when it was copied. Open it \
             from the invitation email again.",
        ),
    };
    let mut resp = super::message_page(status, title, message, ("/login", "Go to sign in"));
    no_store(&mut resp);
    resp
}

/// Where a link's token stands, without using it.
async fn token_state(state: &AppState, token: &str) -> AppResult<Result<Invitation, Accepted>> {
    let Some(inv) = state.store.invitation_by_token(token).await? else {
        return Ok(Err(Accepted::Unknown));
    };
    Ok(match inv.state(now_ms()) {
        InvitationState::Pending => Ok(inv),
        InvitationState::Expired => Err(Accepted::Expired),
        InvitationState::Accepted => Err(Accepted::AlreadyUsed),
        InvitationState::Revoked => Err(Accepted::Revoked),
    })
}

fn render_accept(status: StatusCode, page: &AcceptPage<'_>) -> Response {
    match page.render() {
        Ok(html) => {
            let mut resp = (status, Html(html)).into_response();
            no_store(&mut resp);
            resp
        }
        Err(e) => ApiError::internal("render invitation page", e).into_response(),
    }
}

/// The invitation page: who invites whom, and the form (name, password). Uses nothing up; a
/// used, expired, revoked or unknown link gets a page that says which.
#[utoipa::path(get, path = "/invitations/accept", tag = "members",
    params(("token" = Option<String>, Query, description = "the token from the invitation email's link")),
    responses(
        (status = 200, description = "The invitation form", content_type = "text/html", body = String),
        (status = 400, description = "No token, or not one we issued", content_type = "text/html", body = String),
        (status = 410, description = "Accepted, revoked or expired", content_type = "text/html", body = String),
    ))]
pub async fn accept_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> AppResult<Response> {
    let Some(token) = token_param(query.as_deref()) else {
        return Ok(closed_page(&Accepted::Unknown));
    };
    let inv = match token_state(&state, &token).await? {
        Ok(inv) => inv,
        Err(outcome) => return Ok(closed_page(&outcome)),
    };
    let tenant = state
        .store
        .tenant(
            &crate::domain::TenantId::parse(&inv.tenant_id)
                .ok_or_else(|| ApiError::not_found("tenant"))?,
        )
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    let signed_in = current_session(&state, &headers).await?;
    Ok(render_accept(
        StatusCode::OK,
        &AcceptPage {
            company_name: &tenant.company_name,
            email: &inv.email,
            role: &inv.role,
            token: &token,
            name: "",
            error: None,
            signed_in_as: signed_in.as_ref().map(|(s, _)| s.email.as_str()),
        },
    ))
}

fn parse_accept_form(bytes: &[u8]) -> AcceptRequest {
    let mut req = AcceptRequest {
        token: None,
        name: None,
        password: None,
    };
    for (k, v) in url::form_urlencoded::parse(bytes) {
        match k.as_ref() {
            "token" if req.token.is_none() => req.token = Some(v.into_owned()),
            "name" if req.name.is_none() => req.name = Some(v.into_owned()),
            "password" if req.password.is_none() => req.password = Some(v.into_owned()),
            _ => {}
        }
    }
    req
}

/// A person's name as typed: trimmed, 1–100 characters, no control characters.
pub(crate) fn valid_name(raw: Option<&str>) -> Result<String, FieldError> {
    let name = raw.unwrap_or_default().trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(FieldError::new(
            "name",
            "invalid_name",
            format!("name must be 1–{MAX_NAME_CHARS} characters, without control characters"),
        ));
    }
    Ok(name.to_string())
}

/// Why an acceptance did not go through: the link (a page of its own) or the input.
enum AcceptError {
    Link(Accepted),
    Api(ApiError),
}

impl<E: Into<ApiError>> From<E> for AcceptError {
    fn from(e: E) -> Self {
        AcceptError::Api(e.into())
    }
}

async fn accept(
    state: &AppState,
    ip: &ClientIp,
    req: AcceptRequest,
) -> Result<(User, crate::workspace::sessions::IssuedSession), AcceptError> {
    let token = req
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AcceptError::Link(Accepted::Unknown))?
        .to_string();
    let name = valid_name(req.name.as_deref())?;
    let new_password = Password::parse(req.password.unwrap_or_default())?;
    // A dead link costs no hash.
    let inv = token_state(state, &token)
        .await?
        .map_err(AcceptError::Link)?;
    let tenant_id = crate::domain::TenantId::parse(&inv.tenant_id)
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    let tenant = state
        .store
        .tenant(&tenant_id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    if let Some(message) = login_refusal(tenant.status, tenant.id.as_str()) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "account_not_active", message).into());
    }
    let hash = state
        .hashing
        .run(HashFor::Signup, move |memory| {
            password::hash(&new_password, memory)
        })
        .await?;
    let mut tx = state.store.begin().await?;
    let user = match tx.accept_invitation(&token, &name, &hash).await? {
        Accepted::Joined(user) => user,
        other => return Err(AcceptError::Link(other)),
    };
    let session = tx
        .start_session(
            &user.tenant_id,
            &user.id,
            &super::login::normalized_email(&user.email),
            LoginMethod::Password,
            session_ttl_ms(state),
        )
        .await?;
    tx.audit(
        &crate::store::AuditEntry::new(
            Actor::Member(user.id.clone()),
            crate::domain::audit::Action::LoginSucceeded,
        )
        .target(tenant.id.as_str())
        .ip(Some(ip.0))
        .with("method", "invitation"),
    )
    .await?;
    tx.commit().await?;
    if let Err(e) = state
        .milestones
        .record(&state.store, &tenant.id, Milestone::MemberJoined, None)
        .await
    {
        tracing::warn!(error = %e, tenant_id = %tenant.id, "could not record member_joined");
    }
    tracing::info!(tenant_id = %tenant.id, user_id = %user.id, "member joined");
    Ok((user, session))
}

/// Accept an invitation with its link's token, a name and a password: creates the user with
/// the invited role and signs them in; a session the request's cookie held (someone else's)
/// ends. A JSON body gets JSON; an HTML form gets a 303 to the members page, or the form again
/// with the error.
#[utoipa::path(post, path = "/invitations/accept", tag = "members",
    request_body(content(
        (AcceptRequest = "application/json"),
        (AcceptRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 201, description = "Joined and signed in; the session cookie is set", body = AcceptResponse),
        (status = 303, description = "Form: joined, go to /app/members (cookie set)"),
        (status = 400, description = "name or password invalid (`field` names it), or the link is not valid", body = ErrorBody),
        (status = 403, description = "The account cannot be joined in its status, or the request came from another site", body = ErrorBody),
        (status = 409, description = "The email became a user of another account meanwhile", body = ErrorBody),
        (status = 410, description = "The invitation was accepted, revoked or has expired", body = ErrorBody),
        (status = 415, description = "Body is neither JSON nor a form", body = ErrorBody),
    ))]
pub async fn accept_invitation(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mime = super::extract::media_type(&headers);
    let form = mime == super::extract::FORM;
    if !form && !super::extract::is_json(&mime) {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send token, name and password as JSON or as the invitation page's form",
        )
        .into_response();
    }
    if is_cross_site(&headers, &state.settings.app_url) {
        return cross_site_refused().into_response();
    }
    let req = if form {
        parse_accept_form(&body)
    } else {
        match parse_json::<AcceptRequest>(&body) {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        }
    };
    let token = req.token.clone().unwrap_or_default();
    let name = req.name.clone().unwrap_or_default();
    match accept(&state, &ip, req).await {
        Ok((user, session)) => {
            // This browser now belongs to the new member: a session it held (someone else's,
            // since an email is one user) ends rather than lingering behind the new cookie.
            if let Some(old) = session_token(&headers, secure_cookies(&state))
                && let Err(e) = state.store.revoke_session(&old).await
            {
                tracing::warn!(error = %e, "could not end the session the joining browser held");
            }
            let cookie = started_cookie(&state, &session);
            let resp = if form {
                Redirect::to("/app/members").into_response()
            } else {
                (
                    StatusCode::CREATED,
                    Json(AcceptResponse {
                        tenant_id: user.tenant_id.to_string(),
                        user_id: user.id,
                        role: user.role,
                        redirect: "/app/members".into(),
                        expires_at: ms_to_datetime(session.expires_at),
                    }),
                )
                    .into_response()
            };
            with_cookie(resp, &cookie).unwrap_or_else(IntoResponse::into_response)
        }
        Err(AcceptError::Link(outcome)) if form => closed_page(&outcome),
        Err(AcceptError::Link(outcome)) => {
            let (status, code) = match outcome {
                Accepted::AlreadyUsed => (StatusCode::GONE, "invitation_used"),
                Accepted::Expired => (StatusCode::GONE, "invitation_expired"),
                Accepted::Revoked => (StatusCode::GONE, "invitation_revoked"),
                Accepted::Unknown | Accepted::Joined(_) => {
                    (StatusCode::BAD_REQUEST, "invalid_invitation")
                }
            };
            let message = match status {
                StatusCode::GONE => format!(
                    "this invitation can no longer be accepted ({}); ask for a new one",
                    code.trim_start_matches("invitation_")
                ),
                _ => "the invitation token is missing or not one we issued".to_string(),
            };
            ApiError::new(status, code, message)
                .with_field("token")
                .into_response()
        }
        Err(AcceptError::Api(e)) if form && e.status.is_client_error() => {
            // Back to the form with the reason, while the link still works.
            match state.store.invitation_by_token(&token).await {
                Ok(Some(inv)) => {
                    let company = match crate::domain::TenantId::parse(&inv.tenant_id) {
                        Some(id) => state
                            .store
                            .tenant(&id)
                            .await
                            .ok()
                            .flatten()
                            .map(|t| t.company_name)
                            .unwrap_or_default(),
                        None => String::new(),
                    };
                    render_accept(
                        e.status,
                        &AcceptPage {
                            company_name: &company,
                            email: &inv.email,
                            role: &inv.role,
                            token: &token,
                            name: name.trim(),
                            error: Some(&e.message),
                            signed_in_as: None,
                        },
                    )
                }
                _ => closed_page(&Accepted::Unknown),
            }
        }
        Err(AcceptError::Api(e)) => e.into_response(),
    }
}

// ---------------------------------------------------------------- /app/members

struct MemberRow {
    id: String,
    name: String,
    email: String,
    role: &'static str,
    joined: String,
    is_me: bool,
    /// The team's only owner: neither demoted nor removed, so the page offers neither.
    only_owner: bool,
}

struct InvitationRow {
    id: String,
    email: String,
    role: String,
    state: String,
    expires: String,
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage<'a> {
    nav_current: &'static str,
    company_name: &'a str,
    me_email: &'a str,
    me_role: &'a str,
    can_manage: bool,
    can_manage_owners: bool,
    members: Vec<MemberRow>,
    invitations: Vec<InvitationRow>,
    seats_used: u64,
    seats_limit: String,
    notice: Option<&'static str>,
    error: Option<&'a str>,
}

fn day(ms: i64) -> String {
    ms_to_datetime(ms).format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The notices a redirect back to the page may name (never text from the request).
fn notice(query: Option<&str>) -> Option<&'static str> {
    let code = url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "done")
        .map(|(_, v)| v.into_owned())?;
    Some(match code.as_str() {
        "invited" => "Invitation sent.",
        "resent" => "Invitation sent again with a new link.",
        "revoked" => "Invitation revoked.",
        "role" => "Role changed.",
        "removed" => "Member removed; their sessions have ended.",
        _ => return None,
    })
}

async fn render_members(
    state: &AppState,
    session: &Session,
    tenant: &Tenant,
    status: StatusCode,
    notice: Option<&'static str>,
    error: Option<&str>,
) -> AppResult<Response> {
    let list = team(state, tenant).await?;
    let owners = list
        .members
        .iter()
        .filter(|m| m.role == Role::Owner)
        .count();
    let page = MembersPage {
        nav_current: "members",
        company_name: &tenant.company_name,
        me_email: &session.email,
        me_role: session.role.as_str(),
        can_manage: session.role.allows(Permission::ManageMembers),
        can_manage_owners: session.role.allows(Permission::ManageOwners),
        members: list
            .members
            .into_iter()
            .map(|m| MemberRow {
                is_me: m.id == session.user_id,
                only_owner: m.role == Role::Owner && owners == 1,
                id: m.id,
                name: m.name,
                email: m.email,
                role: m.role.as_str(),
                joined: day(m.joined_at),
            })
            .collect(),
        invitations: list
            .invitations
            .into_iter()
            .map(|i| InvitationRow {
                state: i.state,
                id: i.id,
                email: i.email,
                role: i.role.as_str().to_string(),
                expires: day(i.expires_at),
            })
            .collect(),
        seats_used: list.seats.used,
        seats_limit: list
            .seats
            .limit
            .map_or_else(|| "unlimited".to_string(), |l| l.to_string()),
        notice,
        error,
    };
    let html = page
        .render()
        .map_err(|e| ApiError::internal("render members page", e))?;
    let mut resp = (status, Html(html)).into_response();
    no_store(&mut resp);
    Ok(resp)
}

/// `GET /app/members`: the team, with invite, resend, revoke, role change and removal for those
/// whose role may; a redirect to `/login` when not signed in.
pub(crate) async fn members_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> AppResult<Response> {
    let Some((session, tenant)) = current_session(&state, &headers).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    require(&session, Permission::ViewMembers)?;
    render_members(
        &state,
        &session,
        &tenant,
        StatusCode::OK,
        notice(query.as_deref()),
        None,
    )
    .await
}

/// What a members-page form asks.
enum PageAct {
    Invite,
    Resend(String),
    Revoke(String),
    Role(String),
    Remove(String),
}

/// One form post of the members page: same-site, signed in, then the act; back to the page
/// with a notice, or the page again with the error and its status.
async fn page_act(state: AppState, headers: HeaderMap, body: &[u8], act: PageAct) -> Response {
    let (session, tenant) = match form_session(&state, &headers, "the members page").await {
        Ok(found) => found,
        Err(resp) => return resp,
    };
    let field = |name: &str| {
        url::form_urlencoded::parse(body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let by = acting_session(&session);
    let role = |raw: String| -> AppResult<Role> { raw.parse::<Role>().map_err(ApiError::from) };
    let outcome: AppResult<&str> = async {
        match act {
            PageAct::Invite => {
                let r = if field("role").is_empty() {
                    Role::Member
                } else {
                    role(field("role"))?
                };
                invite(&state, &by, &field("email"), r).await?;
                Ok("invited")
            }
            PageAct::Resend(id) => resend(&state, &by, &id).await.map(|_| "resent"),
            PageAct::Revoke(id) => revoke(&state, &by, &id).await.map(|_| "revoked"),
            PageAct::Role(id) => {
                change_role(&state, &by, &id, role(field("role"))?).await?;
                Ok("role")
            }
            PageAct::Remove(id) => remove(&state, &by, &id).await.map(|_| "removed"),
        }
    }
    .await;
    match outcome {
        Ok(done) => Redirect::to(&format!("/app/members?done={done}")).into_response(),
        // A refused act changed nothing (each is one transaction): the page as it was, with why.
        Err(e) if e.status.is_client_error() => {
            render_members(&state, &session, &tenant, e.status, None, Some(&e.message))
                .await
                .unwrap_or_else(IntoResponse::into_response)
        }
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn page_invite(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    page_act(state, headers, &body, PageAct::Invite).await
}

pub(crate) async fn page_resend(
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    page_act(state, headers, &body, PageAct::Resend(id)).await
}

pub(crate) async fn page_revoke(
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    page_act(state, headers, &body, PageAct::Revoke(id)).await
}

pub(crate) async fn page_role(
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    page_act(state, headers, &body, PageAct::Role(id)).await
}

pub(crate) async fn page_remove(
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    page_act(state, headers, &body, PageAct::Remove(id)).await
}

/// The members pages (the JSON endpoints are registered with the OpenAPI router).
pub fn router() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/app/members", get(members_page))
        .route("/app/members/invite", post(page_invite))
        .route("/app/members/invitations/{id}/resend", post(page_resend))
        .route("/app/members/invitations/{id}/revoke", post(page_revoke))
        .route("/app/members/{id}/role", post(page_role))
        .route("/app/members/{id}/remove", post(page_remove))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(valid_name(Some("  Bob ")).unwrap(), "Bob");
        assert!(valid_name(Some("   ")).is_err());
        assert!(valid_name(None).is_err());
        assert!(valid_name(Some(&"x".repeat(101))).is_err());
        assert!(valid_name(Some("a\u{0007}b")).is_err());
        assert_eq!(
            valid_name(Some(&"é".repeat(100))).unwrap().chars().count(),
            100
        );
    }

    #[test]
    fn notices_come_from_a_fixed_list() {
        assert_eq!(notice(Some("done=invited")), Some("Invitation sent."));
        assert_eq!(notice(Some("done=<script>")), None);
        assert_eq!(notice(None), None);
    }
}
