use onboard::domain::TenantId;
use reqwest::Response;
use reqwest::header::{CACHE_CONTROL, COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use serde_json::{Value, json};

use crate::helpers::{ActiveTenant, Backend, TestApp, assert_error, eventually, spawn_app};
use crate::store_tests;

store_tests!(
    json_login_answers_the_tenant_and_sets_an_httponly_lax_cookie,
    form_login_lands_in_the_wizard_and_the_pages_list_keys_and_milestones,
    failed_form_login_shows_the_form_again_with_the_error_and_status,
    wrong_password_and_unknown_email_get_byte_identical_401s,
    five_failures_lock_the_email_even_for_the_right_password_until_they_age_out,
    unknown_emails_are_locked_like_known_ones,
    magic_link_from_the_welcome_email_signs_in_exactly_once,
    expired_unknown_or_missing_magic_tokens_get_an_explaining_page,
    tenants_that_are_not_active_get_403_naming_their_status,
    session_and_account_need_a_valid_cookie,
    logout_revokes_the_session_and_clears_the_cookie,
    first_login_is_recorded_once_after_two_logins,
    login_returns_4xx_naming_the_field_for_bad_input,
    cross_site_form_login_is_refused,
    old_login_failures_are_pruned,
    concurrent_wrong_guesses_cannot_slip_past_the_lock,
    a_stranger_cannot_lock_the_owner_out_from_another_address,
    one_address_is_limited_across_all_emails,
    a_password_reset_link_sets_a_new_password_once_and_ends_other_sessions,
    forgot_password_never_says_whether_an_account_exists,
    concurrent_clicks_on_a_magic_link_start_one_session,
    a_full_hashing_queue_answers_503_at_once,
    an_emailed_sign_in_link_signs_in_exactly_once_as_the_user_who_asked,
    sign_in_link_requests_never_say_whether_an_account_exists,
    sign_in_link_requests_with_a_bad_email_get_400_naming_it,
    sign_in_link_requests_are_rate_limited_per_client_address,
    cross_site_sign_in_link_requests_are_refused,
);

pub async fn login_json(app: &TestApp, email: &str, password: &str) -> Response {
    app.post_json("/login", &json!({"email": email, "password": password}))
        .await
}

async fn login_form(app: &TestApp, email: &str, password: &str) -> Response {
    app.client
        .post(app.url("/login"))
        .form(&[("email", email), ("password", password)])
        .send()
        .await
        .expect("request")
}

/// The `Set-Cookie` header of a response (asserting there is one).
fn set_cookie(resp: &Response) -> String {
    resp.headers()
        .get(SET_COOKIE)
        .expect("a Set-Cookie header")
        .to_str()
        .unwrap()
        .to_string()
}

/// `onboard_session=…` as a browser would send it back.
fn cookie_pair(set_cookie: &str) -> String {
    let pair = set_cookie.split(';').next().unwrap().trim().to_string();
    assert!(pair.starts_with("onboard_session="), "{set_cookie}");
    pair
}

async fn get_with_cookie(app: &TestApp, path: &str, cookie: &str) -> Response {
    app.client
        .get(app.url(path))
        .header(COOKIE, cookie)
        .send()
        .await
        .expect("request")
}

/// Signs in with the tenant's password and returns the cookie to send back.
pub async fn signed_in(app: &TestApp, t: &ActiveTenant) -> String {
    let resp = login_json(app, &t.email, &t.password).await;
    assert_eq!(resp.status(), 200);
    cookie_pair(&set_cookie(&resp))
}

/// The magic link of the tenant's welcome email, from the outbox.
pub async fn welcome_link(app: &TestApp, tenant_id: &str) -> String {
    let text = eventually("the welcome email", 30, || async {
        app.store
            .list_emails(Some(tenant_id), 20)
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.kind == "welcome")
            .map(|e| e.text_body)
    })
    .await;
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/login/magic?token="))
        .expect("the magic link in the welcome email")
        .to_string();
    assert!(link.starts_with(&app.url("/login/magic?token=")), "{link}");
    link
}

/// Follows a sign-in link as a person does: the page (which consumes nothing), then its button.
/// Returns the button's answer.
pub async fn follow_magic_link(app: &TestApp, link: &str) -> Response {
    let page = app.client.get(link).send().await.unwrap();
    assert_eq!(page.status(), 200, "the confirmation page");
    assert!(
        page.headers().get(SET_COOKIE).is_none(),
        "a GET signs no one in"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("action=\"/login/magic\""), "{html}");
    confirm_magic_link(app, link).await
}

