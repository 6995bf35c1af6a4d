//! HTTP: routers by area, extractors, error mapping, OpenAPI and pages. The outer edge: it may
//! use every module below it; nothing but `cli` and `demo` imports it.

pub mod account;
pub mod activation;
pub mod admin;
pub mod alerts;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod console;
pub mod dev;
pub mod docs;
pub mod error;
pub mod extract;
pub mod guard;
pub mod health;
pub mod login;
pub mod members;
pub mod onboarding;
pub mod signup;
pub mod tenant;
pub mod unsubscribe;
pub mod v1;
pub mod webhook;
pub mod workspace;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Settings;
use crate::store::Store;

pub use crate::app::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "onboard",
        description = "Self-service SaaS tenant onboarding: signup, checkout, provisioning, activation."
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&BearerKeys)
)]
struct ApiDoc;

/// Documents the answers every operation of a kind can give, whatever its handler: a request
/// timeout and an unavailable database anywhere; a cross-site refusal on state-changing
/// operations; an oversized or mistyped body where there is a body; an API key's refusals
/// under `/v1`; and the HTML pages a form post is answered with. Applied to the router's whole
/// document, after every operation is in it.
fn document_common_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let json_error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        let ops = [
            (&mut item.get, false),
            (&mut item.put, true),
            (&mut item.post, true),
            (&mut item.delete, true),
            (&mut item.patch, true),
        ];
        for (op, changes_state) in ops {
            let Some(op) = op.as_mut() else { continue };
            let mut add = |code: &str, description: &str| {
                op.responses
                    .responses
                    .entry(code.to_string())
                    .or_insert_with(|| json_error(description).into());
            };
            add(
                "408",
                "The request (its body included) was not received and answered within HTTP_REQUEST_TIMEOUT_SECONDS",
            );
            add(
                "503",
                "A dependency (the database) is unavailable for a moment; see Retry-After",
            );
            if changes_state {
                add(
                    "403",
                    "The request came from another website (a browser said so) without an Authorization header",
                );
            }
            let body_types: Vec<String> = op
                .request_body
                .as_ref()
                .and_then(|b| match b {
                    utoipa::openapi::RefOr::T(b) => Some(b.content.keys().cloned().collect()),
                    utoipa::openapi::RefOr::Ref(_) => None,
                })
                .unwrap_or_default();
            if !body_types.is_empty() {
                add(
                    "400",
                    "The body is malformed or a field is invalid; `field` names it",
                );
                add("413", "The body is larger than this operation accepts");
                add(
                    "415",
                    "The body's Content-Type is not one this operation accepts",
                );
            }
            if path.starts_with("/v1/") {
                add(
                    "401",
                    "The API key is missing, malformed, revoked or expired (the code names which)",
                );
                add(
                    "403",
                    "The key lacks the scope this operation needs, or the workspace is not active",
                );
            }
            // A form post is answered with pages: every JSON answer also comes as HTML.
            if body_types
                .iter()
                .any(|t| t == "application/x-www-form-urlencoded")
            {
                for response in op.responses.responses.values_mut() {
                    if let utoipa::openapi::RefOr::T(r) = response
                        && r.content.contains_key("application/json")
                        && !r.content.contains_key("text/html")
                    {
                        r.content.insert(
                            "text/html".to_string(),
                            ContentBuilder::new()
                                .schema(Some(
                                    utoipa::openapi::ObjectBuilder::new()
                                        .schema_type(utoipa::openapi::schema::Type::String),
                                ))
                                .build()
                                .into(),
                        );
                    }
                }
            }
        }
    }
}

/// Declares the `api_key` security scheme the `/v1` endpoints use.
struct BearerKeys;

impl utoipa::Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("onb_… (JWT)")
                    .description(Some("Your workspace API key, shown once on the onboarding success page or when created at POST /v1/api-keys"))
                    .build(),
            ),
        );
    }
}

