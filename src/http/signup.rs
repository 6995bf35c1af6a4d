//! `POST /signup`: create a tenant awaiting payment and hand back where to pay; `GET /`, the
//! pricing and sign-up page whose forms post here and show its refusals inline.

use askama::Template;
use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, AppResult, ErrorBody};
use super::extract::ClientIp;
use crate::billing::checkout;
use crate::domain::tenant::releases_email;
use crate::domain::{Plan, SignupInput, TenantId, TenantStatus, password};
use crate::email::templates;
use crate::store::{NewTenant, StoreError, now_ms};
use crate::workspace::hashing::HashFor;

const HOUR_MS: i64 = 3_600_000;

/// Signup form, seed field names. Unknown fields are ignored.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct SignupRequest {
    /// One `@`, at most 64 characters before it, a dotted host name after it; unique
    /// case-insensitively.
    #[schema(example = "user@example.com", required = true, nullable = false, format = Email,
        max_length = 254, pattern = r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")]
    pub email: Option<String>,
    /// 1 to 200 characters after trimming, with no control or invisible formatting characters
    /// (Unicode categories Cc and Cf).
    #[schema(
        example = "Example Corp",
        required = true,
        nullable = false,
        min_length = 1,
        max_length = 200,
        pattern = r"\S"
    )]
    pub company_name: Option<String>,
    /// 8 to 128 characters.
    #[schema(
        example = "SecurePass123!",
        required = true,
        nullable = false,
        min_length = 8,
        max_length = 128
    )]
    pub password: Option<String>,
    /// `starter` (default), `pro` or `enterprise`.
    #[schema(example = "pro", nullable = false, value_type = Option<crate::domain::Plan>)]
    pub plan: Option<String>,
    /// Whether the customer agrees to receive product news and tips by email (default false).
    /// Recorded with its time, source and client address; changeable on the account page.
    #[schema(example = false, nullable = false)]
    pub marketing_opt_in: Option<bool>,
}

/// The new tenant and where to pay.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignupResponse {
    pub tenant_id: String,
    pub status: TenantStatus,
    pub plan: Plan,
    /// Where the customer completes payment (absent for enterprise: sales follows up).
    pub checkout_url: Option<String>,
    pub message: String,
}

/// The signup body: JSON (the API), or the sign-up page's form.
pub struct SignupBody {
    form: bool,
    req: SignupRequest,
}

impl<S: Send + Sync> FromRequest<S> for SignupBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let mime = super::extract::media_type(req.headers());
        let form = if mime == super::extract::FORM {
            true
        } else if super::extract::is_json(&mime) {
            false
        } else {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the signup as JSON (Content-Type: application/json) or as the sign-up \
                 page's form (application/x-www-form-urlencoded)",
            ));
        };
        let bytes = super::extract::read_body(req, state).await?;
        let req = if form {
            parse_form(&bytes)
        } else {
            super::extract::parse_json(&bytes)?
        };
        Ok(SignupBody { form, req })
    }
}

/// The sign-up form's fields (the first of a repeated one wins); the consent box is present
/// when ticked, whatever its value.
fn parse_form(bytes: &[u8]) -> SignupRequest {
    let mut req = SignupRequest {
        email: None,
        company_name: None,
        password: None,
        plan: None,
        marketing_opt_in: Some(false),
    };
    for (k, v) in url::form_urlencoded::parse(bytes) {
        let slot = match k.as_ref() {
            "email" => &mut req.email,
            "company_name" => &mut req.company_name,
            "password" => &mut req.password,
            "plan" => &mut req.plan,
            "marketing_opt_in" => {
                req.marketing_opt_in = Some(true);
                continue;
            }
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(v.into_owned());
        }
    }
    req
}