/// The confirmation page's button: POSTs the link's token.
pub async fn confirm_magic_link(app: &TestApp, link: &str) -> Response {
    let token = link.split("token=").nth(1).unwrap();
    app.client
        .post(app.url("/login/magic"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

async fn failure_rows(app: &TestApp, email: &str) -> i64 {
    onboard::with_pool!(&app.store, |pool| {
        sqlx::query_scalar("SELECT COUNT(*) FROM login_attempts WHERE email = $1")
            .bind(email)
            .fetch_one(pool)
            .await
            .unwrap()
    })
}

async fn json_login_answers_the_tenant_and_sets_an_httponly_lax_cookie(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("json-login@example.com", "pro").await;
    // Addresses are matched the way signup normalises them.
    let resp = login_json(&app, " JSON-Login@Example.com ", &t.password).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()[CACHE_CONTROL], "no-store");
    let cookie = set_cookie(&resp);
    let attrs: Vec<&str> = cookie.split(';').map(str::trim).collect();
    for want in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(attrs.contains(&want), "{want} in {cookie}");
    }
    assert!(
        !attrs.iter().any(|a| a.eq_ignore_ascii_case("secure")),
        "no Secure over plain http: {cookie}"
    );
    assert!(attrs.iter().any(|a| a.starts_with("Max-Age=")), "{cookie}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["tenant_id"], t.tenant_id.as_str());
    assert_eq!(body["status"], "active");
    // A new tenant's setup is still ahead of it: sign-in lands in the wizard.
    assert_eq!(body["redirect"], "/setup");
    let expires = chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap())
        .expect("expires_at is RFC 3339");
    let hours =
        (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    let want = app.state.settings.jwt_expiry_hours as f64;
    assert!((hours - want).abs() < 0.1, "session lasts {hours} h");

    let cookie = cookie_pair(&cookie);
    let token = cookie.trim_start_matches("onboard_session=");
    assert_eq!(token.len(), 43, "32 random bytes in base64url: {token}");
    let resp = get_with_cookie(&app, "/session", &cookie).await;
    assert_eq!(resp.status(), 200);
    let s: Value = resp.json().await.unwrap();
    assert_eq!(s["tenant_id"], t.tenant_id.as_str());
    assert_eq!(s["email"], "json-login@example.com");
    assert_eq!(s["company_name"], "Acme");
    assert_eq!(s["plan"], "pro");
    assert_eq!(s["status"], "active");
    assert_eq!(s["expires_at"], body["expires_at"]);

    // Only the token's hash is stored.
    let stored: String = onboard::with_pool!(&app.store, |pool| {
        sqlx::query_scalar("SELECT id_hash FROM sessions WHERE tenant_id = $1")
            .bind(&t.tenant_id)
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_ne!(stored, token);
    assert_eq!(stored, onboard::workspace::sessions::token_hash(token));
}

async fn form_login_lands_in_the_wizard_and_the_pages_list_keys_and_milestones(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("form-login@example.com", "starter").await;
    let resp = login_form(&app, &t.email, &t.password).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()[LOCATION],
        "/setup",
        "a new tenant lands in the wizard"
    );
    let cookie = cookie_pair(&set_cookie(&resp));

    let resp = get_with_cookie(&app, "/account", &cookie).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()[CACHE_CONTROL], "no-store");
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = resp.text().await.unwrap();
    for want in [
        "Acme",
        "form-login@example.com",
        "starter",
        "active",
        "first_login",
        "action=\"/logout\"",
        "href=\"/docs\"",
    ] {
        assert!(html.contains(want), "{want} on the account page:\n{html}");
    }
    let keys = app
        .store
        .list_api_keys(&TenantId::parse(&t.tenant_id).unwrap())
        .await
        .unwrap();
    assert!(!keys.is_empty());
    // The keys are on the workspace page, by name and prefix, with their actions.
    let resp = get_with_cookie(&app, "/app", &cookie).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()[CACHE_CONTROL], "no-store");
    let html = resp.text().await.unwrap();
    for k in &keys {
        assert!(html.contains(&k.prefix), "prefix {} listed", k.prefix);
        if k.revoked_at.is_none() {
            let rotate = format!("/app/keys/{}/rotate", k.id);
            assert!(html.contains(&rotate), "key {} can be rotated", k.id);
        }
    }
    assert!(
        !html.contains(&t.api_key),
        "the key's secret is never shown again"
    );

    // Signed in already: the sign-in page sends the browser on to the workspace.
    let resp = get_with_cookie(&app, "/login", &cookie).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/app");
}

async fn failed_form_login_shows_the_form_again_with_the_error_and_status(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = app.get("/login").await;
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("<form method=\"post\" action=\"/login\">"),
        "{html}"
    );
    assert!(html.contains("name=\"email\"") && html.contains("name=\"password\""));

    let resp = login_form(&app, "nobody@example.com", "WrongPass123!").await;
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get(SET_COOKIE).is_none());
    let html = resp.text().await.unwrap();
    assert!(html.contains("role=\"alert\""), "{html}");
    assert!(
        html.contains("the email or password is incorrect"),
        "{html}"
    );
    assert!(
        html.contains("value=\"nobody@example.com\""),
        "the email is kept"
    );

    // What the visitor typed comes back escaped.
    let resp = login_form(&app, "\"><script>alert(1)</script>", "x").await;
    assert_eq!(resp.status(), 400);
    let html = resp.text().await.unwrap();
    assert!(!html.contains("<script>alert(1)"), "{html}");
    assert!(html.contains("&#60;script&#62;"), "{html}");

    let resp = app
        .client
        .post(app.url("/login"))
        .form(&[("email", "someone@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("password is required"));
}

async fn wrong_password_and_unknown_email_get_byte_identical_401s(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("known@example.com", "starter").await;
    let wrong = login_json(&app, &t.email, "WrongPass123!").await;
    let wrong_headers = wrong.headers().clone();
    let wrong = (wrong.status(), wrong.bytes().await.unwrap());
    let unknown = login_json(&app, "unknown@example.com", "WrongPass123!").await;
    let unknown_headers = unknown.headers().clone();
    let unknown = (unknown.status(), unknown.bytes().await.unwrap());
    assert_eq!(wrong.0, 401);
    assert_eq!(wrong, unknown);
    assert_eq!(wrong_headers.get(SET_COOKIE), None);
    assert_eq!(unknown_headers.get(SET_COOKIE), None);
    let body: Value = serde_json::from_slice(&wrong.1).unwrap();
    assert_eq!(body["error"]["code"], "invalid_credentials");
}

async fn five_failures_lock_the_email_even_for_the_right_password_until_they_age_out(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("locked@example.com", "starter").await;
    for attempt in 1..=4 {
        let resp = login_json(&app, &t.email, "WrongPass123!").await;
        assert_eq!(resp.status(), 401, "attempt {attempt}");
    }
    let fifth = login_json(&app, &t.email, "WrongPass123!").await;
    assert_eq!(fifth.status(), 429, "the fifth failure locks");
    let right = login_json(&app, &t.email, &t.password).await;
    let retry_after: u64 = right.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    assert!(right.headers().get(SET_COOKIE).is_none());
    let err = assert_error(right, 429, "login_locked").await;
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("minute"), "{message}");
    assert!(message.contains("UTC"), "{message}");
    assert!(message.contains("welcome email"), "{message}");

    // The form gets the same answer, as a page.
    let resp = login_form(&app, &t.email, &t.password).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get(RETRY_AFTER).is_some());
    assert!(resp.text().await.unwrap().contains("welcome email"));

    // Sixteen minutes later the failures are outside the window.
    onboard::with_pool!(&app.store, |pool| {
        sqlx::query("UPDATE login_attempts SET attempted_at = attempted_at - $1 WHERE email = $2")
            .bind(16 * 60_000_i64)
            .bind(&t.email)
            .execute(pool)
            .await
            .unwrap();
    });
    assert!(failure_rows(&app, &t.email).await >= 5);
    let resp = login_json(&app, &t.email, &t.password).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        failure_rows(&app, &t.email).await,
        0,
        "a success clears the failures"
    );
}