/// Every route that is not an operation of the OpenAPI document: pages for people, the
/// Prometheus text, the document itself and the files pages load. With the OpenAPI document this
/// is the whole router: `tests/api/docs.rs` checks that each is served and that no other route
/// exists in the source.
pub const PAGES: &[(&str, &str)] = &[
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/metrics"),
    ("GET", "/static/{file}"),
    ("GET", "/dev/checkout/{session}"),
    ("POST", "/dev/checkout/{session}/pay"),
    ("POST", "/dev/checkout/{session}/cancel"),
    ("GET", "/dev/mailbox"),
    ("GET", "/dev/mailbox/{id}"),
    ("GET", "/onboarding/success"),
    ("GET", "/onboarding/cancel"),
    ("GET", "/onboarding/canceled"),
    ("POST", "/onboarding/retry"),
    ("GET", "/"),
    ("GET", "/onboarding/checkout"),
    ("GET", "/unsubscribe"),
    ("POST", "/unsubscribe"),
    ("GET", "/login/magic"),
    ("POST", "/login/magic"),
    ("POST", "/account/consent"),
    ("POST", "/account/name"),
    ("POST", "/account/close"),
    ("GET", "/dev/billing-portal"),
    ("POST", "/dev/billing-portal/update-card"),
    ("POST", "/dev/billing-portal/cancel"),
    ("GET", "/app"),
    ("POST", "/app/documents"),
    ("POST", "/app/documents/{id}/delete"),
    ("POST", "/app/query"),
    ("POST", "/app/keys"),
    ("POST", "/app/keys/{id}/revoke"),
    ("POST", "/app/keys/{id}/rotate"),
    ("GET", "/setup"),
    ("POST", "/setup/documents"),
    ("POST", "/setup/query"),
    ("POST", "/setup/keys"),
    ("POST", "/setup/steps/{step}/skip"),
    ("GET", "/app/members"),
    ("POST", "/app/members/invite"),
    ("POST", "/app/members/invitations/{id}/resend"),
    ("POST", "/app/members/invitations/{id}/revoke"),
    ("POST", "/app/members/{id}/role"),
    ("POST", "/app/members/{id}/remove"),
    ("GET", "/admin/login"),
    ("POST", "/admin/login"),
    ("POST", "/admin/logout"),
    ("GET", "/admin"),
    ("GET", "/admin/tenants"),
    ("GET", "/admin/tenants/{tenant_id}"),
    ("POST", "/admin/tenants/{tenant_id}/actions/{action}"),
    ("GET", "/admin/activation"),
    ("GET", "/admin/at-risk"),
    ("POST", "/admin/at-risk/{tenant_id}/resolve"),
    ("GET", "/admin/jobs"),
    ("POST", "/admin/jobs/{job_id}/retry"),
];

/// `/v1/members`: behind the same key check as the rest of `/v1`.
fn members_v1() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(members::list_members))
        .routes(routes!(members::create_invitation))
        .routes(routes!(members::resend_invitation))
        .routes(routes!(members::revoke_invitation))
        .routes(routes!(members::update_member, members::delete_member))
}

/// The JSON API with its OpenAPI document; `guard_v1` puts authentication in front of `/v1`.
fn api(
    guard_v1: impl FnOnce(OpenApiRouter<AppState>) -> OpenApiRouter<AppState>,
) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let parts = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(guard_v1(v1::routes().merge(members_v1())))
        .routes(routes!(health::health))
        .routes(routes!(signup::signup))
        .routes(routes!(tenant::get_tenant))
        .routes(routes!(tenant::retry_tenant))
        .routes(routes!(webhook::stripe_webhook))
        .routes(routes!(onboarding::status))
        .routes(routes!(admin::provision))
        .routes(routes!(admin::approve))
        .routes(routes!(alerts::alerts))
        .routes(routes!(audit::audit_log))
        .routes(routes!(activation::track))
        .routes(routes!(activation::metrics))
        .routes(routes!(activation::at_risk))
        .routes(routes!(activation::resolve_at_risk))
        .routes(routes!(activation::wizard_steps))
        .routes(routes!(activation::skip_step))
        .routes(routes!(account::billing_portal))
        .routes(routes!(account::export))
        .routes(routes!(login::account::account_page, account::close))
        .routes(routes!(login::password::login, login::password::login_page))
        .routes(routes!(login::session::session))
        .routes(routes!(login::session::logout))
        .routes(routes!(login::reset::forgot, login::reset::forgot_form))
        .routes(routes!(login::link::request_link))
        .routes(routes!(login::reset::reset, login::reset::reset_form))
        .routes(routes!(members::accept_invitation, members::accept_page))
        .split_for_parts();
    let (router, mut doc) = parts;
    document_common_responses(&mut doc);
    (router, doc)
}

/// The OpenAPI document of every JSON endpoint.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api(|r| r).1
}

/// What a standalone `onboard worker` serves on `WORKER_METRICS_ADDR`: `GET /metrics` only, the
/// same exposition (behind the same `METRICS_TOKEN`) as the server's, so the worker's job,
/// email and provisioning counters are scraped from the process that counts them.
pub fn worker_metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(admin::metrics))
        .fallback(|| async { error::ApiError::not_found("route") })
        .with_state(state)
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let guard = axum::middleware::from_fn_with_state(
        Arc::new(auth::KeyCheck::from(&state)),
        auth::require_api_key,
    );
    build(state, |v1| v1.route_layer(guard))
}