/// Creates a tenant in `pending_payment` and returns its checkout URL (enterprise: `sales_review`).
/// The sign-up page's form gets a 303 to the checkout (enterprise: a page saying sales will be
/// in touch), or the page again with the refusal next to the field it names, with its status.
#[utoipa::path(post, path = "/signup", tag = "signup",
    request_body(content(
        (SignupRequest = "application/json"),
        (SignupRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 201, description = "Tenant created", body = SignupResponse),
        (status = 200, description = "Form, enterprise: the request is with sales (HTML)", content_type = "text/html", body = String),
        (status = 303, description = "Form: go to the checkout"),
        (status = 400, description = "A field is invalid; `field` names it", body = ErrorBody),
        (status = 409, description = "The email already has an account", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Body is neither JSON nor a form", body = ErrorBody),
        (status = 429, description = "Too many signups from this address; see Retry-After", body = ErrorBody),
        (status = 502, description = "Stripe could not create the checkout; nothing was stored", body = ErrorBody),
        (status = 503, description = "Too many password hashes are queued; see Retry-After", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all, fields(client_ip = %ip.0))]
pub async fn signup(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    SignupBody { form, req }: SignupBody,
) -> Response {
    if !form {
        return match create(&state, &ip, req).await {
            Ok((created, _)) => (StatusCode::CREATED, Json(created)).into_response(),
            Err(e) => e.into_response(),
        };
    }
    // A form post from another site is refused: nobody signs a visitor up behind their back.
    let typed = Typed::from(&req);
    let outcome = if super::login::is_cross_site(&headers, &state.settings.app_url) {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            "this form can only be sent from our own sign-up page; open it and try again",
        ))
    } else {
        create(&state, &ip, req).await
    };
    match outcome {
        Ok((
            SignupResponse {
                checkout_url: Some(url),
                ..
            },
            Some(session_id),
        )) => {
            // The cancel page, in this browser, can offer the checkout again.
            let cookie = super::onboarding::checkout_cookie(&state, &session_id);
            let mut resp = Redirect::to(&url).into_response();
            if let Ok(v) = axum::http::HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(axum::http::header::SET_COOKIE, v);
            }
            resp
        }
        Ok(_) => render(
            StatusCode::OK,
            SalesRequested {
                company_name: typed.company_name,
                email: typed.email,
            },
        ),
        Err(e) => {
            let status = e.status;
            let retry_after = e.retry_after_secs;
            let mut resp = render(status, home_page(&state, Some((typed, e))));
            if let Some(secs) = retry_after {
                resp.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(secs),
                );
            }
            resp
        }
    }
}