async fn unknown_emails_are_locked_like_known_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    for _ in 0..4 {
        let resp = login_json(&app, "ghost@example.com", "WrongPass123!").await;
        assert_eq!(resp.status(), 401);
    }
    let resp = login_json(&app, "ghost@example.com", "WrongPass123!").await;
    assert_error(resp, 429, "login_locked").await;
    // Another address is not affected.
    let resp = login_json(&app, "other-ghost@example.com", "WrongPass123!").await;
    assert_eq!(resp.status(), 401);
}

async fn magic_link_from_the_welcome_email_signs_in_exactly_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("magic@example.com", "pro").await;
    let link = welcome_link(&app, &t.tenant_id).await;
    // A link scanner (or a preview) fetching the link uses nothing up.
    for _ in 0..2 {
        let scanned = app.client.get(&link).send().await.unwrap();
        assert_eq!(scanned.status(), 200);
        assert!(scanned.headers().get(SET_COOKIE).is_none());
        assert_eq!(scanned.headers()[CACHE_CONTROL], "no-store");
    }

    let resp = follow_magic_link(&app, &link).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/setup", "into the setup wizard");
    assert_eq!(resp.headers()[CACHE_CONTROL], "no-store");
    let cookie = set_cookie(&resp);
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
    let cookie = cookie_pair(&cookie);
    let s: Value = get_with_cookie(&app, "/session", &cookie)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["tenant_id"], t.tenant_id.as_str());
    let method: String = onboard::with_pool!(&app.store, |pool| {
        sqlx::query_scalar("SELECT method FROM sessions WHERE tenant_id = $1")
            .bind(&t.tenant_id)
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(method, "magic_link");
    // The link lasts WELCOME_LINK_HOURS (48 by default), not a session's JWT_EXPIRY_HOURS, and
    // the email says so.
    let lifetime: i64 = onboard::with_pool!(&app.store, |pool| {
        sqlx::query_scalar(
            "SELECT expires_at - created_at FROM login_tokens \
             WHERE tenant_id = $1 AND purpose = 'magic_login'",
        )
        .bind(&t.tenant_id)
        .fetch_one(pool)
        .await
        .unwrap()
    });
    assert_eq!(app.state.settings.welcome_link_hours, 48);
    assert_eq!(lifetime, 48 * 3_600_000);
    let welcome = app.emails(Some(&t.tenant_id), "welcome").await.remove(0);
    assert!(
        welcome.text_body.contains("48 hours"),
        "{}",
        welcome.text_body
    );

    let again = confirm_magic_link(&app, &link).await;
    assert_eq!(again.status(), 410);
    assert_eq!(again.headers()[CACHE_CONTROL], "no-store");
    assert!(again.headers().get(SET_COOKIE).is_none());
    let html = again.text().await.unwrap();
    assert!(html.contains("already used"), "{html}");
    assert!(html.contains("href=\"/login\""), "{html}");
}

async fn expired_unknown_or_missing_magic_tokens_get_an_explaining_page(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("expired@example.com", "starter").await;
    let id = TenantId::parse(&t.tenant_id).unwrap();
    let owner = app.store.members(&id).await.unwrap().remove(0);
    let mut tx = app.store.begin().await.unwrap();
    let expired = tx
        .create_login_token(
            &id,
            &owner.id,
            onboard::workspace::sessions::TokenPurpose::MagicLogin,
            -1_000,
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let resp = app.get(&format!("/login/magic?token={expired}")).await;
    assert_eq!(resp.status(), 410);
    assert!(resp.headers().get(SET_COOKIE).is_none());
    assert!(resp.text().await.unwrap().contains("expired"));

    for (path, status) in [
        (
            "/login/magic?token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            400,
        ),
        ("/login/magic?token=%27%20OR%201%3D1--", 400),
        ("/login/magic?token=", 400),
        ("/login/magic", 400),
        ("/login/magic?token=a&token=b", 400),
    ] {
        let resp = app.get(path).await;
        assert_eq!(resp.status(), status, "{path}");
        assert_eq!(resp.headers()[CACHE_CONTROL], "no-store", "{path}");
        let html = resp.text().await.unwrap();
        assert!(html.contains("href=\"/login\""), "{path}: {html}");
    }
}

async fn tenants_that_are_not_active_get_403_naming_their_status(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signup("pending@example.com", "starter").await;
    let resp = login_json(&app, "pending@example.com", crate::helpers::TEST_PASSWORD).await;
    assert!(resp.headers().get(SET_COOKIE).is_none());
    let err = assert_error(resp, 403, "account_not_active").await;
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("pending_payment"), "{message}");
    assert!(message.contains("checkout"), "{message}");

    let resp = login_form(&app, "pending@example.com", crate::helpers::TEST_PASSWORD).await;
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().contains("pending_payment"));

    // Only the password's owner learns the status.
    let resp = login_json(&app, "pending@example.com", "WrongPass123!").await;
    assert_error(resp, 401, "invalid_credentials").await;

    app.signup("sales@example.com", "enterprise").await;
    let resp = login_json(&app, "sales@example.com", crate::helpers::TEST_PASSWORD).await;
    let err = assert_error(resp, 403, "account_not_active").await;
    assert!(err["message"].as_str().unwrap().contains("sales_review"));
}