/// The whole application router with `/v1` acting as `caller`, no key checked. Never mounted
/// by the server: it is the baseline of the auth-overhead benchmark (the same router, layers
/// and handlers, minus authentication).
#[doc(hidden)]
pub fn router_without_v1_auth(state: AppState, caller: auth::Caller) -> Router {
    let fixed = axum::middleware::from_fn(
        move |mut req: axum::extract::Request, next: axum::middleware::Next| {
            req.extensions_mut().insert(caller.clone());
            next.run(req)
        },
    );
    build(state, |v1| v1.route_layer(fixed))
}

fn build(
    state: AppState,
    guard_v1: impl FnOnce(OpenApiRouter<AppState>) -> OpenApiRouter<AppState>,
) -> Router {
    let (api, doc) = api(guard_v1);
    let doc = Arc::new(doc);
    let policy = Arc::new(guard::WebPolicy {
        https: state.settings.app_url.scheme() == "https",
        app_url: state.settings.app_url.clone(),
    });
    // A request (its body included) is read and answered within this, or gets a 408.
    let request_timeout =
        std::time::Duration::from_secs(state.settings.http_request_timeout_seconds);
    let metrics = state.metrics.clone();
    api.merge(docs::router(doc))
        .merge(dev::router())
        .merge(assets::router())
        .merge(onboarding::router())
        .merge(login::router())
        .merge(unsubscribe::router())
        .merge(members::router())
        .merge(workspace::router())
        .merge(console::router())
        .route("/metrics", axum::routing::get(admin::metrics))
        .route("/", axum::routing::get(signup::home))
        .fallback(|| async { error::ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this path does not accept that HTTP method; see /docs",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            console::logs::pages_at_api_paths,
        ))
        .layer(DefaultBodyLimit::max(extract::MAX_JSON_BODY))
        .layer(axum::middleware::from_fn_with_state(
            policy.clone(),
            guard::refuse_cross_site,
        ))
        .layer(axum::middleware::from_fn_with_state(
            policy,
            guard::secure_headers,
        ))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        // A 5xx is logged where it happens, with its cause (an unexpected error at ERROR, a
        // 503 for a busy queue or a database blip at WARN); the layer's own line is DEBUG.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(guard::request_span)
                .on_failure(
                    tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
                ),
        )
        // Outermost, so the count and the latency include every other layer's answers (a 408,
        // a refused cross-site post).
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            guard::record_request,
        ))
        .with_state(state)
}

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Binds `settings.addr` (port 0 picks a free port) over an already connected store.
    pub async fn bind(settings: Settings, store: Store) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.addr).await.map_err(|e| {
            anyhow::anyhow!("cannot listen on {} (ONBOARD_ADDR): {e}", settings.addr)
        })?;
        Ok(Self::from_listener(listener, settings, store))
    }

    /// Serves on an already bound listener (tests bind first to learn the port for `APP_URL`).
    pub fn from_listener(listener: TcpListener, settings: Settings, store: Store) -> Self {
        let mut settings = settings;
        // The server's own address, used by the dev checkout to deliver its webhook to itself.
        if let Ok(addr) = listener.local_addr() {
            settings.addr = addr;
        }
        let state = AppState::new(settings, store);
        Self { listener, state }
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests (for at most 30 s).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        // Counters gathered in memory (query usage, keys' last use) reach the database every
        // second, and once more after the last request.
        let flusher = {
            let state = state.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    state.flush_counters().await;
                }
            })
        };
        let header_timeout =
            std::time::Duration::from_secs(state.settings.http_header_timeout_seconds);
        let app = router(self.state);
        serve(self.listener, app, header_timeout, shutdown).await;
        flusher.abort();
        state.flush_counters().await;
        Ok(())
    }
}

/// The accept loop. Each connection is HTTP/1.1 with keep-alive, and must send each request's
/// headers within `header_timeout` (also the longest a kept-alive connection may sit idle), so
/// a slow client cannot hold connections open; bodies and handlers are bounded by the
/// request timeout layer of [`router`].
async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                let mut app = app.clone();
                async move {
                    use tower::Service;
                    app.call(req.map(axum::body::Body::new)).await
                }
            },
        );
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {
            tracing::warn!("connections still open after 30 s of shutdown; closing them");
        }
    }
}

#[derive(askama::Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
    link_href: &'a str,
    link_text: &'a str,
}

/// A small HTML page for a person in a browser: a title, what happened, and one way on
/// (`link`: address and label). Browser pages answer bad input with this, not with JSON.
pub(crate) fn message_page(
    status: axum::http::StatusCode,
    title: &str,
    message: &str,
    link: (&str, &str),
) -> axum::response::Response {
    use askama::Template;
    use axum::response::IntoResponse;
    let page = MessagePage {
        title,
        message,
        link_href: link.0,
        link_text: link.1,
    };
    match page.render() {
        Ok(html) => (status, axum::response::Html(html)).into_response(),
        Err(e) => error::ApiError::internal("render message page", e).into_response(),
    }
}
