//! `spawn_app`: the real server on 127.0.0.1:0 over its own database (a SQLite file in a temp
//! dir, or a fresh PostgreSQL schema under `TEST_DATABASE_URL`).

use std::net::SocketAddr;

use onboard::config::Settings;
use onboard::email::StoredEmail;
use onboard::http::Application;
use onboard::store::Store;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Which database a test runs on.
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    /// The PostgreSQL backend at `TEST_DATABASE_URL`. The PostgreSQL tests are built as ignored
    /// when it was not set at build time (see `build.rs`), so reaching this without it is a
    /// mistake worth failing on.
    pub fn postgres() -> Backend {
        match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => Backend::Postgres(url),
            _ => panic!("TEST_DATABASE_URL is not set; the PostgreSQL tests cannot run"),
        }
    }
}

/// Generates a `sqlite` and a `postgres` test for each `async fn name(Backend)` listed.
#[macro_export]
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(onboard_postgres_tests),
                ignore = "set TEST_DATABASE_URL to run on PostgreSQL"
            )]
            async fn postgres() {
                super::$name($crate::helpers::Backend::postgres()).await
            }
        }
    )*};
}

/// A database created for one test; survives server restarts within the test.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn create(backend: &Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("onboard.db").display());
                TestDb {
                    url,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres(base) => {
                let schema = format!("test_{}", ulid::Ulid::new().to_string().to_lowercase());
                let admin = sqlx::PgPool::connect(base)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&admin)
                    .await
                    .expect("create test schema");
                admin.close().await;
                let sep = if base.contains('?') { '&' } else { '?' };
                TestDb {
                    url: format!("{base}{sep}options[search_path]={schema}"),
                    _dir: None,
                }
            }
        }
    }

    pub async fn store(&self) -> Store {
        Store::connect(&self.url, 5)
            .await
            .expect("connect test store")
    }
}