async fn session_and_account_need_a_valid_cookie(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_error(app.get("/session").await, 401, "unauthorized").await;
    let resp = app.get("/account").await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/login");
    for bad in [
        "onboard_session=nonsense",
        "onboard_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "onboard_session=%27%20OR%201%3D1",
        "onboard_session",
    ] {
        let resp = get_with_cookie(&app, "/session", bad).await;
        assert_error(resp, 401, "unauthorized").await;
        let resp = get_with_cookie(&app, "/account", bad).await;
        assert_eq!(resp.status(), 303, "{bad}");
    }

    // An expired session is no session.
    let t = app.active_tenant("expiring@example.com", "starter").await;
    let cookie = signed_in(&app, &t).await;
    assert_eq!(
        get_with_cookie(&app, "/session", &cookie).await.status(),
        200
    );
    onboard::with_pool!(&app.store, |pool| {
        sqlx::query("UPDATE sessions SET expires_at = $1 WHERE tenant_id = $2")
            .bind(onboard::store::now_ms() - 1)
            .bind(&t.tenant_id)
            .execute(pool)
            .await
            .unwrap();
    });
    assert_error(
        get_with_cookie(&app, "/session", &cookie).await,
        401,
        "unauthorized",
    )
    .await;
}

async fn logout_revokes_the_session_and_clears_the_cookie(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("logout@example.com", "starter").await;
    let cookie = signed_in(&app, &t).await;
    let resp = app
        .client
        .post(app.url("/logout"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let cleared = set_cookie(&resp);
    assert!(cleared.starts_with("onboard_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_error(
        get_with_cookie(&app, "/session", &cookie).await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(
        get_with_cookie(&app, "/account", &cookie).await.status(),
        303
    );
    let revoked: Option<i64> = onboard::with_pool!(&app.store, |pool| {
        sqlx::query_scalar("SELECT revoked_at FROM sessions WHERE tenant_id = $1")
            .bind(&t.tenant_id)
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert!(revoked.is_some());

    // The account page's form: back to the sign-in page.
    let cookie = signed_in(&app, &t).await;
    let resp = app
        .client
        .post(app.url("/logout"))
        .header(COOKIE, &cookie)
        .form(&[("x", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/login");
    assert_eq!(
        get_with_cookie(&app, "/session", &cookie).await.status(),
        401
    );

    // Signing out without a session is harmless.
    let resp = app.client.post(app.url("/logout")).send().await.unwrap();
    assert_eq!(resp.status(), 204);
}

async fn first_login_is_recorded_once_after_two_logins(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("milestone@example.com", "starter").await;
    let id = TenantId::parse(&t.tenant_id).unwrap();
    let first = |ms: Vec<onboard::analytics::MilestoneRecord>| {
        ms.into_iter()
            .filter(|m| m.milestone == "first_login")
            .collect::<Vec<_>>()
    };
    assert!(first(app.store.milestones(&id).await.unwrap()).is_empty());
    signed_in(&app, &t).await;
    let link = welcome_link(&app, &t.tenant_id).await;
    assert_eq!(follow_magic_link(&app, &link).await.status(), 303);
    // A second process (no memo) must not record it again either.
    let app = app.restart().await;
    signed_in(&app, &t).await;
    let recorded = first(app.store.milestones(&id).await.unwrap());
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].source, "server");
    assert_eq!(recorded[0].detail.as_deref(), Some("password"));
}

async fn login_returns_4xx_naming_the_field_for_bad_input(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
        (
            json!({"password": "x"}),
            400,
            "invalid_email",
            Some("email"),
        ),
        (
            json!({"email": "", "password": "x"}),
            400,
            "invalid_email",
            Some("email"),
        ),
        (
            json!({"email": "not-an-email", "password": "x"}),
            400,
            "invalid_email",
            Some("email"),
        ),
        (
            json!({"email": "a@example.com"}),
            400,
            "invalid_password",
            Some("password"),
        ),
        (
            json!({"email": "a@example.com", "password": ""}),
            400,
            "invalid_password",
            Some("password"),
        ),
        (
            json!({"email": 5, "password": "x"}),
            400,
            "invalid_field",
            Some("email"),
        ),
        (json!("text"), 400, "invalid_field", None),
    ];
    for (body, status, code, field) in cases {
        let resp = app.post_json("/login", &body).await;
        let err = assert_error(resp, status, code).await;
        assert_eq!(err["field"].as_str(), field, "{body}");
    }
    let raw = |ct: Option<&'static str>, body: &'static str| {
        let mut req = app.client.post(app.url("/login")).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    assert_error(
        raw(Some("application/json"), "{\"email\":").await.unwrap(),
        400,
        "invalid_json",
    )
    .await;
    assert_error(
        raw(Some("text/plain"), "email=a").await.unwrap(),
        415,
        "unsupported_media_type",
    )
    .await;
    assert_error(raw(None, "").await.unwrap(), 415, "unsupported_media_type").await;
    let big = "x".repeat(100 * 1024);
    let resp = app
        .client
        .post(app.url("/login"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_error(resp, 413, "payload_too_large").await;
    let resp = app.client.put(app.url("/login")).send().await.unwrap();
    assert_error(resp, 405, "method_not_allowed").await;
}

async fn cross_site_form_login_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("csrf@example.com", "starter").await;
    let resp = app
        .client
        .post(app.url("/login"))
        .header("origin", "https://evil.example")
        .form(&[
            ("email", t.email.as_str()),
            ("password", t.password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get(SET_COOKIE).is_none());
    // The real page's own form is accepted.
    let resp = app
        .client
        .post(app.url("/login"))
        .header("origin", app.url(""))
        .header("sec-fetch-site", "same-origin")
        .form(&[
            ("email", t.email.as_str()),
            ("password", t.password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
}

async fn old_login_failures_are_pruned(backend: Backend) {
    let app = spawn_app(backend).await;
    // The worker prunes once at start; let that run finish so it cannot take the rows below.
    eventually("the start-up prune", 10, || async {
        let stats = app.store.job_stats().await.unwrap();
        stats
            .iter()
            .any(|s| s.kind == "prune_sessions" && s.done >= 1)
            .then_some(())
    })
    .await;
    let now = onboard::store::now_ms();
    let day = 86_400_000;
    app.store
        .record_login_failure("old@example.com", "127.0.0.1", now - 2 * day)
        .await
        .unwrap();
    app.store
        .record_login_failure("new@example.com", "127.0.0.1", now - 1_000)
        .await
        .unwrap();
    let pruned = app.store.prune_login_failures(now - day).await.unwrap();
    assert_eq!(pruned, 1);
    assert_eq!(failure_rows(&app, "old@example.com").await, 0);
    assert_eq!(failure_rows(&app, "new@example.com").await, 1);

    // Sessions: one that expired (negative lifetime, long ago) goes, a live one stays.
    let t = app.active_tenant("prune@example.com", "starter").await;
    let id = onboard::domain::TenantId::parse(&t.tenant_id).unwrap();
    let owner = app.store.members(&id).await.unwrap().remove(0);
    let live = app
        .store
        .start_session(
            &id,
            &owner.id,
            "prune@example.com",
            onboard::workspace::sessions::LoginMethod::Password,
            day,
        )
        .await
        .unwrap();
    app.store
        .start_session(
            &id,
            &owner.id,
            "prune@example.com",
            onboard::workspace::sessions::LoginMethod::Password,
            -2 * day,
        )
        .await
        .unwrap();
    assert!(app.store.prune_sessions(now - day).await.unwrap() >= 1);
    let token = secrecy::ExposeSecret::expose_secret(&live.token).to_string();
    assert!(
        app.store.session(&token).await.unwrap().is_some(),
        "a live session survives pruning"
    );
}

/// A sign-in from `client` (the test server trusts 127.0.0.1 as a proxy).
async fn login_from(app: &TestApp, client: &str, email: &str, password: &str) -> Response {
    app.client
        .post(app.url("/login"))
        .header("x-forwarded-for", client)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn concurrent_wrong_guesses_cannot_slip_past_the_lock(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("guessed@example.com", "starter").await;
    let guesses: Vec<_> = (0..50)
        .map(|i| {
            let (app, email) = (&app, t.email.clone());
            async move {
                login_json(app, &email, &format!("WrongGuess{i:03}!"))
                    .await
                    .status()
                    .as_u16()
            }
        })
        .collect();
    let statuses = futures_util::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        checked <= 5,
        "at most five guesses checked a password: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    // The lock holds against the right password.
    let right = login_json(&app, &t.email, &t.password).await;
    assert!(right.headers().get(SET_COOKIE).is_none());
    assert_error(right, 429, "login_locked").await;
}

async fn a_stranger_cannot_lock_the_owner_out_from_another_address(backend: Backend) {
    let app = crate::helpers::spawn_app_with(backend, &[("TRUSTED_PROXIES", "127.0.0.1")]).await;
    let t = app.active_tenant("owner@example.com", "starter").await;
    for _ in 0..5 {
        login_from(&app, "203.0.113.66", &t.email, "WrongPass123!").await;
    }
    let stranger = login_from(&app, "203.0.113.66", &t.email, &t.password).await;
    assert_error(stranger, 429, "login_locked").await;
    // The owner, elsewhere, signs in.
    let owner = login_from(&app, "198.51.100.7", &t.email, &t.password).await;
    assert_eq!(owner.status(), 200);
    // An IPv6 attacker hopping addresses inside its /64 is one client.
    for i in 1..=5 {
        login_from(
            &app,
            &format!("2001:db8:7:7::{i}"),
            &t.email,
            "WrongPass123!",
        )
        .await;
    }
    let hopped = login_from(&app, "2001:db8:7:7::99", &t.email, &t.password).await;
    assert_error(hopped, 429, "login_locked").await;
}

async fn one_address_is_limited_across_all_emails(backend: Backend) {
    let app = crate::helpers::spawn_app_with(
        backend,
        &[
            ("TRUSTED_PROXIES", "127.0.0.1"),
            ("LOGIN_FAILURES_PER_IP", "4"),
        ],
    )
    .await;
    for i in 0..4 {
        let resp = login_from(
            &app,
            "192.0.2.50",
            &format!("spray-{i}@example.com"),
            "Spring2026!",
        )
        .await;
        assert_eq!(resp.status(), 401, "attempt {i}");
    }
    let resp = login_from(&app, "192.0.2.50", "spray-9@example.com", "Spring2026!").await;
    assert!(resp.headers().get(RETRY_AFTER).is_some());
    let err = assert_error(resp, 429, "rate_limited").await;
    assert!(
        err["message"].as_str().unwrap().contains("network"),
        "{err}"
    );
    // Another address is not affected.
    let resp = login_from(&app, "192.0.2.51", "spray-9@example.com", "Spring2026!").await;
    assert_eq!(resp.status(), 401);
}

/// The reset link of the newest password-reset email to `tenant_id`, from the outbox.
async fn reset_link(app: &TestApp, tenant_id: &str, after: usize) -> String {
    let text = eventually("the reset email", 30, || async {
        let emails: Vec<_> = app.emails(Some(tenant_id), "password_reset").await;
        (emails.len() > after).then(|| emails[0].text_body.clone())
    })
    .await;
    text.split_whitespace()
        .find(|w| w.contains("/login/reset?token="))
        .expect("the reset link in the email")
        .to_string()
}

pub async fn forgot(app: &TestApp, email: &str) -> Response {
    app.client
        .post(app.url("/login/forgot"))
        .form(&[("email", email)])
        .send()
        .await
        .unwrap()
}

async fn a_password_reset_link_sets_a_new_password_once_and_ends_other_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("forgetful@example.com", "starter").await;
    let other_session = signed_in(&app, &t).await;
    let page = forgot(&app, &t.email).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("If an account exists"));
    let link = reset_link(&app, &t.tenant_id, 0).await;
    assert!(link.starts_with(&app.url("/login/reset?token=")), "{link}");
    // Opening the link changes nothing (a scanner may); it shows the form.
    for _ in 0..2 {
        let form = app.client.get(&link).send().await.unwrap();
        assert_eq!(form.status(), 200);
        assert_eq!(form.headers()[CACHE_CONTROL], "no-store");
        assert!(form.text().await.unwrap().contains("name=\"password\""));
    }
    let token = link.split("token=").nth(1).unwrap();
    let post = |password: &'static str| {
        let app = &app;
        let token = token.to_string();
        async move {
            app.client
                .post(app.url("/login/reset"))
                .form(&[("token", token.as_str()), ("password", password)])
                .send()
                .await
                .unwrap()
        }
    };
    // A password that is too short: the form again, the link still usable.
    let short = post("short").await;
    assert_eq!(short.status(), 400);
    assert!(short.text().await.unwrap().contains("8"));
    let done = post("BrandNewPass456!").await;
    assert_eq!(done.status(), 303);
    assert_eq!(done.headers()[LOCATION], "/account");
    let new_cookie = cookie_pair(&set_cookie(&done));
    // Used once only.
    assert_eq!(post("AnotherPass789!").await.status(), 410);
    // The other session ended; this one works; the new password works, the old does not.
    assert_error(
        get_with_cookie(&app, "/session", &other_session).await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(
        get_with_cookie(&app, "/session", &new_cookie)
            .await
            .status(),
        200
    );
    assert_eq!(
        login_json(&app, &t.email, "BrandNewPass456!")
            .await
            .status(),
        200
    );
    assert_error(
        login_json(&app, &t.email, &t.password).await,
        401,
        "invalid_credentials",
    )
    .await;
    // A forged token is refused as JSON too.
    let resp = app
        .post_json(
            "/login/reset",
            &json!({"token": "A".repeat(43), "password": "BrandNewPass456!"}),
        )
        .await;
    assert_error(resp, 400, "invalid_token").await;
}

async fn forgot_password_never_says_whether_an_account_exists(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("exists@example.com", "starter").await;
    let known = app
        .post_json("/login/forgot", &json!({"email": t.email}))
        .await;
    let unknown = app
        .post_json(
            "/login/forgot",
            &json!({"email": "nobody-here@example.com"}),
        )
        .await;
    assert_eq!(known.status(), 202);
    assert_eq!(unknown.status(), 202);
    assert_eq!(known.text().await.unwrap(), unknown.text().await.unwrap());
    reset_link(&app, &t.tenant_id, 0).await;
    let bad = app
        .post_json("/login/forgot", &json!({"email": "not-an-email"}))
        .await;
    let err = assert_error(bad, 400, "invalid_email").await;
    assert_eq!(err["field"], "email");
    // A mailbox is not flooded: past three an hour nothing more is sent, and the answer is the same.
    for _ in 0..4 {
        assert_eq!(
            app.post_json("/login/forgot", &json!({"email": t.email}))
                .await
                .status(),
            202
        );
    }
    let sent = app.emails(Some(&t.tenant_id), "password_reset").await.len();
    assert_eq!(sent, 3);
}

async fn concurrent_clicks_on_a_magic_link_start_one_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app
        .active_tenant("double-click@example.com", "starter")
        .await;
    let link = welcome_link(&app, &t.tenant_id).await;
    let clicks: Vec<_> = (0..8)
        .map(|_| {
            let (app, link) = (&app, link.clone());
            async move { confirm_magic_link(app, &link).await.status().as_u16() }
        })
        .collect();
    let statuses = futures_util::future::join_all(clicks).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 303).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 303 || *s == 410),
        "{statuses:?}"
    );
    let sessions: i64 = onboard::with_pool!(&app.store, |pool| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions WHERE tenant_id = $1 AND method = 'magic_link'",
        )
        .bind(&t.tenant_id)
        .fetch_one(pool)
        .await
        .unwrap()
    });
    assert_eq!(sessions, 1);
}

async fn a_full_hashing_queue_answers_503_at_once(backend: Backend) {
    // Two places: sign-ins may take one.
    let app = crate::helpers::spawn_app_with(
        backend,
        &[("HASH_QUEUE_MAX", "2"), ("TRUSTED_PROXIES", "127.0.0.1")],
    )
    .await;
    let attempts: Vec<_> = (0..12)
        .map(|i| {
            let app = &app;
            async move {
                let resp = login_from(
                    app,
                    &format!("198.18.0.{}", i + 1),
                    &format!("flood-{i}@example.com"),
                    "WrongPass123!",
                )
                .await;
                let retry = resp.headers().get(RETRY_AFTER).is_some();
                (resp.status().as_u16(), retry)
            }
        })
        .collect();
    let answers = futures_util::future::join_all(attempts).await;
    let busy = answers.iter().filter(|(s, _)| *s == 503).count();
    assert!(busy >= 1, "some sign-ins found the queue full: {answers:?}");
    assert!(
        answers.iter().all(|(s, r)| *s == 401 || (*s == 503 && *r)),
        "{answers:?}"
    );
    // Signups still get their half of the queue.
    app.signup("still-open@example.com", "starter").await;
}

/// Asks for a sign-in link as the sign-in page's form does.
pub async fn ask_sign_in_link(app: &TestApp, email: &str) -> Response {
    app.client
        .post(app.url("/login/link"))
        .form(&[("email", email)])
        .send()
        .await
        .unwrap()
}

/// The sign-in emails sent to `to`, newest first, from the outbox.
async fn sign_in_emails(app: &TestApp, to: &str) -> Vec<onboard::email::StoredEmail> {
    app.store
        .list_emails(None, 200)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "sign_in_link" && e.to_email == to)
        .collect()
}

/// The link of the newest sign-in email to `to`, once more than `after` were sent.
async fn emailed_sign_in_link(app: &TestApp, to: &str, after: usize) -> String {
    let text = eventually("the sign-in link email", 30, || async {
        let emails = sign_in_emails(app, to).await;
        (emails.len() > after).then(|| emails[0].text_body.clone())
    })
    .await;
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/login/magic?token="))
        .expect("the sign-in link in the email")
        .to_string();
    assert!(link.starts_with(&app.url("/login/magic?token=")), "{link}");
    link
}

/// Every sign-in link email in the outbox, whoever it went to.
async fn all_sign_in_emails(app: &TestApp) -> usize {
    app.emails(None, "sign_in_link").await.len()
}

async fn an_emailed_sign_in_link_signs_in_exactly_once_as_the_user_who_asked(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("link-owner@example.com", "starter").await;
    let resp = app
        .post_json("/login/link", &json!({"email": t.email}))
        .await;
    assert_eq!(resp.status(), 202);
    assert!(resp.headers().get(SET_COOKIE).is_none());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "sent");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("expires in 15 minutes"),
        "{body}"
    );
    let link = emailed_sign_in_link(&app, &t.email, 0).await;
    // A login token like the welcome email's, for fifteen minutes.
    let token = link.split("token=").nth(1).unwrap();
    let (purpose, ttl): (String, i64) = onboard::with_pool!(&app.store, |pool| {
        sqlx::query_as(
            "SELECT purpose, expires_at - created_at FROM login_tokens WHERE token_hash = $1",
        )
        .bind(onboard::workspace::sessions::token_hash(token))
        .fetch_one(pool)
        .await
        .unwrap()
    });
    assert_eq!((purpose.as_str(), ttl), ("magic_login", 15 * 60_000));

    // Redeemed by the welcome link's flow: a page that uses nothing, then its button (which
    // goes wherever a sign-in lands).
    let resp = follow_magic_link(&app, &link).await;
    assert_eq!(resp.status(), 303);
    assert!(resp.headers().get(LOCATION).is_some());
    let cookie = cookie_pair(&set_cookie(&resp));
    let s: Value = get_with_cookie(&app, "/session", &cookie)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["tenant_id"], t.tenant_id.as_str());
    assert_eq!(s["email"], t.email.as_str());
    let again = confirm_magic_link(&app, &link).await;
    assert_eq!(again.status(), 410);
    assert!(again.headers().get(SET_COOKIE).is_none());

    // A teammate who asks (from the form, the address typed in another case) is signed in as
    // themselves, not as the tenant's owner.
    let member = "link-member@example.com";
    crate::teams::invite_ok(&app, &t.api_key, member, "member").await;
    let invite = crate::teams::invitation_link(&app, &t.tenant_id, member, 0).await;
    let joined = app
        .post_json(
            "/invitations/accept",
            &json!({
                "token": invite.split("token=").nth(1).unwrap(),
                "name": "Link Member",
                "password": "JoinPass456!",
            }),
        )
        .await;
    assert_eq!(joined.status(), 201);
    let member_id = joined.json::<Value>().await.unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    let page = ask_sign_in_link(&app, "Link-Member@Example.com").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()[CACHE_CONTROL], "no-store");
    let html = page.text().await.unwrap();
    assert!(html.contains("Check your inbox"), "{html}");
    assert!(html.contains("If an account exists"), "{html}");
    let link = emailed_sign_in_link(&app, member, 0).await;
    let resp = follow_magic_link(&app, &link).await;
    assert_eq!(resp.status(), 303);
    let cookie = cookie_pair(&set_cookie(&resp));
    let s: Value = get_with_cookie(&app, "/session", &cookie)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["user_id"], member_id.as_str());
    assert_eq!(s["email"], member);
    assert_eq!(s["role"], "member");
    // The owner was sent nothing more.
    assert_eq!(sign_in_emails(&app, &t.email).await.len(), 1);
}

