//! Teams: invitations through HTTP with the email read from the outbox, seats per plan, the role
//! × action matrix, dead invitation links, removal, tenant isolation, and the migration that
//! moved sign-in from the tenant to its users.

use onboard::domain::TenantId;
use reqwest::Method;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::helpers::{
    ActiveTenant, Backend, TEST_PASSWORD, TestApp, TestDb, assert_error, eventually, spawn_app,
    spawn_app_with,
};
use crate::store_tests;

store_tests!(
    an_invited_member_joins_through_the_emailed_link_and_signs_in,
    members_plus_pending_invitations_stay_within_each_plans_seats,
    every_action_checks_the_role,
    expired_reused_revoked_or_forged_invitation_links_are_refused,
    a_resent_invitation_replaces_its_link,
    removing_a_member_ends_their_sessions_and_the_last_owner_stays,
    another_tenants_members_and_invitations_are_not_found,
    one_email_is_one_user_across_tenants,
    the_members_page_invites_and_manages_without_javascript,
    migration_0017_moves_sign_in_from_the_tenant_to_its_owner,
    a_members_keys_never_outrank_them,
);

const ADMIN: &str = "teams-admin-token-0123456789";
const MEMBER_PASSWORD: &str = "JoinPass456!";

fn cookie_of(resp: &reqwest::Response) -> String {
    let set = resp
        .headers()
        .get(SET_COOKIE)
        .expect("a Set-Cookie header")
        .to_str()
        .unwrap();
    set.split(';').next().unwrap().trim().to_string()
}

async fn invite(app: &TestApp, key: &str, email: &str, role: &str) -> reqwest::Response {
    app.authed(Method::POST, "/v1/members/invitations", key)
        .json(&json!({"email": email, "role": role}))
        .send()
        .await
        .unwrap()
}

pub(crate) async fn invite_ok(app: &TestApp, key: &str, email: &str, role: &str) -> Value {
    let resp = invite(app, key, email, role).await;
    assert_eq!(resp.status(), 201, "invite {email}");
    resp.json().await.unwrap()
}

/// The accept link of the newest invitation email to `to`, from the outbox.
pub(crate) async fn invitation_link(
    app: &TestApp,
    tenant_id: &str,
    to: &str,
    nth: usize,
) -> String {
    let text = eventually("the invitation email", 30, || async {
        let mails: Vec<_> = app
            .store
            .list_emails(Some(tenant_id), 50)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "invitation" && e.to_email == to)
            .collect();
        (mails.len() > nth).then(|| mails[0].text_body.clone())
    })
    .await;
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/invitations/accept?token="))
        .expect("the accept link in the invitation email")
        .to_string();
    assert!(
        link.starts_with(&app.url("/invitations/accept?token=")),
        "{link}"
    );
    link
}

fn token_of(link: &str) -> String {
    link.split("token=").nth(1).unwrap().to_string()
}

async fn accept(app: &TestApp, token: &str, name: &str) -> reqwest::Response {
    app.post_json(
        "/invitations/accept",
        &json!({"token": token, "name": name, "password": MEMBER_PASSWORD}),
    )
    .await
}

/// Invites `email` as `role` with `key`, accepts through the emailed link, and returns the new
/// user's id and session cookie.
async fn join(app: &TestApp, t: &ActiveTenant, email: &str, role: &str) -> (String, String) {
    invite_ok(app, &t.api_key, email, role).await;
    let link = invitation_link(app, &t.tenant_id, email, 0).await;
    let resp = accept(app, &token_of(&link), "New Person").await;
    assert_eq!(resp.status(), 201, "accept {email}");
    let cookie = cookie_of(&resp);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["role"], role);
    (body["user_id"].as_str().unwrap().to_string(), cookie)
}

async fn owner_cookie(app: &TestApp, t: &ActiveTenant) -> String {
    let resp = app
        .post_json("/login", &json!({"email": t.email, "password": t.password}))
        .await;
    assert_eq!(resp.status(), 200);
    cookie_of(&resp)
}

async fn with_cookie(app: &TestApp, method: Method, path: &str, cookie: &str) -> reqwest::Response {
    app.client
        .request(method, app.url(path))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap()
}

async fn form_with_cookie(
    app: &TestApp,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header(COOKIE, cookie)
        .form(form)
        .send()
        .await
        .unwrap()
}

