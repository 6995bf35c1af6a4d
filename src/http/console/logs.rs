//! The console's pages at the JSON endpoints' own paths, for a browser that asks for HTML
//! (`super::wants_page`): `GET /admin/alerts` (the alert rules judged now, filtered by state
//! and severity) and `GET /admin/audit` (the audit log with the endpoint's filters, paged).
//! [`pages_at_api_paths`], in front of the router, answers those requests; the JSON endpoints
//! never see them.

use askama::Template;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Chrome, SignedIn, given, render};
use crate::alerts::{Alert, AlertState};
use crate::http::AppState;
use crate::http::audit::{AuditLogEntry, AuditQuery, filter_of, read_page};
use crate::http::extract::parse_query;
use crate::store::now_ms;

/// Entries per page of the audit log.
const AUDIT_PAGE: i64 = 100;

/// Middleware: a browser's `GET /admin/alerts` or `GET /admin/audit` (it asks for HTML and
/// sends no `Authorization`) gets the console's page; every other request goes on.
pub async fn pages_at_api_paths(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() == Method::GET && super::wants_page(request.headers()) {
        let (headers, uri) = (request.headers(), request.uri());
        match uri.path() {
            "/admin/alerts" => return alerts_page(&state, headers, uri).await,
            "/admin/audit" => return audit_page(&state, headers, uri).await,
            _ => {}
        }
    }
    next.run(request).await
}

#[derive(Deserialize, Default)]
struct AlertsQuery {
    state: Option<String>,
    severity: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/alerts.html")]
struct AlertsPage {
    chrome: Chrome,
    state: String,
    severity: String,
    firing: usize,
    evaluated: String,
    alerts: Vec<(Alert, String)>,
}

/// An alert's value and threshold in its unit, as a person reads them.
fn measured(a: &Alert) -> String {
    let show = |v: f64| match a.unit {
        "ratio" => format!("{:.1}%", v * 100.0),
        "seconds" => super::duration((v * 1000.0) as i64),
        unit => format!("{v} {unit}"),
    };
    let value = a.value.map_or_else(|| "nothing to measure".into(), show);
    let side = if a.state == AlertState::Firing {
        "past"
    } else {
        "within"
    };
    format!("{value} ({side} the threshold {})", show(a.threshold))
}

/// Where a visitor who is not signed in goes, or the operator, for the page at `uri`.
async fn operator(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Result<SignedIn, Response> {
    let path = uri.path_and_query().map_or("/admin", |p| p.as_str());
    SignedIn::from_headers(state, headers, path).await
}

/// `GET /admin/alerts?state=&severity=` for a browser.
async fn alerts_page(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Response {
    let operator = match operator(state, headers, uri).await {
        Ok(o) => o,
        Err(to_login) => return to_login,
    };
    let q: AlertsQuery = parse_query(uri.query().unwrap_or_default()).unwrap_or_default();
    let now = now_ms();
    let alerts = match state.store.evaluate_alerts(now).await {
        Ok(a) => a,
        Err(e) => return crate::http::error::ApiError::from(e).into_response(),
    };
    let want_state = given(&q.state);
    let want_severity = given(&q.severity);
    let page = AlertsPage {
        chrome: Chrome::new(&operator, "/admin/alerts"),
        firing: alerts
            .iter()
            .filter(|a| a.state == AlertState::Firing)
            .count(),
        evaluated: super::when(now),
        state: want_state.unwrap_or_default().to_string(),
        severity: want_severity.unwrap_or_default().to_string(),
        alerts: alerts
            .into_iter()
            .filter(|a| {
                let state = match a.state {
                    AlertState::Firing => "firing",
                    AlertState::Ok => "ok",
                };
                want_state.is_none_or(|s| s == state)
                    && want_severity.is_none_or(|s| s == a.severity)
            })
            .map(|a| {
                let m = measured(&a);
                (a, m)
            })
            .collect(),
    };
    render(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditLogPage {
    chrome: Chrome,
    actor: String,
    action: String,
    target: String,
    from: String,
    to: String,
    error: Option<String>,
    entries: Vec<AuditLogEntry>,
    next: Option<String>,
    first_page: Option<String>,
}

/// `GET /admin/audit?actor=&action=&target=&from=&to=&cursor=` for a browser.
async fn audit_page(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Response {
    let operator = match operator(state, headers, uri).await {
        Ok(o) => o,
        Err(to_login) => return to_login,
    };
    // Only `limit` can be of the wrong type, and the page does not take it.
    let q: AuditQuery = parse_query(uri.query().unwrap_or_default()).unwrap_or_default();
    let filters = |cursor: Option<&str>| {
        super::query_string(&[
            ("actor", given(&q.actor)),
            ("action", given(&q.action)),
            ("target", given(&q.target)),
            ("from", given(&q.from)),
            ("to", given(&q.to)),
            ("cursor", cursor),
        ])
    };
    let mut page = AuditLogPage {
        chrome: Chrome::new(&operator, "/admin/audit"),
        actor: given(&q.actor).unwrap_or_default().to_string(),
        action: given(&q.action).unwrap_or_default().to_string(),
        target: given(&q.target).unwrap_or_default().to_string(),
        from: given(&q.from).unwrap_or_default().to_string(),
        to: given(&q.to).unwrap_or_default().to_string(),
        error: None,
        entries: Vec::new(),
        next: None,
        first_page: given(&q.cursor).map(|_| format!("/admin/audit?{}", filters(None))),
    };
    let filter = match filter_of(&q) {
        Ok(f) => f,
        Err(e) => {
            page.error = Some(format!("{}.", e.message));
            return render(StatusCode::BAD_REQUEST, &page);
        }
    };
    match read_page(state, &filter, AUDIT_PAGE).await {
        Ok((entries, next)) => {
            page.entries = entries;
            page.next = next.map(|c| format!("/admin/audit?{}", filters(Some(&c))));
            render(StatusCode::OK, &page)
        }
        Err(e) => e.into_response(),
    }
}