async fn sign_in_link_requests_never_say_whether_an_account_exists(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app
        .active_tenant("link-exists@example.com", "starter")
        .await;
    // Signed up, not paid: it may not sign in, so it is sent nothing either.
    app.signup("link-pending@example.com", "starter").await;
    let ask = |email: &'static str| {
        let app = &app;
        async move { app.post_json("/login/link", &json!({"email": email})).await }
    };
    let known = app
        .post_json("/login/link", &json!({"email": t.email}))
        .await;
    let unknown = ask("nobody-here@example.com").await;
    let pending = ask("link-pending@example.com").await;
    assert_eq!(known.status(), 202);
    assert_eq!(unknown.status(), 202);
    assert_eq!(pending.status(), 202);
    let answer = known.bytes().await.unwrap();
    assert_eq!(answer, unknown.bytes().await.unwrap());
    assert_eq!(answer, pending.bytes().await.unwrap());
    // The form's page too.
    let known = ask_sign_in_link(&app, &t.email).await;
    let unknown = ask_sign_in_link(&app, "nobody-here@example.com").await;
    assert_eq!(known.status(), 200);
    assert_eq!(unknown.status(), 200);
    assert_eq!(known.bytes().await.unwrap(), unknown.bytes().await.unwrap());
    // Emails are queued with the answer: the known address has its two, nobody else any.
    emailed_sign_in_link(&app, &t.email, 1).await;
    assert_eq!(all_sign_in_emails(&app).await, 2);
    // A mailbox is not flooded: past three an hour nothing more is sent, and the answer is the same.
    for _ in 0..2 {
        let resp = app
            .post_json("/login/link", &json!({"email": t.email}))
            .await;
        assert_eq!(resp.status(), 202);
        assert_eq!(resp.bytes().await.unwrap(), answer);
    }
    assert_eq!(sign_in_emails(&app, &t.email).await.len(), 3);
    assert_eq!(all_sign_in_emails(&app).await, 3);
}

