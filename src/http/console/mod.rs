//! The operator console (`/admin`): server-rendered pages over what the operator endpoints and
//! commands already read and do, behind a sign-in with `ADMIN_TOKEN` ([`session`]) whose session
//! carries a CSRF token every console form must send back.
//!
//! One file per area: [`overview`], [`tenants`] (list, a tenant's page and its actions),
//! [`activation`] (funnel, A/B test, time to activation, cohorts; their drawing in [`chart`]),
//! [`risk`] (stuck customers), [`jobs`] (the queue) and [`logs`] (alerts and the audit log,
//! which answer at the JSON endpoints' own paths when a browser asks for a page). Pages share
//! `templates/admin/layout.html`, one stylesheet and one small script (`static/console.*`);
//! every form works without the script.
//!
//! Reads and acts only through the store and the feature modules (provisioning, billing,
//! analytics, alerts), as the JSON endpoints do.

pub mod activation;
pub mod chart;
pub mod jobs;
pub mod logs;
pub mod overview;
pub mod risk;
pub mod session;
pub mod tenants;

use askama::Template;
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::AppState;
use super::error::ApiError;
use crate::store::ms_to_datetime;

pub use session::{CheckedForm, SignedIn};

/// The console's pages and forms (`/admin/alerts` and `/admin/audit` are the JSON endpoints'
/// routes, see [`logs`]).
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/login",
            get(session::login_page).post(session::login),
        )
        .route("/admin/logout", post(session::logout))
        .route("/admin", get(overview::page))
        .route("/admin/tenants", get(tenants::list))
        .route("/admin/tenants/{tenant_id}", get(tenants::show))
        .route(
            "/admin/tenants/{tenant_id}/actions/{action}",
            post(tenants::act),
        )
        .route("/admin/activation", get(activation::page))
        .route("/admin/at-risk", get(risk::page))
        .route("/admin/at-risk/{tenant_id}/resolve", post(risk::resolve))
        .route("/admin/jobs", get(jobs::page))
        .route("/admin/jobs/{job_id}/retry", post(jobs::retry))
}

/// Whether a request at an operator endpoint's path is a browser asking for a page (it accepts
/// HTML and sends no `Authorization`) rather than a client of the JSON API.
pub fn wants_page(headers: &HeaderMap) -> bool {
    !headers.contains_key(header::AUTHORIZATION)
        && headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("text/html"))
}

/// The sections of the console, in the navigation's order: (address, label).
const SECTIONS: [(&str, &str); 7] = [
    ("/admin", "Overview"),
    ("/admin/tenants", "Tenants"),
    ("/admin/activation", "Activation"),
    ("/admin/at-risk", "At risk"),
    ("/admin/alerts", "Alerts"),
    ("/admin/jobs", "Jobs"),
    ("/admin/audit", "Audit log"),
];

/// One link of the navigation.
pub struct NavLink {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// What every console page shows around its content: the navigation (with the current
/// section), the sign-out form (with the CSRF token) and a notice after an action.
pub struct Chrome {
    pub nav: Vec<NavLink>,
    pub csrf: String,
    /// What the last action did (from `?done=`), announced politely.
    pub notice: Option<&'static str>,
}

impl Chrome {
    /// The chrome of a page in `section` (its address in [`SECTIONS`]) for `operator`.
    pub fn new(operator: &SignedIn, section: &str) -> Self {
        Chrome {
            nav: SECTIONS
                .iter()
                .map(|&(href, label)| NavLink {
                    href,
                    label,
                    current: href == section,
                })
                .collect(),
            csrf: operator.csrf.clone(),
            notice: None,
        }
    }

    /// With the notice of an action's `done` code, if it is one.
    pub fn done(mut self, code: Option<&str>) -> Self {
        self.notice = code.and_then(notice);
        self
    }
}

/// What an action that redirected with `?done=<code>` did, in a sentence.
fn notice(code: &str) -> Option<&'static str> {
    Some(match code {
        "retried" => "Provisioning restarted; completed steps are not repeated.",
        "resent" => "A new welcome email with a fresh sign-in link is on its way.",
        "approved" => "Approved: the workspace is being set up.",
        "suspended" => "The workspace is suspended: its API keys answer 402 until a payment.",
        "resolved" => "Marked resolved.",
        "job_retried" => "The job is queued again with a fresh attempt budget.",
        _ => return None,
    })
}

/// A page's HTML answer with `status`, or a 500 when it cannot be rendered.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => ApiError::internal("render console page", e).into_response(),
    }
}

/// A stored time as the console shows it.
pub fn when(ms: i64) -> String {
    ms_to_datetime(ms)
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

/// A duration in milliseconds as a person reads it (`850 ms`, `12.3 s`, `4 min 05 s`, `3 h 20 min`,
/// `2 d 4 h`).
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    let s = ms / 1000;
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {:02} s", s / 60, s % 60),
        3_600_000..86_400_000 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

#[derive(Template)]
#[template(path = "admin/problem.html")]
struct ProblemPage<'a> {
    chrome: Chrome,
    title: &'a str,
    message: &'a str,
    back: (&'a str, &'a str),
}

/// A console page that says an action could not be done and why (announced at once), with
/// `back` (address, label) to return to.
pub fn problem(
    status: StatusCode,
    operator: &SignedIn,
    title: &str,
    message: &str,
    back: (&str, &str),
) -> Response {
    let page = ProblemPage {
        chrome: Chrome::new(operator, ""),
        title,
        message,
        back,
    };
    render(status, &page)
}

/// After an action: back to `to` (a console address), which announces `done`.
pub fn done(to: &str, code: &str) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{to}{sep}done={code}")).into_response()
}

/// An empty query value counts as not given (forms send every field).
pub fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// `key=value` pairs as a query string (values encoded), for links that keep a page's filters.
pub fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            q.append_pair(k, v);
        }
    }
    q.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_person_would_say_them() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_345), "12.3 s");
        assert_eq!(duration(245_000), "4 min 05 s");
        assert_eq!(duration(3 * 3_600_000 + 20 * 60_000), "3 h 20 min");
        assert_eq!(duration(2 * 86_400_000 + 4 * 3_600_000), "2 d 4 h");
        assert_eq!(duration(-5), "0 ms");
    }

    #[test]
    fn browsers_get_pages_and_api_clients_json() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        assert!(wants_page(&headers(&[(
            "accept",
            "text/html,application/xhtml+xml,*/*;q=0.8"
        )])));
        assert!(!wants_page(&headers(&[])));
        assert!(!wants_page(&headers(&[("accept", "*/*")])));
        assert!(!wants_page(&headers(&[
            ("accept", "text/html"),
            ("authorization", "Bearer x")
        ])));
    }

    #[test]
    fn filter_links_keep_only_what_is_set() {
        assert_eq!(
            query_string(&[("q", Some("a b&c")), ("status", None), ("x", Some(""))]),
            "q=a+b%26c"
        );
    }
}
