//! Email bodies, rendered with askama: a plain-text and an HTML part with preheader text.

use askama::Template;

use super::OutgoingEmail;

#[derive(Template)]
#[template(path = "email/welcome.txt")]
struct WelcomeText<'a> {
    company_name: &'a str,
    login_url: &'a str,
    docs_url: &'a str,
    expires_hours: u32,
}

#[derive(Template)]
#[template(path = "email/welcome.html")]
struct WelcomeHtml<'a> {
    company_name: &'a str,
    login_url: &'a str,
    docs_url: &'a str,
    expires_hours: u32,
    preheader: &'a str,
}

/// The welcome email: a single-use login link, never a secret.
pub fn welcome(
    tenant_id: &str,
    to: &str,
    company_name: &str,
    login_url: &str,
    docs_url: &str,
    expires_hours: u32,
) -> OutgoingEmail {
    let preheader = "Your workspace is ready: sign in and run your first query in two minutes.";
    let text = WelcomeText {
        company_name,
        login_url,
        docs_url,
        expires_hours,
    }
    .render()
    .expect("welcome text template renders");
    let html = WelcomeHtml {
        company_name,
        login_url,
        docs_url,
        expires_hours,
        preheader,
    }
    .render()
    .expect("welcome html template renders");
    OutgoingEmail {
        tenant_id: Some(tenant_id.to_string()),
        kind: "welcome",
        dedupe_key: Some(format!("welcome:{tenant_id}")),
        to: to.to_string(),
        subject: format!("Welcome to onboard, {company_name}: your workspace is ready"),
        preheader: preheader.into(),
        text,
        html,
        headers: vec![],
    }
}

#[derive(Template)]
#[template(path = "email/password_reset.txt")]
struct PasswordResetText<'a> {
    company_name: &'a str,
    reset_url: &'a str,
    expires_minutes: u32,
}

#[derive(Template)]
#[template(path = "email/password_reset.html")]
struct PasswordResetHtml<'a> {
    company_name: &'a str,
    reset_url: &'a str,
    expires_minutes: u32,
    preheader: &'a str,
}

/// A "forgot password" email: a single-use, expiring link to choose a new password.
pub fn password_reset(
    tenant_id: &str,
    to: &str,
    company_name: &str,
    reset_url: &str,
    expires_minutes: u32,
) -> OutgoingEmail {
    let preheader = "Choose a new password with the link inside; it works once.";
    let text = PasswordResetText {
        company_name,
        reset_url,
        expires_minutes,
    }
    .render()
    .expect("password reset text template renders");
    let html = PasswordResetHtml {
        company_name,
        reset_url,
        expires_minutes,
        preheader,
    }
    .render()
    .expect("password reset html template renders");
    OutgoingEmail {
        tenant_id: Some(tenant_id.to_string()),
        kind: "password_reset",
        dedupe_key: None,
        to: to.to_string(),
        subject: "Reset your onboard password".into(),
        preheader: preheader.into(),
        text,
        html,
        headers: vec![],
    }
}

/// Tells the sales team about an enterprise signup.
pub fn sales_notification(
    tenant_id: &str,
    to: &str,
    company_name: &str,
    customer_email: &str,
) -> OutgoingEmail {
    let text = format!(
        "A new enterprise signup is waiting for sales review.\n\nCompany: {company_name}\nContact: {customer_email}\nTenant: {tenant_id}\n\nApprove it with: onboard tenants approve {tenant_id}\n"
    );
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let html = format!(
        "<!doctype html><html><body><div style=\"display:none\">New enterprise signup: {}</div><p>A new enterprise signup is waiting for sales review.</p><ul><li>Company: {}</li><li>Contact: {}</li><li>Tenant: <code>{}</code></li></ul></body></html>",
        esc(company_name),
        esc(company_name),
        esc(customer_email),
        esc(tenant_id)
    );
    OutgoingEmail {
        tenant_id: Some(tenant_id.to_string()),
        kind: "sales_notification",
        dedupe_key: Some(format!("sales_notification:{tenant_id}")),
        to: to.to_string(),
        subject: format!("Enterprise signup to review: {company_name}"),
        preheader: format!("New enterprise signup: {company_name}"),
        text,
        html,
        headers: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_reset_carries_the_link_and_its_expiry() {
        let e = password_reset(
            "tenant_1",
            "a@example.com",
            "Acme",
            "http://x/login/reset?token=abc",
            60,
        );
        assert!(
            e.text.contains("http://x/login/reset?token=abc"),
            "{}",
            e.text
        );
        assert!(e.html.contains("http://x/login/reset?token=abc"));
        assert!(e.text.contains("60 minutes") && e.html.contains(&e.preheader));
        assert_eq!(e.kind, "password_reset");
    }

    #[test]
    fn welcome_has_both_parts_preheader_and_the_link_but_no_secret() {
        let e = welcome(
            "tenant_1",
            "a@example.com",
            "Acme <b>",
            "http://x/login/magic?token=abc",
            "http://x/docs",
            24,
        );
        assert!(e.text.contains("http://x/login/magic?token=abc"));
        assert!(e.html.contains("http://x/login/magic?token=abc"));
        assert!(e.html.contains(&e.preheader));
        assert!(
            !e.html.contains("Acme <b>") && e.html.contains("Acme &#60;b&#62;"),
            "HTML escapes the company name: {}",
            e.html
        );
        assert!(e.text.contains("24 hours"));
        assert!(
            !e.text.contains("onb_") && !e.html.contains("onb_"),
            "no API key in email"
        );
        assert_eq!(e.dedupe_key.as_deref(), Some("welcome:tenant_1"));
    }
}