async fn sign_in_link_requests_with_a_bad_email_get_400_naming_it(backend: Backend) {
    let app = spawn_app(backend).await;
    for (body, code) in [
        (json!({}), "invalid_email"),
        (json!({"email": ""}), "invalid_email"),
        (json!({"email": "   "}), "invalid_email"),
        (json!({"email": "not-an-email"}), "invalid_email"),
        (json!({"email": 5}), "invalid_field"),
    ] {
        let resp = app.post_json("/login/link", &body).await;
        let err = assert_error(resp, 400, code).await;
        assert_eq!(err["field"], "email", "{body}");
    }
    // The form comes back with the error and what was typed.
    let resp = ask_sign_in_link(&app, "not-an-email").await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()[CACHE_CONTROL], "no-store");
    let html = resp.text().await.unwrap();
    assert!(html.contains("action=\"/login/link\""), "{html}");
    assert!(html.contains("name=\"email\""), "{html}");
    assert!(html.contains("value=\"not-an-email\""), "{html}");
    assert!(html.contains("role=\"alert\""), "{html}");
    assert!(html.contains("exactly one"), "{html}");
    let resp = app
        .client
        .post(app.url("/login/link"))
        .form(&[("other", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("email is required"));
    let resp = app
        .client
        .post(app.url("/login/link"))
        .header("content-type", "text/plain")
        .body("email=a@example.com")
        .send()
        .await
        .unwrap();
    assert_error(resp, 415, "unsupported_media_type").await;
    assert_eq!(all_sign_in_emails(&app).await, 0);
}

/// A sign-in link request from `client` (the test server trusts 127.0.0.1 as a proxy).
async fn ask_sign_in_link_from(app: &TestApp, client: &str, email: &str) -> Response {
    app.client
        .post(app.url("/login/link"))
        .header("x-forwarded-for", client)
        .json(&json!({"email": email}))
        .send()
        .await
        .unwrap()
}

async fn sign_in_link_requests_are_rate_limited_per_client_address(backend: Backend) {
    let app = crate::helpers::spawn_app_with(backend, &[("TRUSTED_PROXIES", "127.0.0.1")]).await;
    for i in 0..20 {
        let resp =
            ask_sign_in_link_from(&app, "192.0.2.70", &format!("link-spray-{i}@example.com")).await;
        assert_eq!(resp.status(), 202, "request {i}");
    }
    let resp = ask_sign_in_link_from(&app, "192.0.2.70", "link-spray-x@example.com").await;
    let retry: u64 = resp.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    let err = assert_error(resp, 429, "rate_limited").await;
    assert!(
        err["message"].as_str().unwrap().contains("sign-in link"),
        "{err}"
    );
    // The form is shown again with the reason and the same Retry-After.
    let resp = app
        .client
        .post(app.url("/login/link"))
        .header("x-forwarded-for", "192.0.2.70")
        .form(&[("email", "link-spray-x@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get(RETRY_AFTER).is_some());
    let html = resp.text().await.unwrap();
    assert!(html.contains("action=\"/login/link\""), "{html}");
    assert!(html.contains("too many sign-in link requests"), "{html}");
    // Another address is not affected, nor is "forgot password" from this one (counted apart).
    let resp = ask_sign_in_link_from(&app, "192.0.2.71", "link-spray-x@example.com").await;
    assert_eq!(resp.status(), 202);
    let resp = app
        .client
        .post(app.url("/login/forgot"))
        .header("x-forwarded-for", "192.0.2.70")
        .json(&json!({"email": "link-spray-x@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
}

async fn cross_site_sign_in_link_requests_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("link-csrf@example.com", "starter").await;
    let resp = app
        .client
        .post(app.url("/login/link"))
        .header("origin", "https://evil.example")
        .form(&[("email", t.email.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().contains("another website"));
    let resp = app
        .client
        .post(app.url("/login/link"))
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"email": t.email}))
        .send()
        .await
        .unwrap();
    assert_error(resp, 403, "cross_site_request").await;
    assert_eq!(all_sign_in_emails(&app).await, 0);
    // The real page's own form is accepted.
    let resp = app
        .client
        .post(app.url("/login/link"))
        .header("origin", app.url(""))
        .header("sec-fetch-site", "same-origin")
        .form(&[("email", t.email.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    emailed_sign_in_link(&app, &t.email, 0).await;
}