/// A running server and a client for it.
pub struct TestApp {
    pub state: onboard::app::AppState,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub store: Store,
    pub db: TestDb,
    overrides: Vec<(String, String)>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
    worker_stop: Option<tokio::sync::watch::Sender<bool>>,
    worker: Option<JoinHandle<()>>,
    with_worker: bool,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

pub async fn spawn_app_with(backend: Backend, overrides: &[(&str, &str)]) -> TestApp {
    let db = TestDb::create(&backend).await;
    let overrides = overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    start(db, overrides, true).await
}

/// The server (with its worker) over a database the test prepared itself.
pub async fn spawn_app_on(db: TestDb, overrides: &[(&str, &str)]) -> TestApp {
    let overrides = overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    start(db, overrides, true).await
}

/// The server alone: jobs wait for worker processes the test starts itself.
pub async fn spawn_app_without_worker(backend: Backend, overrides: &[(&str, &str)]) -> TestApp {
    let db = TestDb::create(&backend).await;
    let overrides = overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    start(db, overrides, false).await
}

fn settings_for(db: &TestDb, overrides: &[(String, String)]) -> Settings {
    let mut pairs: Vec<(&str, &str)> = vec![
        ("ONBOARD_ADDR", "127.0.0.1:0"),
        ("DATABASE_URL", &db.url),
        ("SIGNUP_RATE_LIMIT_PER_HOUR", "1000"),
    ];
    pairs.extend(overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    Settings::with_overrides(&pairs).expect("test settings are valid")
}

async fn start(db: TestDb, overrides: Vec<(String, String)>, with_worker: bool) -> TestApp {
    let mut settings = settings_for(&db, &overrides);
    let store = db.store().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // APP_URL points at the real port, so links the server makes are followable.
    settings.addr = addr;
    settings.app_url = format!("http://{addr}").parse().expect("url");
    let app = Application::from_listener(listener, settings, store.clone());
    let state = app.state().clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker =
        with_worker.then(|| tokio::spawn(onboard::tasks::run_worker(state.clone(), 4, stop_rx)));
    let (tx, rx) = oneshot::channel();
    let handle = tokio::spawn(async move {
        app.run_until(async {
            let _ = rx.await;
        })
        .await
        .expect("server runs");
    });
    TestApp {
        state,
        addr,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        store,
        db,
        overrides,
        shutdown: Some(tx),
        handle: Some(handle),
        worker_stop: Some(stop_tx),
        worker,
        with_worker,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// An authenticated request with no body.
    pub async fn call(&self, method: reqwest::Method, path: &str, key: &str) -> reqwest::Response {
        self.authed(method, path, key).send().await.unwrap()
    }

    /// An active tenant on the starter plan with a unique email built from `name`.
    pub async fn fresh_tenant(&self, name: &str) -> ActiveTenant {
        self.active_tenant(
            &format!("{name}-{}@example.com", ulid::Ulid::new()),
            "starter",
        )
        .await
    }

    /// `POST /v1/documents` with a JSON document.
    pub async fn try_upload(&self, key: &str, title: &str, content: &str) -> reqwest::Response {
        self.authed(reqwest::Method::POST, "/v1/documents", key)
            .json(&serde_json::json!({"title": title, "content": content, "metadata": {"source": "test"}}))
            .send()
            .await
            .unwrap()
    }

    /// [`TestApp::try_upload`], asserting 201; the stored document.
    pub async fn upload(&self, key: &str, title: &str, content: &str) -> Value {
        let resp = self.try_upload(key, title, content).await;
        assert_eq!(resp.status(), 201, "upload {title}");
        resp.json().await.unwrap()
    }

    /// `POST /v1/query`.
    pub async fn query(&self, key: &str, q: &str, top_k: usize) -> reqwest::Response {
        self.authed(reqwest::Method::POST, "/v1/query", key)
            .json(&serde_json::json!({"query": q, "top_k": top_k}))
            .send()
            .await
            .unwrap()
    }

    /// [`TestApp::query`], asserting 200; the answer.
    pub async fn query_ok(&self, key: &str, q: &str, top_k: usize) -> Value {
        let resp = self.query(key, q, top_k).await;
        assert_eq!(resp.status(), 200, "query {q}");
        resp.json().await.unwrap()
    }

    /// Signs up; the tenant id and its dev checkout session.
    pub async fn checkout(&self, email: &str, plan: &str) -> (String, String) {
        self.checkout_named(email, plan, "Acme").await
    }

    /// [`TestApp::checkout`] for a company name of the test's choosing.
    pub async fn checkout_named(&self, email: &str, plan: &str, company: &str) -> (String, String) {
        let body = self.signup_named(email, plan, company).await;
        let session = body["checkout_url"].as_str().unwrap().rsplit('/').next();
        (
            body["tenant_id"].as_str().unwrap().to_string(),
            session.unwrap().to_string(),
        )
    }

    /// Presses `action` (`pay` or `cancel`) on the dev checkout page of `session`.
    pub async fn dev_checkout(&self, session: &str, action: &str) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/dev/checkout/{session}/{action}")))
            .send()
            .await
            .expect("dev checkout")
    }

    /// Signs up with a fresh email and returns the response body (asserting 201).
    pub async fn signup(&self, email: &str, plan: &str) -> Value {
        self.signup_named(email, plan, "Acme").await
    }

    /// [`TestApp::signup`] for a company name of the test's choosing.
    pub async fn signup_named(&self, email: &str, plan: &str, company: &str) -> Value {
        let resp = self
            .post_json(
                "/signup",
                &serde_json::json!({"email": email, "company_name": company, "password": TEST_PASSWORD, "plan": plan}),
            )
            .await;
        assert_eq!(resp.status(), 201, "signup of {email}");
        resp.json().await.expect("json")
    }

    /// Stops the server, then starts a new one over the same database with other settings (a
    /// later deployment of the same service).
    pub async fn restart_with(mut self, overrides: &[(&str, &str)]) -> TestApp {
        self.overrides = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.restart().await
    }

    /// Stops the server and closes its pool, then starts a new one over the same database.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let db = std::mem::replace(
            &mut self.db,
            TestDb {
                url: String::new(),
                _dir: None,
            },
        );
        start(db, std::mem::take(&mut self.overrides), self.with_worker).await
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.worker_stop.take() {
            let _ = tx.send(true);
        }
        if let Some(w) = self.worker.take() {
            let _ = w.await;
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
        self.store.close().await;
    }
}

/// Asserts an error answer's status and JSON shape, returning the `error` object.
pub async fn assert_error(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    let body: Value = resp.json().await.expect("error body is JSON");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body["error"].clone()
}

impl TestApp {
    /// Delivers `event` to `/webhook/stripe`, signed with the server's webhook secret.
    pub async fn deliver_event(&self, event: &Value) -> reqwest::Response {
        let body = serde_json::to_vec(event).unwrap();
        let secret = secrecy::ExposeSecret::expose_secret(
            self.state
                .webhook_secret
                .as_deref()
                .expect("a webhook secret"),
        )
        .to_string();
        let header =
            onboard::billing::signature::sign(&body, &secret, chrono::Utc::now().timestamp());
        self.client
            .post(self.url("/webhook/stripe"))
            .header("content-type", "application/json")
            .header("stripe-signature", header)
            .body(body)
            .send()
            .await
            .expect("request")
    }