/// Signs the customer up: validation, rate limit, the checkout, the stored tenant. Answers the
/// API's response and the checkout session's id (none for enterprise).
async fn create(
    state: &AppState,
    ip: &ClientIp,
    req: SignupRequest,
) -> AppResult<(SignupResponse, Option<String>)> {
    let marketing_opt_in = req.marketing_opt_in.unwrap_or(false);
    let input = SignupInput::parse(req.email, req.company_name, req.password, req.plan)?;

    let limit = state.settings.signup_rate_limit_per_hour;
    if limit > 0 {
        let key = format!("signup:{}", ip.key());
        let decision = state
            .store
            .hit_rate_limit(&key, limit, HOUR_MS, now_ms())
            .await?;
        if !decision.allowed {
            return Err(ApiError::too_many_requests(
                format!(
                    "too many signups from your address ({limit} per hour); try again in {} seconds",
                    decision.retry_after_secs
                ),
                decision.retry_after_secs,
            ));
        }
    }

    // Never create a second checkout for an email that already has an account (checked before
    // the hash: a taken email costs one read, not an argon2 run; the insert still catches a race).
    // A signup that never paid and whose checkout expired, or that was abandoned, gives its
    // email up to this one.
    let released = match state
        .store
        .tenant_by_email(input.email.normalized())
        .await?
    {
        Some(old) if releases_email(old.status, old.created_at, now_ms()) => Some(old),
        Some(_) => return Err(email_taken()),
        None => None,
    };
    // One email, one user: a member of another account cannot sign up with the same address.
    if let Some((user, _)) = state.store.user_by_email(input.email.normalized()).await?
        && released.as_ref().is_none_or(|old| old.id != user.tenant_id)
    {
        return Err(email_taken());
    }

    // argon2 takes tens of milliseconds of CPU: keep it off the async workers.
    let (input, password_hash) = state
        .hashing
        .run(HashFor::Signup, move |memory| {
            let hash = password::hash(&input.password, memory);
            (input, hash)
        })
        .await?;
    let id = TenantId::generate();
    let sales_assisted = input.plan.is_sales_assisted();
    // Checkout is created before anything is stored: if Stripe fails, nothing is half-written
    // and the customer can simply try again.
    let checkout = if sales_assisted {
        None
    } else {
        Some(
            checkout::create(state, &id, input.plan, input.email.as_str())
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "could not create the checkout session");
                    ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "payment_provider_error",
                        "our payment provider could not start a checkout; nothing was charged, please try again in a moment",
                    )
                })?,
        )
    };
    let tenant = NewTenant {
        id,
        email: input.email.as_str().to_string(),
        email_normalized: input.email.normalized().to_string(),
        company_name: input.company_name.as_str().to_string(),
        password_hash,
        plan: input.plan,
        status: if sales_assisted {
            TenantStatus::SalesReview
        } else {
            TenantStatus::PendingPayment
        },
        reason: if sales_assisted {
            "enterprise signup: sales review".into()
        } else {
            "signup".into()
        },
        stripe_checkout_session_id: checkout.as_ref().map(|c| c.session_id.clone()),
    };
    let mut tx = state.store.begin().await?;
    if let Some(old) = &released {
        if old.status == TenantStatus::PendingPayment {
            tx.transition_tenant_from(
                &old.id,
                TenantStatus::PendingPayment,
                TenantStatus::Abandoned,
                "checkout expired unpaid; the email signed up again",
                "signup",
            )
            .await
            .map_err(|_| email_taken())?;
        }
        tx.release_email(&old.id).await?;
        tracing::info!(old_tenant_id = %old.id, "an unpaid signup gave its email up to a new one");
    }
    match tx.insert_tenant(&tenant).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => return Err(email_taken()),
        Err(e) => return Err(e.into()),
    }
    tx.assign_wizard_variant(&tenant.id, state.settings.wizard_split)
        .await?;
    tx.record_marketing_consent(
        &tenant.id,
        marketing_opt_in,
        crate::email::consent::source::SIGNUP,
        Some(&ip.0.to_string()),
    )
    .await?;
    if sales_assisted {
        let email = templates::enterprise_request(
            state.mailer.brand(),
            tenant.id.as_str(),
            &state.settings.operator_email,
            &tenant.company_name,
            &tenant.email,
        );
        tx.queue_email(&email, &state.settings.sendgrid_from_email)
            .await?;
    }
    tx.commit().await?;
    state.metrics.signups.inc();
    state.jobs_ready.notify_one();
    tracing::info!(tenant_id = %tenant.id, plan = %tenant.plan, "tenant signed up");

    let session_id = checkout.as_ref().map(|c| c.session_id.clone());
    let (checkout_url, message) = match checkout {
        Some(c) => (
            Some(c.url),
            "Account created. Complete payment at checkout_url to provision your workspace.".to_string(),
        ),
        None => (
            None,
            "Thanks! Enterprise plans are set up with our sales team, who will be in touch within one business day."
                .to_string(),
        ),
    };
    Ok((
        SignupResponse {
            tenant_id: tenant.id.to_string(),
            status: tenant.status,
            plan: tenant.plan,
            checkout_url,
            message,
        },
        session_id,
    ))
}

fn email_taken() -> ApiError {
    ApiError::conflict(
        "email_taken",
        "an account with this email already exists; log in instead, or reset your password",
    )
    .with_field("email")
}

/// What the visitor typed, to fill the form again (never the password).
#[derive(Default)]
struct Typed {
    email: String,
    company_name: String,
    plan: String,
    marketing_opt_in: bool,
}

impl From<&SignupRequest> for Typed {
    fn from(req: &SignupRequest) -> Self {
        Typed {
            email: req.email.clone().unwrap_or_default().trim().to_string(),
            company_name: req.company_name.clone().unwrap_or_default(),
            plan: req.plan.clone().unwrap_or_default(),
            marketing_opt_in: req.marketing_opt_in.unwrap_or(false),
        }
    }
}

/// One of the page's two forms, filled again with the error next to its field.
#[derive(Default)]
struct FormView {
    email: String,
    company_name: String,
    plan: String,
    marketing_opt_in: bool,
    email_error: Option<String>,
    company_name_error: Option<String>,
    password_error: Option<String>,
    plan_error: Option<String>,
    /// An error that belongs to no one field (rate limit, payment provider).
    general: Option<String>,
}