async fn members(app: &TestApp, key: &str) -> Value {
    let resp = app.call(Method::GET, "/v1/members", key).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn audit_actions(app: &TestApp, tenant: &str) -> Vec<String> {
    let entries = app
        .store
        .audit_page(&onboard::store::AuditFilter::default(), 500)
        .await
        .unwrap();
    entries
        .into_iter()
        .filter(|e| e.detail.contains(tenant) || e.target.as_deref() == Some(tenant))
        .map(|e| e.action)
        .collect()
}

async fn an_invited_member_joins_through_the_emailed_link_and_signs_in(backend: Backend) {
    let app = spawn_app_with(backend, &[("ADMIN_TOKEN", ADMIN)]).await;
    let t = app.active_tenant("owner-a@example.com", "starter").await;
    // The owner activates first, so the teammate counts in the optional step after activation.
    app.upload(&t.api_key, "Handbook", "Our refund policy is thirty days.")
        .await;
    app.query_ok(&t.api_key, "refund policy", 3).await;

    let inv = invite_ok(&app, &t.api_key, "Bob.Smith@Example.com", "admin").await;
    assert_eq!(inv["state"], "pending");
    assert_eq!(inv["role"], "admin");
    assert!(inv["id"].as_str().unwrap().starts_with("inv_"));
    let week = inv["expires_at"].as_i64().unwrap() - inv["sent_at"].as_i64().unwrap();
    assert_eq!(week, 7 * 86_400_000, "the link works for seven days");
    let listed = members(&app, &t.api_key).await;
    assert_eq!(listed["members"].as_array().unwrap().len(), 1);
    assert_eq!(listed["invitations"][0]["email"], "Bob.Smith@Example.com");
    assert_eq!(listed["seats"], json!({"used": 2, "limit": 3}));

    let link = invitation_link(&app, &t.tenant_id, "Bob.Smith@Example.com", 0).await;
    let page = app.get(link.trim_start_matches(&app.url(""))).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Join Acme") || html.contains("Join "),
        "{html}"
    );
    assert!(html.contains("Bob.Smith@Example.com"), "{html}");

    let resp = accept(&app, &token_of(&link), "Bob Smith").await;
    assert_eq!(resp.status(), 201);
    let cookie = cookie_of(&resp);
    let joined: Value = resp.json().await.unwrap();
    assert_eq!(joined["tenant_id"], t.tenant_id.as_str());
    let session: Value = with_cookie(&app, Method::GET, "/session", &cookie)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(session["role"], "admin");
    assert_eq!(session["email"], "Bob.Smith@Example.com");
    assert_eq!(session["user_id"], joined["user_id"]);

    // Bob signs in again later with his own password (any case of his email).
    let login = app
        .post_json(
            "/login",
            &json!({"email": "bob.smith@example.com", "password": MEMBER_PASSWORD}),
        )
        .await;
    assert_eq!(login.status(), 200);
    // The owner's password still signs the owner in, as the owner.
    let owner = owner_cookie(&app, &t).await;
    let me: Value = with_cookie(&app, Method::GET, "/session", &owner)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "owner");

    let listed = members(&app, &t.api_key).await;
    let names: Vec<&str> = listed["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["", "Bob Smith"]);
    assert!(listed["invitations"].as_array().unwrap().is_empty());
    assert_eq!(listed["seats"]["used"], 2);

    // Activation: member_joined once, and the optional step after activation counts it.
    let id = TenantId::parse(&t.tenant_id).unwrap();
    let milestones = app.store.milestones(&id).await.unwrap();
    assert_eq!(
        milestones
            .iter()
            .filter(|m| m.milestone == "member_joined")
            .count(),
        1
    );
    let metrics: Value = app
        .client
        .get(app.url("/activation/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let step = &metrics["metrics"]["after_activation"][0];
    assert_eq!(step["step"], "invited_teammate");
    assert_eq!(step["tenants"], 1);
    assert_eq!(step["conversion"], 100.0);

    let actions = audit_actions(&app, &t.tenant_id).await;
    for want in ["member.invited", "member.joined"] {
        assert!(actions.iter().any(|a| a == want), "{want} in {actions:?}");
    }
}

async fn members_plus_pending_invitations_stay_within_each_plans_seats(backend: Backend) {
    let app = spawn_app(backend).await;
    // Starter: 3 users. The owner plus two invitations fill it.
    let s = app.active_tenant("seats-s@example.com", "starter").await;
    invite_ok(&app, &s.api_key, "s1@example.com", "member").await;
    let second = invite_ok(&app, &s.api_key, "s2@example.com", "member").await;
    let full = invite(&app, &s.api_key, "s3@example.com", "member").await;
    let body = assert_error(full, 402, "seat_limit_reached").await;
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("starter plan allows 3 users"), "{message}");
    assert!(message.contains("upgrade to the pro plan"), "{message}");
    // Revoking a pending invitation frees its seat.
    let id = second["id"].as_str().unwrap();
    let revoked = app
        .call(
            Method::DELETE,
            &format!("/v1/members/invitations/{id}"),
            &s.api_key,
        )
        .await;
    assert_eq!(revoked.status(), 204);
    invite_ok(&app, &s.api_key, "s3@example.com", "member").await;

    // Pro: 10 users; the refusal names enterprise.
    let p = app.active_tenant("seats-p@example.com", "pro").await;
    for n in 1..=9 {
        invite_ok(&app, &p.api_key, &format!("p{n}@example.com"), "member").await;
    }
    let full = invite(&app, &p.api_key, "p10@example.com", "member").await;
    let body = assert_error(full, 402, "seat_limit_reached").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("upgrade to the enterprise plan"),
        "{body}"
    );

    // A downgrade that leaves the tenant over the limit blocks new invitations, removes no one.
    let pid = TenantId::parse(&p.tenant_id).unwrap();
    onboard::with_pool!(&app.store, |pool| {
        sqlx::query("UPDATE tenants SET plan = 'starter' WHERE id = $1")
            .bind(pid.as_str())
            .execute(pool)
            .await
            .unwrap();
    });
    let blocked = invite(&app, &p.api_key, "p11@example.com", "member").await;
    let body = assert_error(blocked, 402, "seat_limit_reached").await;
    assert!(
        body["message"].as_str().unwrap().contains("starter plan"),
        "{body}"
    );
    let listed = members(&app, &p.api_key).await;
    assert_eq!(
        listed["invitations"].as_array().unwrap().len(),
        9,
        "no one removed"
    );
    // An invitation sent before the downgrade can still be accepted.
    let link = invitation_link(&app, &p.tenant_id, "p1@example.com", 0).await;
    assert_eq!(accept(&app, &token_of(&link), "P One").await.status(), 201);
}