    /// Polls the tenant until it reaches `want`, or panics after `secs`.
    pub async fn wait_for_status(&self, tenant_id: &str, want: &str, secs: u64) -> Value {
        let url = format!("/tenant/{tenant_id}");
        eventually(
            &format!("tenant {tenant_id} reaching {want}"),
            secs,
            || async {
                let body: Value = self.get(&url).await.json().await.unwrap();
                (body["status"] == want).then_some(body)
            },
        )
        .await
    }

    /// The statuses a tenant went through, oldest first.
    pub async fn status_path(&self, id: &onboard::domain::TenantId) -> Vec<String> {
        let history = self.store.status_history(id).await.unwrap();
        history.into_iter().map(|h| h.to_status).collect()
    }
}

/// Polls `probe` every 20 ms until it yields a value; panics naming `what` after `secs`.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A loopback port free right now, for a child process to listen on.
pub fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    probe.local_addr().expect("its address").port()
}

/// An `onboard worker` process over the test's database, killed (SIGKILL) on drop.
pub struct WorkerProcess {
    pub child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl WorkerProcess {
    pub fn start(app: &TestApp, extra: &[(&str, &str)]) -> WorkerProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_onboard"));
        cmd.arg("worker")
            .current_dir(dir.path())
            .env("DATABASE_URL", &app.db.url)
            .env("APP_URL", app.url(""))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        WorkerProcess {
            child: cmd.spawn().expect("start onboard worker"),
            _dir: dir,
        }
    }

    /// SIGKILL: no shutdown code runs, leases are left behind.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A second `onboard serve --no-worker` OS process over the test's database, on its own
/// loopback port, killed on drop.
pub struct ServerProcess {
    pub base: String,
    worker: WorkerProcess,
}

impl ServerProcess {
    pub async fn start(app: &TestApp) -> ServerProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_onboard"));
        cmd.args(["serve", "--no-worker"])
            .current_dir(dir.path())
            .env("DATABASE_URL", &app.db.url)
            .env("ONBOARD_ADDR", format!("127.0.0.1:{port}"))
            .env("APP_URL", app.url(""))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for (k, v) in &app.overrides {
            cmd.env(k, v);
        }
        let server = ServerProcess {
            base: base.clone(),
            worker: WorkerProcess {
                child: cmd.spawn().expect("start onboard serve"),
                _dir: dir,
            },
        };
        let health = format!("{base}/health");
        eventually("the second server process to answer", 30, || async {
            let ok = app
                .client
                .get(&health)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            ok.then_some(())
        })
        .await;
        server
    }

    pub fn pid(&self) -> u32 {
        self.worker.child.id()
    }
}

/// A tenant that paid and is `active`, with the key its success page showed.
pub struct ActiveTenant {
    pub tenant_id: String,
    pub email: String,
    pub password: String,
    pub api_key: String,
}

pub const TEST_PASSWORD: &str = "SecurePass123!";

impl TestApp {
    /// Signs `email` up on `plan`, pays through the dev checkout and waits until `active`;
    /// returns the first API key as revealed (once) by the onboarding status endpoint.
    pub async fn active_tenant(&self, email: &str, plan: &str) -> ActiveTenant {
        self.active_tenant_named(email, plan, "Acme").await.0
    }

    /// [`TestApp::active_tenant`] for a company name of the test's choosing; also the dev
    /// checkout session it paid through (the success page's `session_id`).
    pub async fn active_tenant_named(
        &self,
        email: &str,
        plan: &str,
        company: &str,
    ) -> (ActiveTenant, String) {
        let (tenant_id, session) = self.checkout_named(email, plan, company).await;
        let resp = self.dev_checkout(&session, "pay").await;
        assert_eq!(resp.status(), 303, "dev checkout pay");
        self.wait_for_status(&tenant_id, "active", 30).await;
        let progress: Value = self
            .get(&format!("/onboarding/status?session_id={session}"))
            .await
            .json()
            .await
            .unwrap();
        let api_key = progress["api_key"]
            .as_str()
            .expect("the first key is revealed once")
            .to_string();
        let tenant = ActiveTenant {
            tenant_id,
            email: email.to_string(),
            password: TEST_PASSWORD.to_string(),
            api_key,
        };
        (tenant, session)
    }

    /// The outbox's emails of `kind`, newest first, of one tenant or of all.
    pub async fn emails(&self, tenant_id: Option<&str>, kind: &str) -> Vec<StoredEmail> {
        let mut all = self.store.list_emails(tenant_id, 500).await.unwrap();
        all.retain(|e| e.kind == kind);
        all
    }

    /// A request with the tenant's key as Bearer.
    pub fn authed(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
    ) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(key)
    }
}
