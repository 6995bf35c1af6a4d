//! `POST /signup`: create a tenant awaiting payment and hand back where to pay.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, AppResult, ErrorBody};
use super::extract::{ClientIp, JsonBody};
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

/// Creates a tenant in `pending_payment` and returns its checkout URL (enterprise: `sales_review`).
#[utoipa::path(post, path = "/signup", tag = "signup",
    request_body = SignupRequest,
    responses(
        (status = 201, description = "Tenant created", body = SignupResponse),
        (status = 400, description = "A field is invalid; `field` names it", body = ErrorBody),
        (status = 409, description = "The email already has an account", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 429, description = "Too many signups from this address; see Retry-After", body = ErrorBody),
        (status = 502, description = "Stripe could not create the checkout; nothing was stored", body = ErrorBody),
        (status = 503, description = "Too many password hashes are queued; see Retry-After", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all, fields(client_ip = %ip.0))]
pub async fn signup(
    State(state): State<AppState>,
    ip: ClientIp,
    JsonBody(req): JsonBody<SignupRequest>,
) -> AppResult<(StatusCode, Json<SignupResponse>)> {
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
            checkout::create(&state, &id, input.plan, input.email.as_str())
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
        StatusCode::CREATED,
        Json(SignupResponse {
            tenant_id: tenant.id.to_string(),
            status: tenant.status,
            plan: tenant.plan,
            checkout_url,
            message,
        }),
    ))
}

fn email_taken() -> ApiError {
    ApiError::conflict(
        "email_taken",
        "an account with this email already exists; log in instead, or reset your password",
    )
    .with_field("email")
}