impl FormView {
    fn refused(typed: Typed, e: ApiError) -> Self {
        let mut view = FormView {
            email: typed.email,
            company_name: typed.company_name,
            plan: typed.plan,
            marketing_opt_in: typed.marketing_opt_in,
            ..FormView::default()
        };
        let message = Some(e.message);
        match e.field.as_deref() {
            Some("email") => view.email_error = message,
            Some("company_name") => view.company_name_error = message,
            Some("password") => view.password_error = message,
            Some("plan") => view.plan_error = message,
            _ => view.general = message,
        }
        view
    }
}

/// A plan as the pricing table shows it.
struct PlanView {
    name: &'static str,
    title: &'static str,
    price: u32,
    documents: String,
    queries: String,
    storage: String,
    users: String,
    sales: bool,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    plans: Vec<PlanView>,
    form: FormView,
    sales: FormView,
}

#[derive(Template)]
#[template(path = "sales_requested.html")]
struct SalesRequested {
    company_name: String,
    email: String,
}

fn render(status: StatusCode, page: impl Template) -> Response {
    match page.render() {
        Ok(html) => {
            let mut resp = (status, Html(html)).into_response();
            super::login::session::no_store(&mut resp);
            resp
        }
        Err(e) => ApiError::internal("render the sign-up page", e).into_response(),
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn storage(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= 1024 * MIB && bytes.is_multiple_of(1024 * MIB) {
        format!("{} GB", bytes / (1024 * MIB))
    } else {
        format!("{} MB", bytes.div_ceil(MIB))
    }
}

/// The page with its plans from the configured plan table; `refused`, the form a refusal
/// belongs to (the enterprise one when the plan typed was enterprise).
fn home_page(state: &AppState, refused: Option<(Typed, ApiError)>) -> HomePage {
    let plans = Plan::ALL
        .iter()
        .map(|&plan| {
            let l = state.settings.plans.limits(plan);
            let limit = |v: Option<u64>, f: fn(u64) -> String| v.map_or("Unlimited".into(), f);
            PlanView {
                name: plan.as_str(),
                title: match plan {
                    Plan::Starter => "Starter",
                    Plan::Pro => "Pro",
                    Plan::Enterprise => "Enterprise",
                },
                price: l.price_monthly,
                documents: limit(l.max_documents, thousands),
                queries: limit(l.max_queries_per_month, thousands),
                storage: l.max_bytes.map_or("Unlimited content".into(), |b| {
                    format!("{} of content", storage(b))
                }),
                users: match l.max_users {
                    Some(1) => "1 user".into(),
                    Some(n) => format!("Up to {n} users"),
                    None => "Unlimited users".into(),
                },
                sales: plan.is_sales_assisted(),
            }
        })
        .collect();
    let (mut form, mut sales) = (FormView::default(), FormView::default());
    if let Some((typed, e)) = refused {
        if typed.plan.trim() == Plan::Enterprise.as_str() {
            sales = FormView::refused(typed, e);
        } else {
            form = FormView::refused(typed, e);
        }
    }
    HomePage { plans, form, sales }
}

/// `GET /`: the plans and the sign-up form.
pub(crate) async fn home(State(state): State<AppState>) -> Response {
    render(StatusCode::OK, home_page(&state, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_decoded_and_the_box_counts_when_present() {
        let req = parse_form(
            b"email=a%40b.co&company_name=A+%26+B&password=p&plan=pro&email=x@y.z&marketing_opt_in=on",
        );
        assert_eq!(req.email.as_deref(), Some("a@b.co"));
        assert_eq!(req.company_name.as_deref(), Some("A & B"));
        assert_eq!(req.plan.as_deref(), Some("pro"));
        assert_eq!(req.marketing_opt_in, Some(true));
        assert_eq!(parse_form(b"email=a").marketing_opt_in, Some(false));
    }

    #[test]
    fn limits_read_as_people_write_them() {
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(storage(100 * 1024 * 1024), "100 MB");
        assert_eq!(storage(1024 * 1024 * 1024), "1 GB");
    }
}
