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
    every_api_endpoint_checks_the_keys_role,
    every_page_action_checks_the_members_role,
    expired_reused_revoked_or_forged_invitation_links_are_refused,
    a_resent_invitation_replaces_its_link,
    joining_in_a_signed_in_browser_signs_its_old_session_out,
    removing_a_member_ends_their_sessions_and_the_last_owner_stays,
    a_resent_welcome_goes_to_the_owner_it_signs_in,
    another_tenants_members_and_invitations_are_not_found,
    one_email_is_one_user_across_tenants,
    each_person_sets_the_name_their_team_sees,
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

/// A page's form post from another site (with the session's cookie) is 403
/// `cross_site_request`; without a session it is sent to `/login`.
async fn refused_cross_site_and_signed_out(
    app: &TestApp,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) {
    let cross = app
        .client
        .post(app.url(path))
        .header(COOKIE, cookie)
        .header("origin", "https://evil.example")
        .form(form)
        .send()
        .await
        .unwrap();
    assert_error(cross, 403, "cross_site_request").await;
    let anon = app
        .client
        .post(app.url(path))
        .form(form)
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 303, "{path} signed out");
    assert_eq!(anon.headers()[LOCATION], "/login");
}

async fn members(app: &TestApp, key: &str) -> Value {
    let resp = app.call(Method::GET, "/v1/members", key).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// The user id of the tenant's (first listed) owner.
async fn owner_id(app: &TestApp, key: &str) -> String {
    let listed = members(app, key).await;
    let owner = listed["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "owner");
    owner.expect("an owner")["id"].as_str().unwrap().to_string()
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

    // Enterprise: no limit. The same team, upgraded, invites past any other plan's seats.
    onboard::with_pool!(&app.store, |pool| {
        sqlx::query("UPDATE tenants SET plan = 'enterprise' WHERE id = $1")
            .bind(pid.as_str())
            .execute(pool)
            .await
            .unwrap();
    });
    for n in 11..=13 {
        invite_ok(&app, &p.api_key, &format!("p{n}@example.com"), "member").await;
    }
    let seats = &members(&app, &p.api_key).await["seats"];
    assert_eq!(seats["used"], 13, "{seats}");
    assert!(seats["limit"].is_null(), "unlimited: {seats}");
}

/// Creates a key with `role` using the owner's key; its secret and id.
async fn key_with_role(app: &TestApp, owner_key: &str, role: &str) -> (String, String) {
    let resp = app
        .authed(Method::POST, "/v1/api-keys", owner_key)
        .json(&json!({"name": format!("{role} key"), "role": role}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["role"], role);
    (
        body["api_key"].as_str().unwrap().to_string(),
        body["id"].as_str().unwrap().to_string(),
    )
}

/// What a row of the role matrix acts on. Made fresh for each role (or fixed and put back
/// after), so one role's act cannot decide the next one's answer.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Target {
    Nothing,
    /// A document the owner uploaded.
    Document,
    /// A member-role key the owner created.
    MemberKey,
    /// A pending invitation the owner sent.
    Invitation,
    /// A member who joined through an invitation.
    JoinedMember,
    /// The team's admin (promoted rows are demoted back after).
    Admin,
    /// The only owner.
    Owner,
}

/// A tenant on the pro plan with an owner, an admin and a member, and counters for fresh
/// emails.
struct Team {
    app: TestApp,
    t: ActiveTenant,
    admin_id: String,
    owner_id: String,
    member_cookie: String,
    admin_cookie: String,
    owner_cookie: String,
    seq: std::sync::atomic::AtomicUsize,
}

impl Team {
    async fn new(backend: Backend, email: &str) -> Team {
        let app = spawn_app(backend).await;
        let t = app.active_tenant(email, "pro").await;
        let (admin_id, admin_cookie) = join(&app, &t, &format!("admin-{email}"), "admin").await;
        let (_, member_cookie) = join(&app, &t, &format!("member-{email}"), "member").await;
        let owner_cookie = owner_cookie(&app, &t).await;
        let owner_id = owner_id(&app, &t.api_key).await;
        Team {
            app,
            t,
            admin_id,
            owner_id,
            member_cookie,
            admin_cookie,
            owner_cookie,
            seq: Default::default(),
        }
    }

    fn next(&self) -> usize {
        self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// A fresh email, for invitations.
    fn email(&self) -> String {
        format!("matrix-{}@example.com", self.next())
    }

    /// The id a row's `{id}` stands for.
    async fn target(&self, target: Target) -> String {
        let (app, key) = (&self.app, &self.t.api_key);
        match target {
            Target::Nothing => String::new(),
            Target::Document => {
                let doc = app.upload(key, "Matrix", "Some text to find.").await;
                doc["id"].as_str().unwrap().to_string()
            }
            Target::MemberKey => key_with_role(app, key, "member").await.1,
            Target::Invitation => invite_ok(app, key, &self.email(), "member").await["id"]
                .as_str()
                .unwrap()
                .to_string(),
            Target::JoinedMember => join(app, &self.t, &self.email(), "member").await.0,
            Target::Admin => self.admin_id.clone(),
            Target::Owner => self.owner_id.clone(),
        }
    }

    /// Puts the team back as it was before a row's act: pending invitations revoked, joined
    /// members removed, the admin an admin again. Seats stay free for the next row.
    async fn restore(&self, target: Target, id: &str) {
        let (app, key) = (&self.app, &self.t.api_key);
        match target {
            Target::JoinedMember => {
                let resp = app
                    .call(Method::DELETE, &format!("/v1/members/{id}"), key)
                    .await;
                assert!(matches!(resp.status().as_u16(), 204 | 404));
            }
            Target::Admin => {
                let resp = app
                    .authed(Method::PATCH, &format!("/v1/members/{id}"), key)
                    .json(&json!({"role": "admin"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
            }
            _ => {}
        }
        let listed = members(app, key).await;
        for inv in listed["invitations"].as_array().unwrap() {
            if inv["state"] == "pending" {
                let path = format!("/v1/members/invitations/{}", inv["id"].as_str().unwrap());
                assert_eq!(app.call(Method::DELETE, &path, key).await.status(), 204);
            }
        }
    }
}

/// One row of a role matrix: `METHOD PATH OWNER ADMIN MEMBER [BODY]`, the three statuses
/// expected for each role (`-`: not tried). The path names what the row acts on with a
/// placeholder (`{doc}`, `{key}`, `{invitation}`, `{joined}`, `{admin}`, `{owner}`); the body
/// (JSON for keys, a urlencoded form for pages) may hold `{email}`, a fresh address.
struct Row {
    method: Method,
    path: &'static str,
    expected: [Option<u16>; 3],
    body: String,
}

fn row(line: &'static str) -> Row {
    let words: Vec<&str> = line.split_whitespace().collect();
    assert!(words.len() >= 5, "short row: {line}");
    let status = |s: &str| (s != "-").then(|| s.parse().unwrap());
    Row {
        method: words[0].parse().unwrap(),
        path: words[1],
        expected: [status(words[2]), status(words[3]), status(words[4])],
        body: words[5..].join(" "),
    }
}

impl Row {
    fn target(&self) -> Target {
        [
            ("{doc}", Target::Document),
            ("{key}", Target::MemberKey),
            ("{invitation}", Target::Invitation),
            ("{joined}", Target::JoinedMember),
            ("{admin}", Target::Admin),
            ("{owner}", Target::Owner),
        ]
        .into_iter()
        .find(|(p, _)| self.path.contains(p))
        .map_or(Target::Nothing, |(_, t)| t)
    }

    /// The path and body, with the target's id and a fresh email filled in.
    async fn fill(&self, team: &Team) -> (Target, String, String, String) {
        let target = self.target();
        let id = team.target(target).await;
        let path = [
            "{doc}",
            "{key}",
            "{invitation}",
            "{joined}",
            "{admin}",
            "{owner}",
        ]
        .into_iter()
        .fold(self.path.to_string(), |p, ph| p.replace(ph, &id));
        let body = self.body.replace("{email}", &team.email());
        (target, id, path, body)
    }
}

/// Every `/v1` operation, and the activation endpoints a key may call, by the key's role.
const API_MATRIX: &[&str] = &[
    "GET    /v1/usage                           200 200 200",
    "GET    /v1/documents                       200 200 200",
    r#"POST /v1/documents                       201 201 201 {"title": "T", "content": "text"}"#,
    "GET    /v1/documents/{doc}                 200 200 200",
    "DELETE /v1/documents/{doc}                 204 204 204",
    r#"POST /v1/query                           200 200 200 {"query": "text", "top_k": 1}"#,
    "GET    /v1/api-keys                        200 200 403",
    r#"POST /v1/api-keys                        201 201 403 {"name": "k", "role": "member"}"#,
    r#"POST /v1/api-keys                        201 201 403 {"name": "k", "role": "admin"}"#,
    r#"POST /v1/api-keys                        201 403 403 {"name": "k", "role": "owner"}"#,
    "POST   /v1/api-keys/{key}/rotate           201 201 403",
    "DELETE /v1/api-keys/{key}                  204 204 403",
    "GET    /v1/members                         200 200 200",
    r#"POST /v1/members/invitations             201 201 403 {"email": "{email}", "role": "member"}"#,
    r#"POST /v1/members/invitations             201 201 403 {"email": "{email}", "role": "admin"}"#,
    "POST   /v1/members/invitations/{invitation}/resend 200 200 403",
    "DELETE /v1/members/invitations/{invitation}        204 204 403",
    r#"PATCH /v1/members/{joined}               200 200 403 {"role": "admin"}"#,
    r#"PATCH /v1/members/{admin}                200 403 403 {"role": "owner"}"#,
    // The only owner: an owner is refused as the last one (409), the others for their role.
    r#"PATCH /v1/members/{owner}                409 403 403 {"role": "admin"}"#,
    "DELETE /v1/members/{joined}                204 204 403",
    "DELETE /v1/members/{owner}                 409 403 403",
    "GET    /wizard/steps                       200 200 200",
    "POST   /wizard/steps/1/skip                200 200 200",
    r#"POST /activation/track                   200 200 200 {"event_type": "first_login"}"#,
];

/// Every signed-in page and every form it posts, by the member's role.
const PAGE_MATRIX: &[&str] = &[
    "GET    /app                                200 200 200",
    "GET    /setup                              200 200 200",
    "GET    /app/members                        200 200 200",
    "GET    /account                            200 200 200",
    "GET    /session                            200 200 200",
    "POST   /app/documents                      303 303 303 title=Page&content=Some+text",
    "POST   /setup/documents                    303 303 303 content=Some+text",
    "POST   /app/documents/{doc}/delete         303 303 303",
    "POST   /app/query                          200 200 200 query=text",
    "POST   /setup/query                        200 200 200 query=text",
    "POST   /setup/steps/1/skip                 303 303 303",
    "POST   /app/keys                           200 200 403 name=k&role=member",
    "POST   /app/keys                           200 403 403 name=k&role=owner",
    "POST   /setup/keys                         200 200 403 name=k",
    "POST   /app/keys/{key}/rotate              200 200 403",
    "POST   /app/keys/{key}/revoke              303 303 403",
    "POST   /app/members/invite                 303 303 403 email={email}&role=member",
    "POST   /app/members/invitations/{invitation}/resend 303 303 403",
    "POST   /app/members/invitations/{invitation}/revoke 303 303 403",
    "POST   /app/members/{joined}/role          303 303 403 role=admin",
    "POST   /app/members/{admin}/role           303 403 403 role=owner",
    "POST   /app/members/{owner}/role           409 403 403 role=member",
    "POST   /app/members/{joined}/remove        303 303 403",
    "POST   /app/members/{owner}/remove         409 403 403",
    "POST   /account/name                       303 303 303 name=Some+One",
    "POST   /account/consent                    303 303 403 marketing_opt_in=yes",
    "POST   /account/export                     200 403 403",
    "POST   /account/billing-portal             303 403 403",
    // The owner's wrong confirmation is refused for what it is, not for the role.
    "POST   /account/close                      400 403 403 confirm=not+the+company",
    // The owner's closing ends the account: tried last, after the matrix.
    "DELETE /account                            -   403 403",
];

async fn every_api_endpoint_checks_the_keys_role(backend: Backend) {
    let team = Team::new(backend, "api-matrix@example.com").await;
    let app = &team.app;
    let keys = [
        ("owner", team.t.api_key.clone()),
        (
            "admin",
            key_with_role(app, &team.t.api_key, "admin").await.0,
        ),
        (
            "member",
            key_with_role(app, &team.t.api_key, "member").await.0,
        ),
    ];
    for line in API_MATRIX {
        let row = row(line);
        for ((role, key), want) in keys.iter().zip(row.expected) {
            let (target, id, path, body) = row.fill(&team).await;
            let mut req = app.authed(row.method.clone(), &path, key);
            if !body.is_empty() {
                // Tracking names the tenant; the rest of a row's JSON is as written.
                let mut json: Value = serde_json::from_str(&body).unwrap();
                if path == "/activation/track" {
                    json["tenant_id"] = team.t.tenant_id.clone().into();
                }
                req = req.json(&json);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            assert_eq!(Some(status), want, "{role} key: {line}: {text}");
            if status == 403 {
                assert!(
                    text.contains("forbidden_role"),
                    "{role} key: {line}: {text}"
                );
            }
            team.restore(target, &id).await;
        }
    }
}

async fn every_page_action_checks_the_members_role(backend: Backend) {
    let team = Team::new(backend, "page-matrix@example.com").await;
    let app = &team.app;
    let cookies = [
        ("owner", team.owner_cookie.as_str()),
        ("admin", team.admin_cookie.as_str()),
        ("member", team.member_cookie.as_str()),
    ];
    for line in PAGE_MATRIX {
        let row = row(line);
        // The owner last, so the others' refusals are seen before the owner's act.
        for ((role, cookie), want) in cookies.iter().zip(row.expected).rev() {
            let Some(want) = want else { continue };
            let (target, id, path, body) = row.fill(&team).await;
            let mut req = app
                .client
                .request(row.method.clone(), app.url(&path))
                .header(COOKIE, *cookie);
            if row.method == Method::POST {
                req = req
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            assert_eq!(status, want, "{role}: {line}: {text}");
            team.restore(target, &id).await;
        }
    }
    let closed = with_cookie(app, Method::DELETE, "/account", &team.owner_cookie).await;
    assert_eq!(closed.status(), 200, "the owner closes the account");
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

async fn joining_in_a_signed_in_browser_signs_its_old_session_out(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("shared-browser@example.com", "pro").await;
    let owner = owner_cookie(&app, &t).await;
    invite_ok(&app, &t.api_key, "newcomer@example.com", "member").await;
    let link = invitation_link(&app, &t.tenant_id, "newcomer@example.com", 0).await;
    let token = token_of(&link);

    // The page says whose session this browser holds and that joining ends it.
    let page = with_cookie(
        &app,
        Method::GET,
        &format!("/invitations/accept?token={token}"),
        &owner,
    )
    .await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("signed in as <strong>shared-browser@example.com</strong>"),
        "{html}"
    );
    let anonymous = app
        .get(&format!("/invitations/accept?token={token}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !anonymous.contains("This browser is signed in"),
        "{anonymous}"
    );

    let resp = app
        .client
        .post(app.url("/invitations/accept"))
        .header(COOKIE, &owner)
        .json(&json!({"token": token, "name": "Newcomer", "password": MEMBER_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let joined = cookie_of(&resp);
    let old = with_cookie(&app, Method::GET, "/session", &owner).await;
    assert_eq!(old.status(), 401, "the session the browser held ended");
    let now = with_cookie(&app, Method::GET, "/session", &joined).await;
    assert_eq!(now.status(), 200);
    let body: Value = now.json().await.unwrap();
    assert_eq!(body["email"], "newcomer@example.com", "{body}");
    assert_eq!(body["role"], "member", "{body}");
    // The owner signs in again as before.
    owner_cookie(&app, &t).await;
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

/// The welcome email's link signs in the account's first owner; once ownership has changed
/// hands, a resent welcome is addressed to that owner, not to the signup's email.
async fn a_resent_welcome_goes_to_the_owner_it_signs_in(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("founder@example.com", "pro").await;
    let (heir_id, _) = join(&app, &t, "heir-welcome@example.com", "admin").await;
    let owner_id = owner_id(&app, &t.api_key).await;
    for (id, role) in [(&heir_id, "owner"), (&owner_id, "member")] {
        let resp = app
            .authed(Method::PATCH, &format!("/v1/members/{id}"), &t.api_key)
            .json(&json!({"role": role}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{id} → {role}");
    }
    let tenant = TenantId::parse(&t.tenant_id).unwrap();
    onboard::provisioning::resend_welcome(
        &app.state,
        &tenant,
        onboard::store::AuditEntry::new(
            onboard::domain::audit::Actor::Operator,
            onboard::domain::audit::Action::OperatorResendWelcome,
        ),
    )
    .await
    .unwrap();
    let welcomes = app.emails(Some(&t.tenant_id), "welcome").await;
    assert_eq!(welcomes.len(), 2);
    assert_eq!(
        welcomes[0].to_email, "heir-welcome@example.com",
        "the newest, to the owner"
    );
    assert_eq!(
        welcomes[1].to_email, "founder@example.com",
        "the first, at signup"
    );
    let link = crate::login::welcome_link(&app, &t.tenant_id).await;
    let resp = crate::login::follow_magic_link(&app, &link).await;
    assert_eq!(resp.status(), 303);
    let cookie = cookie_of(&resp);
    let session: Value = with_cookie(&app, Method::GET, "/session", &cookie)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(session["email"], "heir-welcome@example.com", "{session}");
    assert_eq!(session["role"], "owner");
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

async fn each_person_sets_the_name_their_team_sees(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.active_tenant("nameless@example.com", "pro").await;
    let cookie = owner_cookie(&app, &t).await;
    // The signup asks no name: the team page offers to add one.
    let page = with_cookie(&app, Method::GET, "/app/members", &cookie).await;
    let html = page.text().await.unwrap();
    assert!(
        html.contains("href=\"/account#profile-heading\">add yours"),
        "{html}"
    );

    let saved = form_with_cookie(
        &app,
        "/account/name",
        &cookie,
        &[("name", "  Ada Lovelace ")],
    )
    .await;
    assert_eq!(saved.status(), 303);
    assert_eq!(saved.headers()[LOCATION], "/account");
    let listed = members(&app, &t.api_key).await;
    assert_eq!(
        listed["members"][0]["name"], "Ada Lovelace",
        "trimmed: {listed}"
    );
    let account = with_cookie(&app, Method::GET, "/account", &cookie).await;
    assert!(
        account
            .text()
            .await
            .unwrap()
            .contains("value=\"Ada Lovelace\"")
    );
    assert!(
        audit_actions(&app, &t.tenant_id)
            .await
            .iter()
            .any(|a| a == "member.renamed")
    );

    // Refused: empty, too long, control characters; the page says why at the field and keeps
    // the name as it was.
    for bad in ["   ", &"x".repeat(101), "Ada\u{7}"] {
        let resp = form_with_cookie(&app, "/account/name", &cookie, &[("name", bad)]).await;
        assert_eq!(resp.status(), 400, "{bad:?}");
        let html = resp.text().await.unwrap();
        assert!(html.contains("id=\"name-error\""), "{html}");
        assert!(html.contains("aria-invalid=\"true\""), "{html}");
        assert!(html.contains("name must be 1–100 characters"), "{html}");
    }
    let listed = members(&app, &t.api_key).await;
    assert_eq!(listed["members"][0]["name"], "Ada Lovelace");

    // From another site, or signed out: refused.
    refused_cross_site_and_signed_out(&app, "/account/name", &cookie, &[("name", "Mallory")]).await;
    assert_eq!(
        members(&app, &t.api_key).await["members"][0]["name"],
        "Ada Lovelace"
    );
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
    refused_cross_site_and_signed_out(
        &app,
        "/app/members/invite",
        &cookie,
        &[("email", "x@example.com")],
    )
    .await;
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