/// Creates a key with `role` using the owner's key; its secret.
async fn key_with_role(app: &TestApp, owner_key: &str, role: &str) -> String {
    let resp = app
        .authed(Method::POST, "/v1/api-keys", owner_key)
        .json(&json!({"name": format!("{role} key"), "role": role}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["role"], role);
    body["api_key"].as_str().unwrap().to_string()
}

async fn every_action_checks_the_role(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("matrix@example.com", "pro").await;
    let (admin_id, admin_cookie) = join(&app, &t, "m-admin@example.com", "admin").await;
    let (member_id, member_cookie) = join(&app, &t, "m-member@example.com", "member").await;
    let owner_cookie = owner_cookie(&app, &t).await;
    let keys = [
        ("owner", t.api_key.clone()),
        ("admin", key_with_role(&app, &t.api_key, "admin").await),
        ("member", key_with_role(&app, &t.api_key, "member").await),
    ];

    // The API, by key role: (method, path, body, [owner, admin, member] expected statuses).
    let doc = app.upload(&t.api_key, "Doc", "Some text to find.").await;
    let doc_id = doc["id"].as_str().unwrap().to_string();
    let matrix: Vec<(Method, String, Option<Value>, [u16; 3])> = vec![
        (Method::GET, "/v1/documents".into(), None, [200, 200, 200]),
        (
            Method::POST,
            "/v1/documents".into(),
            Some(json!({"title": "T", "content": "text"})),
            [201, 201, 201],
        ),
        (
            Method::POST,
            "/v1/query".into(),
            Some(json!({"query": "text", "top_k": 1})),
            [200, 200, 200],
        ),
        (
            Method::GET,
            format!("/v1/documents/{doc_id}"),
            None,
            [200, 200, 200],
        ),
        (Method::GET, "/v1/usage".into(), None, [200, 200, 200]),
        (Method::GET, "/v1/members".into(), None, [200, 200, 200]),
        (Method::GET, "/v1/api-keys".into(), None, [200, 200, 403]),
        (
            Method::POST,
            "/v1/api-keys".into(),
            Some(json!({"name": "k", "role": "member"})),
            [201, 201, 403],
        ),
        (
            Method::POST,
            "/v1/api-keys".into(),
            Some(json!({"name": "k", "role": "owner"})),
            [201, 403, 403],
        ),
        (
            Method::POST,
            "/v1/members/invitations".into(),
            Some(json!({"email": "x@example.com"})),
            [201, 409, 403],
        ),
        (
            Method::PATCH,
            format!("/v1/members/{member_id}"),
            Some(json!({"role": "member"})),
            [200, 200, 403],
        ),
        (
            Method::PATCH,
            format!("/v1/members/{admin_id}"),
            Some(json!({"role": "owner"})),
            [200, 403, 403],
        ),
    ];
    for (method, path, body, expected) in &matrix {
        for ((role, key), want) in keys.iter().zip(expected) {
            let mut req = app.authed(method.clone(), path, key);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            assert_eq!(status, *want, "{role} {method} {path}: {text}");
            if status == 403 {
                assert!(
                    text.contains("forbidden_role"),
                    "{role} {method} {path}: {text}"
                );
            }
        }
        // The owner's promotion of the admin is undone so each row starts alike.
        if path.ends_with(&admin_id) {
            let back = app
                .authed(Method::PATCH, path, &t.api_key)
                .json(&json!({"role": "admin"}))
                .send()
                .await
                .unwrap();
            assert_eq!(back.status(), 200);
        }
    }

    // The signed-in pages and account actions, by the user's role.
    let cookies = [
        ("owner", owner_cookie.as_str()),
        ("admin", admin_cookie.as_str()),
        ("member", member_cookie.as_str()),
    ];
    let session_matrix: [(&str, &str, [u16; 3]); 4] = [
        ("GET", "/app/members", [200, 200, 200]),
        ("POST", "/account/export", [200, 403, 403]),
        ("POST", "/account/billing-portal", [303, 403, 403]),
        ("DELETE", "/account", [0, 403, 403]),
    ];
    for (method, path, expected) in session_matrix {
        for ((role, cookie), want) in cookies.iter().zip(expected) {
            if want == 0 {
                continue; // the owner closing the account is the account tests' business
            }
            let resp = with_cookie(&app, method.parse().unwrap(), path, cookie).await;
            assert_eq!(resp.status().as_u16(), want, "{role} {method} {path}");
        }
    }
    for ((role, cookie), want) in cookies.iter().zip([303, 303, 403]) {
        let resp = form_with_cookie(
            &app,
            "/account/consent",
            cookie,
            &[("marketing_opt_in", "yes")],
        )
        .await;
        assert_eq!(resp.status().as_u16(), want, "{role} consent");
        let resp = form_with_cookie(
            &app,
            "/app/members/invite",
            cookie,
            &[
                ("email", &format!("page-{role}@example.com")),
                ("role", "member"),
            ],
        )
        .await;
        let want = if *role == "member" { 403 } else { 303 };
        assert_eq!(resp.status().as_u16(), want, "{role} page invite");
    }
}

async fn expired_reused_revoked_or_forged_invitation_links_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("links@example.com", "pro").await;

    // Reused: works once.
    invite_ok(&app, &t.api_key, "once@example.com", "member").await;
    let token = token_of(&invitation_link(&app, &t.tenant_id, "once@example.com", 0).await);
    assert_eq!(accept(&app, &token, "Once").await.status(), 201);
    let again = accept(&app, &token, "Twice").await;
    assert_error(again, 410, "invitation_used").await;
    let page = app.get(&format!("/invitations/accept?token={token}")).await;
    assert_eq!(page.status(), 410);

    // Expired: a week has passed.
    let inv = invite_ok(&app, &t.api_key, "late@example.com", "member").await;
    let token = token_of(&invitation_link(&app, &t.tenant_id, "late@example.com", 0).await);
    onboard::with_pool!(&app.store, |pool| {
        sqlx::query("UPDATE invitations SET expires_at = 1 WHERE id = $1")
            .bind(inv["id"].as_str().unwrap())
            .execute(pool)
            .await
            .unwrap();
    });
    assert_error(
        accept(&app, &token, "Late").await,
        410,
        "invitation_expired",
    )
    .await;
    let listed = members(&app, &t.api_key).await;
    let late = listed["invitations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["email"] == "late@example.com")
        .unwrap()
        .clone();
    assert_eq!(late["state"], "expired");

    // Revoked.
    let inv = invite_ok(&app, &t.api_key, "gone@example.com", "member").await;
    let token = token_of(&invitation_link(&app, &t.tenant_id, "gone@example.com", 0).await);
    let id = inv["id"].as_str().unwrap();
    let del = app
        .call(
            Method::DELETE,
            &format!("/v1/members/invitations/{id}"),
            &t.api_key,
        )
        .await;
    assert_eq!(del.status(), 204);
    assert_error(
        accept(&app, &token, "Gone").await,
        410,
        "invitation_revoked",
    )
    .await;
    let twice = app
        .call(
            Method::DELETE,
            &format!("/v1/members/invitations/{id}"),
            &t.api_key,
        )
        .await;
    assert_error(twice, 409, "invitation_closed").await;

    // Forged, missing, and bad input (the link still works after a refused form).
    let forged = accept(&app, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "X").await;
    assert_error(forged, 400, "invalid_invitation").await;
    let page = app.get("/invitations/accept?token=forged").await;
    assert_eq!(page.status(), 400);
    let missing = app
        .post_json(
            "/invitations/accept",
            &json!({"name": "X", "password": MEMBER_PASSWORD}),
        )
        .await;
    assert_error(missing, 400, "invalid_invitation").await;
    invite_ok(&app, &t.api_key, "input@example.com", "member").await;
    let token = token_of(&invitation_link(&app, &t.tenant_id, "input@example.com", 0).await);
    let short = app
        .post_json(
            "/invitations/accept",
            &json!({"token": token, "name": "In Put", "password": "short"}),
        )
        .await;
    let body = assert_error(short, 400, "invalid_password").await;
    assert_eq!(body["field"], "password");
    let noname = app
        .post_json(
            "/invitations/accept",
            &json!({"token": token, "name": "  ", "password": MEMBER_PASSWORD}),
        )
        .await;
    assert_eq!(
        assert_error(noname, 400, "invalid_name").await["field"],
        "name"
    );
    let form = app
        .client
        .post(app.url("/invitations/accept"))
        .form(&[
            ("token", token.as_str()),
            ("name", "In Put"),
            ("password", "short"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 400);
    assert!(form.text().await.unwrap().contains("role=\"alert\""));
    assert_eq!(accept(&app, &token, "In Put").await.status(), 201);

    // Bad invitations: an unknown role, a malformed email, and owner are refused by name.
    let bad = app
        .authed(Method::POST, "/v1/members/invitations", &t.api_key)
        .json(&json!({"email": "r@example.com", "role": "boss"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        assert_error(bad, 400, "invalid_field").await["field"],
        "role"
    );
    let bad = invite(&app, &t.api_key, "not-an-email", "member").await;
    assert_eq!(
        assert_error(bad, 400, "invalid_email").await["field"],
        "email"
    );
    let bad = invite(&app, &t.api_key, "o@example.com", "owner").await;
    assert_error(bad, 403, "forbidden_role").await;
}

async fn a_resent_invitation_replaces_its_link(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("resend@example.com", "starter").await;
    let inv = invite_ok(&app, &t.api_key, "carol@example.com", "member").await;
    let first = token_of(&invitation_link(&app, &t.tenant_id, "carol@example.com", 0).await);
    let id = inv["id"].as_str().unwrap();
    let resent = app
        .call(
            Method::POST,
            &format!("/v1/members/invitations/{id}/resend"),
            &t.api_key,
        )
        .await;
    assert_eq!(resent.status(), 200);
    let second = token_of(&invitation_link(&app, &t.tenant_id, "carol@example.com", 1).await);
    assert_ne!(first, second);
    assert_error(
        accept(&app, &first, "Carol").await,
        400,
        "invalid_invitation",
    )
    .await;
    assert_eq!(accept(&app, &second, "Carol").await.status(), 201);
    let after = app
        .call(
            Method::POST,
            &format!("/v1/members/invitations/{id}/resend"),
            &t.api_key,
        )
        .await;
    assert_error(after, 409, "invitation_closed").await;
    let actions = audit_actions(&app, &t.tenant_id).await;
    assert!(
        actions.iter().any(|a| a == "member.invitation_resent"),
        "{actions:?}"
    );
}

async fn removing_a_member_ends_their_sessions_and_the_last_owner_stays(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("remover@example.com", "pro").await;
    let (member_id, member_cookie) = join(&app, &t, "leaving@example.com", "member").await;
    assert_eq!(
        with_cookie(&app, Method::GET, "/session", &member_cookie)
            .await
            .status(),
        200
    );
    let del = app
        .call(
            Method::DELETE,
            &format!("/v1/members/{member_id}"),
            &t.api_key,
        )
        .await;
    assert_eq!(del.status(), 204);
    let after = with_cookie(&app, Method::GET, "/session", &member_cookie).await;
    assert_eq!(
        after.status(),
        401,
        "the removed member's session ended at once"
    );
    let login = app
        .post_json(
            "/login",
            &json!({"email": "leaving@example.com", "password": MEMBER_PASSWORD}),
        )
        .await;
    assert_eq!(login.status(), 401, "a removed member cannot sign in");
    let again = app
        .call(
            Method::DELETE,
            &format!("/v1/members/{member_id}"),
            &t.api_key,
        )
        .await;
    assert_error(again, 404, "not_found").await;

    // The last owner can be neither removed nor demoted; with a second owner, they can.
    let owner_id = members(&app, &t.api_key).await["members"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let del = app
        .call(
            Method::DELETE,
            &format!("/v1/members/{owner_id}"),
            &t.api_key,
        )
        .await;
    assert_error(del, 409, "last_owner").await;
    let demote = app
        .authed(
            Method::PATCH,
            &format!("/v1/members/{owner_id}"),
            &t.api_key,
        )
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_error(demote, 409, "last_owner").await;
    let (admin_id, _) = join(&app, &t, "heir@example.com", "admin").await;
    let promote = app
        .authed(
            Method::PATCH,
            &format!("/v1/members/{admin_id}"),
            &t.api_key,
        )
        .json(&json!({"role": "owner"}))
        .send()
        .await
        .unwrap();
    assert_eq!(promote.status(), 200);
    let demote = app
        .authed(
            Method::PATCH,
            &format!("/v1/members/{owner_id}"),
            &t.api_key,
        )
        .json(&json!({"role": "member"}))
        .send()
        .await
        .unwrap();
    assert_eq!(demote.status(), 200, "ownership handed over");
    let actions = audit_actions(&app, &t.tenant_id).await;
    for want in ["member.removed", "member.role_changed"] {
        assert!(actions.iter().any(|a| a == want), "{want} in {actions:?}");
    }
}

async fn another_tenants_members_and_invitations_are_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.active_tenant("iso-a@example.com", "pro").await;
    let b = app.active_tenant("iso-b@example.com", "pro").await;
    let inv = invite_ok(&app, &a.api_key, "iso-invitee@example.com", "member").await;
    let (user_id, _) = join(&app, &a, "iso-member@example.com", "member").await;
    let inv_id = inv["id"].as_str().unwrap();
    for (method, path) in [
        (Method::DELETE, format!("/v1/members/{user_id}")),
        (
            Method::POST,
            format!("/v1/members/invitations/{inv_id}/resend"),
        ),
        (Method::DELETE, format!("/v1/members/invitations/{inv_id}")),
    ] {
        let resp = app.call(method.clone(), &path, &b.api_key).await;
        assert_error(resp, 404, "not_found").await;
    }
    let patch = app
        .authed(Method::PATCH, &format!("/v1/members/{user_id}"), &b.api_key)
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_error(patch, 404, "not_found").await;
    let listed = members(&app, &b.api_key).await;
    assert_eq!(listed["members"].as_array().unwrap().len(), 1);
    assert!(listed["invitations"].as_array().unwrap().is_empty());
}

async fn one_email_is_one_user_across_tenants(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.active_tenant("uniq-a@example.com", "pro").await;
    let b = app.active_tenant("uniq-b@example.com", "pro").await;
    join(&app, &a, "shared@example.com", "member").await;
    // Another tenant cannot invite a user of the first, whatever the case.
    let taken = invite(&app, &b.api_key, "SHARED@example.com", "member").await;
    assert_error(taken, 409, "email_taken").await;
    // Nor its owner.
    let owner = invite(&app, &b.api_key, "Uniq-A@example.com", "member").await;
    assert_error(owner, 409, "email_taken").await;
    // The same email twice in one tenant: resend instead.
    invite_ok(&app, &b.api_key, "twice@example.com", "member").await;
    let twice = invite(&app, &b.api_key, "Twice@Example.com", "member").await;
    assert_error(twice, 409, "already_invited").await;
    // A member's email cannot sign up a tenant of its own.
    let signup = app
        .post_json(
            "/signup",
            &json!({"email": "shared@example.com", "password": TEST_PASSWORD, "company_name": "Other", "plan": "starter"}),
        )
        .await;
    assert_error(signup, 409, "email_taken").await;
}

async fn the_members_page_invites_and_manages_without_javascript(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("page-owner@example.com", "pro").await;
    let cookie = owner_cookie(&app, &t).await;
    let page = with_cookie(&app, Method::GET, "/app/members", &cookie).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Invite a teammate"), "{html}");
    assert!(html.contains("page-owner@example.com"));

    let resp = form_with_cookie(
        &app,
        "/app/members/invite",
        &cookie,
        &[("email", "<b>dave</b>@example.com"), ("role", "member")],
    )
    .await;
    assert_eq!(resp.status(), 400, "a malformed email is shown on the page");
    let html = resp.text().await.unwrap();
    assert!(html.contains("role=\"alert\""), "{html}");
    assert!(!html.contains("<b>dave"), "input is never echoed as markup");

    let resp = form_with_cookie(
        &app,
        "/app/members/invite",
        &cookie,
        &[("email", "dave@example.com"), ("role", "admin")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/app/members?done=invited");
    let html = with_cookie(&app, Method::GET, "/app/members?done=invited", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("Invitation sent."), "{html}");
    assert!(html.contains("dave@example.com"), "{html}");
    let inv_id = members(&app, &t.api_key).await["invitations"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (action, done) in [("resend", "resent"), ("revoke", "revoked")] {
        let resp = form_with_cookie(
            &app,
            &format!("/app/members/invitations/{inv_id}/{action}"),
            &cookie,
            &[],
        )
        .await;
        assert_eq!(resp.status(), 303, "{action}");
        assert_eq!(
            resp.headers()[LOCATION],
            format!("/app/members?done={done}")
        );
    }
    let (member_id, member_cookie) = join(&app, &t, "erin@example.com", "member").await;
    let resp = form_with_cookie(
        &app,
        &format!("/app/members/{member_id}/role"),
        &cookie,
        &[("role", "admin")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let session: Value = with_cookie(&app, Method::GET, "/session", &member_cookie)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        session["role"], "admin",
        "a role change applies to live sessions"
    );
    // A member sees the team but no management forms.
    let (_, plain) = join(&app, &t, "frank@example.com", "member").await;
    let html = with_cookie(&app, Method::GET, "/app/members", &plain)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !html.contains("Invite a teammate") && !html.contains("/remove"),
        "{html}"
    );
    // Cross-site posts and posts without a session are refused.
    let cross = app
        .client
        .post(app.url("/app/members/invite"))
        .header(COOKIE, &cookie)
        .header("origin", "https://evil.example")
        .form(&[("email", "x@example.com")])
        .send()
        .await
        .unwrap();
    assert_error(cross, 403, "cross_site_request").await;
    let anon = app
        .client
        .post(app.url("/app/members/invite"))
        .form(&[("email", "x@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 303);
    assert_eq!(anon.headers()[LOCATION], "/login");
    let resp = form_with_cookie(
        &app,
        &format!("/app/members/{member_id}/remove"),
        &cookie,
        &[],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        with_cookie(&app, Method::GET, "/session", &member_cookie)
            .await
            .status(),
        401
    );
}

/// Yesterday's schema (migrations up to 0016) with a tenant, its session, its sign-in link and
/// its key in it; then 0017: the tenant's email and password are its owner's, the session and
/// link are the owner's, the key acts as owner.
async fn migration_0017_moves_sign_in_from_the_tenant_to_its_owner(backend: Backend) {
    let db = TestDb::create(&backend).await;
    let store = onboard::store::Store::connect_unmigrated(&db.url, 2)
        .await
        .unwrap();
    store.migrate_to(16).await.unwrap();
    let tid = "tenant_01JD5Z8W3Q4T6V9X2B7N1K0M3P";
    let hash = onboard::domain::password::hash_bytes(b"OldPass123!");
    let session = "s".repeat(43);
    let session_hash = onboard::workspace::token_hash(&session);
    onboard::with_pool!(&store, |pool| {
        sqlx::query(
            "INSERT INTO tenants (id, email, email_normalized, company_name, password_hash, plan, status, created_at, updated_at) \
             VALUES ($1, 'Old@Example.com', 'old@example.com', 'Old Co', $2, 'starter', 'active', 1000, 1000)",
        )
        .bind(tid)
        .bind(&hash)
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO sessions (id_hash, tenant_id, method, created_at, expires_at) VALUES ($1, $2, 'password', 1000, 99999999999999)",
        )
        .bind(&session_hash)
        .bind(tid)
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO login_tokens (token_hash, tenant_id, purpose, expires_at, created_at) VALUES ('h1', $1, 'magic_login', 99999999999999, 1000)",
        )
        .bind(tid)
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, name, jti_hash, scopes, prefix, created_at) VALUES ('key_1', $1, 'first', 'j1', 'query', 'onb_…', 1000)",
        )
        .bind(tid)
        .execute(pool)
        .await
        .unwrap();
    });
    store.migrate().await.unwrap();

    let id = TenantId::parse(tid).unwrap();
    let people = store.members(&id).await.unwrap();
    assert_eq!(people.len(), 1);
    let owner = &people[0];
    assert_eq!(owner.role, onboard::domain::Role::Owner);
    assert_eq!(owner.email, "Old@Example.com");
    assert_eq!(owner.password_hash, hash, "the password moved unchanged");
    let (found, tenant) = store
        .user_by_email("old@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, owner.id);
    assert_eq!(tenant.company_name, "Old Co");
    let live = store
        .session(&session)
        .await
        .unwrap()
        .expect("the session survives");
    assert_eq!(live.user_id, owner.id);
    assert_eq!(live.role, onboard::domain::Role::Owner);
    let (token_user, key_role): (Option<String>, String) = onboard::with_pool!(&store, |pool| {
        let u = sqlx::query_scalar("SELECT user_id FROM login_tokens WHERE token_hash = 'h1'")
            .fetch_one(pool)
            .await
            .unwrap();
        let r = sqlx::query_scalar("SELECT role FROM api_keys WHERE id = 'key_1'")
            .fetch_one(pool)
            .await
            .unwrap();
        (u, r)
    });
    assert_eq!(token_user.as_deref(), Some(owner.id.as_str()));
    assert_eq!(key_role, "owner");
    store.migrate().await.unwrap();
}

/// Keys a member created: demoting the member revokes those above the new role, removing them
/// revokes the rest, and a revoked key stops working at once.
async fn a_members_keys_never_outrank_them(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("keys-owner@example.com", "pro").await;
    let (user_id, _) = join(&app, &t, "key-maker@example.com", "admin").await;
    let tid = TenantId::parse(&t.tenant_id).unwrap();
    let mut tx = app.store.begin().await.unwrap();
    let mut issue = async |role| {
        let spec = onboard::workspace::api_keys::KeySpec {
            name: "mine",
            scopes: &["query", "keys:manage"],
            ttl_secs: None,
            role,
            created_by: Some(user_id.as_str()),
        };
        tx.issue_api_key_as(&app.state.signer, &tid, &spec, false)
            .await
            .unwrap()
    };
    let admin_key = issue(onboard::domain::Role::Admin).await;
    let member_key = issue(onboard::domain::Role::Member).await;
    tx.commit().await.unwrap();
    let secret = |k: &onboard::workspace::api_keys::IssuedKey| {
        secrecy::ExposeSecret::expose_secret(&k.token).to_string()
    };
    let (admin_secret, member_secret) = (secret(&admin_key), secret(&member_key));
    assert_eq!(
        app.call(Method::GET, "/v1/api-keys", &admin_secret)
            .await
            .status(),
        200
    );

    let demote = app
        .authed(Method::PATCH, &format!("/v1/members/{user_id}"), &t.api_key)
        .json(&json!({"role": "member"}))
        .send()
        .await
        .unwrap();
    assert_eq!(demote.status(), 200);
    assert_error(
        app.call(Method::GET, "/v1/members", &admin_secret).await,
        401,
        "revoked_api_key",
    )
    .await;
    assert_eq!(
        app.call(Method::GET, "/v1/members", &member_secret)
            .await
            .status(),
        200
    );

    let del = app
        .call(
            Method::DELETE,
            &format!("/v1/members/{user_id}"),
            &t.api_key,
        )
        .await;
    assert_eq!(del.status(), 204);
    assert_error(
        app.call(Method::GET, "/v1/members", &member_secret).await,
        401,
        "revoked_api_key",
    )
    .await;
    // The owner's own key is untouched.
    assert_eq!(
        app.call(Method::GET, "/v1/members", &t.api_key)
            .await
            .status(),
        200
    );
}
