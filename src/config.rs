//! One `Settings` struct, layered: built-in defaults < `onboard.toml` < `.env` < environment.
//!
//! Every source is reduced to raw strings keyed by the seed's environment names, then each
//! setting is parsed exactly once here, so a bad value stops start-up with one line naming the
//! setting and where it came from. (figment was considered; its typed layering turns an env value
//! like `ADMIN_TOKEN=123456` into a number and then refuses it as a string.)

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;

use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// The JWT secret used when none is configured: fine on a laptop, refused in production.
pub const DEV_JWT_SECRET: &str = "onboard-development-secret-change-me";

/// The postal address in emails' footers when none is configured: a placeholder, refused in
/// production (anti-spam law and mailbox providers want the sender's real address).
pub const DEV_POSTAL_ADDRESS: &str = "onboard, 1 Example Street, Springfield, 00000";

/// Every setting we read, with its default ("" = unset) and what it does.
pub const SETTINGS: &[(&str, &str, &str)] = &[
    (
        "APP_ENV",
        "development",
        "development | production; production refuses unsafe defaults",
    ),
    (
        "ONBOARD_ADDR",
        "127.0.0.1:8000",
        "address the HTTP server listens on",
    ),
    (
        "APP_URL",
        "http://127.0.0.1:8000",
        "public base URL used in links, emails and Stripe redirects",
    ),
    (
        "DATABASE_URL",
        "sqlite://onboard.db",
        "sqlite://PATH (created if missing) or postgres://…",
    ),
    ("DATABASE_MAX_CONNECTIONS", "10", "connection pool size"),
    (
        "STRIPE_SECRET_KEY",
        "",
        "Stripe secret key; unset = built-in dev checkout (development only: required in production)",
    ),
    (
        "STRIPE_WEBHOOK_SECRET",
        "",
        "whsec_… secret for Stripe-Signature; unset in development = generated",
    ),
    (
        "STRIPE_PRICE_ID_STARTER",
        "",
        "Stripe price id for the starter plan",
    ),
    (
        "STRIPE_PRICE_ID_PRO",
        "",
        "Stripe price id for the pro plan",
    ),
    (
        "STRIPE_PRICE_ID_ENTERPRISE",
        "",
        "Stripe price id for the enterprise plan",
    ),
    (
        "STRIPE_API_BASE",
        "https://api.stripe.com",
        "Stripe API base URL",
    ),
    (
        "PINECONE_API_KEY",
        "",
        "Pinecone API key; unset = embedded vector store",
    ),
    (
        "PINECONE_INDEX_HOST",
        "",
        "Pinecone index host (data plane)",
    ),
    (
        "SENDGRID_API_KEY",
        "",
        "SendGrid API key; unset = outbox email transport",
    ),
    (
        "SENDGRID_FROM_EMAIL",
        "onboarding@onboard.local",
        "sender address of every email",
    ),
    (
        "SENDGRID_FROM_NAME",
        "Onboard",
        "sender name of every email",
    ),
    (
        "SENDGRID_API_BASE",
        "https://api.sendgrid.com",
        "SendGrid API base URL",
    ),
    (
        "SMTP_URL",
        "",
        "smtp://host:port (plain, local relays), smtp://user:pass@host:port?tls=required (STARTTLS) or smtps://user:pass@host (TLS); set = SMTP email transport",
    ),
    (
        "EMAIL_TRANSPORT",
        "",
        "outbox | smtp | sendgrid; unset = smtp with SMTP_URL, sendgrid with SENDGRID_API_KEY, else outbox (production needs it set explicitly to use the outbox)",
    ),
    (
        "EMAIL_REPLY_TO",
        "",
        "Reply-To of every email; unset = SENDGRID_FROM_EMAIL",
    ),
    (
        "EMAIL_POSTAL_ADDRESS",
        DEV_POSTAL_ADDRESS,
        "the sender's postal address, in every email's footer (a placeholder by default: production must set it)",
    ),
    (
        "JWT_SECRET",
        DEV_JWT_SECRET,
        "HMAC secret for API keys and signed tokens",
    ),
    (
        "JWT_EXPIRY_HOURS",
        "24",
        "lifetime of a signed-in session, in hours",
    ),
    (
        "WELCOME_LINK_HOURS",
        "48",
        "how long the welcome email's single-use sign-in link works, in hours (1-168)",
    ),
    (
        "PROVISIONING_TIMEOUT_SECONDS",
        "300",
        "a tenant provisioning longer than this is marked failed",
    ),
    (
        "MAX_PROVISIONING_RETRIES",
        "3",
        "attempts of a provisioning step before the tenant fails",
    ),
    (
        "SAMPLE_DATA_ENABLED",
        "true",
        "load the sample documents into new workspaces",
    ),
    (
        "SIGNUP_RATE_LIMIT_PER_HOUR",
        "10",
        "signups allowed per client IP per hour (0 = no limit)",
    ),
    (
        "EVENT_RETENTION_DAYS",
        "90",
        "days raw activation events and Stripe webhook payloads are kept (their counts live on in daily aggregates)",
    ),
    (
        "WIZARD_SPLIT",
        "50",
        "percentage of new tenants whose setup wizard is the quick variant (the rest get guided)",
    ),
    (
        "TRIAL_DAYS",
        "0",
        "free trial days added to each Stripe checkout (0 = no trial, at most 730)",
    ),
    (
        "DEPROVISION_GRACE_DAYS",
        "30",
        "days after cancellation before a workspace and its personal data are erased",
    ),
    (
        "AUDIT_RETENTION_DAYS",
        "400",
        "days an audit log entry is kept before the retention job deletes it (1-3650)",
    ),
    (
        "TRUSTED_PROXIES",
        "",
        "comma-separated CIDRs whose X-Forwarded-For is believed",
    ),
    (
        "ADMIN_TOKEN",
        "",
        "bearer token for operator endpoints; unset = operator endpoints closed",
    ),
    (
        "OPERATOR_EMAIL",
        "operators@onboard.local",
        "where sales and operator notifications go",
    ),
    (
        "AT_RISK_DIGEST_HOUR",
        "8",
        "UTC hour (0-23) from which the daily digest of stuck customers is emailed to OPERATOR_EMAIL (once a day, only when a customer is newly stuck)",
    ),
    (
        "JOB_BACKOFF_BASE_MS",
        "1000",
        "first retry delay of a failed job; doubles each attempt",
    ),
    (
        "WORKER_CONCURRENCY",
        "0",
        "jobs run at once per worker process; 0 = 4 on SQLite (one writer), 8 on PostgreSQL",
    ),
    (
        "EMBEDDINGS_URL",
        "",
        "OpenAI-compatible embeddings API base (POST {url}/embeddings); unset = built-in embedder",
    ),
    (
        "EMBEDDINGS_API_KEY",
        "",
        "bearer key for EMBEDDINGS_URL, if it needs one",
    ),
    (
        "EMBEDDINGS_MODEL",
        "text-embedding-3-small",
        "model name sent to EMBEDDINGS_URL",
    ),
    (
        "EMBEDDINGS_DIMENSION",
        "1536",
        "dimensions of the vectors EMBEDDINGS_URL returns (checked on every answer)",
    ),
    (
        "PLAN_LIMITS",
        "",
        "overrides of the plan table, e.g. starter.max_documents=2000,pro.max_queries_per_month=-1 (-1 = unlimited)",
    ),
    (
        "JOB_LEASE_SECONDS",
        "60",
        "a running job not finished within this is presumed crashed and taken again (a live job renews it)",
    ),
    (
        "JWT_KEY_ID",
        "k1",
        "the `kid` of keys signed with JWT_SECRET (a name, never derived from the secret)",
    ),
    (
        "JWT_PREVIOUS_SECRETS",
        "",
        "comma-separated kid:secret pairs of earlier signing secrets whose keys still verify (rotation)",
    ),
    (
        "METRICS_TOKEN",
        "",
        "bearer token required by GET /metrics; unset = /metrics is open",
    ),
    (
        "WORKER_METRICS_ADDR",
        "",
        "where a standalone `onboard worker` serves GET /metrics (host:port, METRICS_TOKEN applies); unset = it serves nothing",
    ),
    (
        "LOGIN_FAILURES_PER_IP",
        "30",
        "failed sign-ins allowed per client address per 15 minutes, across all emails (0 = no limit)",
    ),
    (
        "HASH_QUEUE_MAX",
        "0",
        "password hashes waiting or running at once before sign-ins (half) and signups (all) get 503; 0 = 8 per core",
    ),
    (
        "MAX_API_KEYS",
        "25",
        "live API keys a tenant may hold at once",
    ),
    (
        "VECTOR_CACHE_MB",
        "256",
        "memory for the embedded vector store's in-memory copies of namespaces, across all tenants",
    ),
    (
        "FIRST_KEY_REVEAL_MINUTES",
        "10",
        "how long after activation the success page may show the first API key (once)",
    ),
    (
        "HTTP_HEADER_TIMEOUT_SECONDS",
        "10",
        "a client must send a request's headers within this",
    ),
    (
        "HTTP_REQUEST_TIMEOUT_SECONDS",
        "60",
        "a request (body included) must be read and answered within this (408 otherwise)",
    ),
];

/// Where the service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

/// The development aids that are on, each only on a loopback listen address (or with an
/// explicit `APP_ENV=development`) and only while the real thing is not configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DevAids {
    /// The built-in checkout page (no `STRIPE_SECRET_KEY`).
    pub checkout: bool,
    /// `/dev/mailbox` (the email transport is the outbox).
    pub mailbox: bool,
    /// A webhook secret derived from `JWT_SECRET` (no `STRIPE_WEBHOOK_SECRET`).
    pub derived_webhook_secret: bool,
    /// On for a non-loopback address because `APP_ENV=development` was set explicitly.
    pub forced: bool,
}

impl DevAids {
    pub fn any(&self) -> bool {
        self.checkout || self.mailbox || self.derived_webhook_secret
    }
}

/// A signing secret of API keys and the key id (`kid`) that names it.
#[derive(Debug, Clone)]
pub struct SigningSecret {
    pub kid: String,
    pub secret: SecretString,
}

/// All configuration, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub app_env: AppEnv,
    /// Whether `APP_ENV` was set (by any layer) rather than defaulted.
    pub app_env_explicit: bool,
    pub addr: SocketAddr,
    /// Where `onboard worker` serves `/metrics` (None: nowhere; `serve` has its own).
    pub worker_metrics_addr: Option<SocketAddr>,
    pub app_url: Url,
    pub database_url: String,
    pub database_max_connections: u32,
    pub stripe_secret_key: Option<SecretString>,
    pub stripe_webhook_secret: Option<SecretString>,
    pub stripe_price_id_starter: Option<String>,
    pub stripe_price_id_pro: Option<String>,
    pub stripe_price_id_enterprise: Option<String>,
    pub stripe_api_base: Url,
    pub pinecone_api_key: Option<SecretString>,
    pub pinecone_index_host: Option<String>,
    pub sendgrid_api_key: Option<SecretString>,
    pub sendgrid_from_email: String,
    pub sendgrid_from_name: String,
    pub sendgrid_api_base: Url,
    pub smtp_url: Option<SecretString>,
    /// `EMAIL_TRANSPORT` as configured (None: chosen from what is set).
    pub email_transport_setting: Option<String>,
    pub email_reply_to: Option<String>,
    pub email_postal_address: String,
    pub jwt_secret: SecretString,
    pub jwt_expiry_hours: u32,
    /// How long the welcome email's sign-in link works: the email may be opened a day or two
    /// after the payment, so longer than a requested link's 15 minutes; single use all the same.
    pub welcome_link_hours: u32,
    pub provisioning_timeout_seconds: u64,
    pub max_provisioning_retries: u32,
    pub sample_data_enabled: bool,
    pub signup_rate_limit_per_hour: u32,
    /// Percentage of tenants assigned the quick wizard (0–100).
    pub wizard_split: u32,
    pub event_retention_days: u32,
    /// `subscription_data[trial_period_days]` of each checkout; 0 = none.
    pub trial_days: u32,
    /// Days between cancellation and erasure.
    pub deprovision_grace_days: u32,
    /// Days an audit log entry is kept.
    pub audit_retention_days: u32,
    pub trusted_proxies: Vec<IpNet>,
    pub admin_token: Option<SecretString>,
    pub operator_email: String,
    /// The UTC hour (0–23) from which each day's digest of stuck customers is sent.
    pub at_risk_digest_hour: u32,
    pub job_backoff_base_ms: u64,
    pub job_lease_seconds: u64,
    pub worker_concurrency: usize,
    pub embeddings_url: Option<Url>,
    pub embeddings_api_key: Option<SecretString>,
    pub embeddings_model: String,
    pub embeddings_dimension: usize,
    pub plans: crate::domain::plan::PlanTable,
    pub jwt_key_id: String,
    pub jwt_previous_secrets: Vec<SigningSecret>,
    pub metrics_token: Option<SecretString>,
    pub login_failures_per_ip: u32,
    pub hash_queue_max: usize,
    pub max_api_keys: u32,
    pub vector_cache_mb: u64,
    pub first_key_reveal_minutes: u32,
    pub http_header_timeout_seconds: u64,
    pub http_request_timeout_seconds: u64,
}

/// A setting that could not be used, named.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {key}{source_hint}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub source_hint: String,
    pub message: String,
}

/// Raw values by setting name, each remembering which layer supplied it.
#[derive(Debug, Clone, Default)]
pub struct RawSettings {
    values: BTreeMap<String, (String, &'static str)>,
}

impl RawSettings {
    /// Sets one value (later calls win), recording its origin.
    pub fn set(&mut self, key: &str, value: impl Into<String>, origin: &'static str) -> &mut Self {
        self.values
            .insert(key.to_ascii_uppercase(), (value.into(), origin));
        self
    }

    /// Reads `onboard.toml` (or `$ONBOARD_CONFIG`), then `.env`, then the process environment.
    pub fn from_sources() -> Result<Self, ConfigError> {
        let mut raw = RawSettings::default();
        let file = std::env::var("ONBOARD_CONFIG").unwrap_or_else(|_| "onboard.toml".into());
        raw.merge_toml_file(Path::new(&file))?;
        if let Ok(iter) = dotenvy::from_filename_iter(".env") {
            for item in iter {
                let (k, v) = item.map_err(|e| ConfigError {
                    key: ".env".into(),
                    source_hint: String::new(),
                    message: e.to_string(),
                })?;
                raw.set(&k, v, ".env");
            }
        }
        for (key, _, _) in SETTINGS {
            if let Ok(v) = std::env::var(key) {
                raw.set(key, v, "environment");
            }
        }
        Ok(raw)
    }

    fn merge_toml_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let Ok(text) = std::fs::read_to_string(path) else {
            return Ok(());
        };
        let err = |message: String| ConfigError {
            key: path.display().to_string(),
            source_hint: String::new(),
            message,
        };
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| err(e.to_string()))?;
        for (k, v) in table {
            let s = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| i.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                other => return Err(err(format!("{k}: unsupported value {other}"))),
            };
            self.set(&k, s, "onboard.toml");
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Option<(&str, &'static str)> {
        self.values
            .get(key)
            .map(|(v, o)| (v.as_str(), *o))
            .filter(|(v, _)| !v.trim().is_empty())
    }
}

impl Settings {
    /// Loads every layer and validates the result.
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_raw(&RawSettings::from_sources()?)
    }

    /// Builds settings from raw values over the built-in defaults.
    pub fn from_raw(raw: &RawSettings) -> Result<Self, ConfigError> {
        let p = Parser { raw };
        let app_env = match p.string("APP_ENV").to_ascii_lowercase().as_str() {
            "development" | "dev" => AppEnv::Development,
            "production" | "prod" => AppEnv::Production,
            other => {
                return Err(p.error(
                    "APP_ENV",
                    format!("'{other}' is not development or production"),
                ));
            }
        };
        let s = Settings {
            app_env,
            app_env_explicit: raw.get("APP_ENV").is_some(),
            addr: p.parse("ONBOARD_ADDR")?,
            worker_metrics_addr: match p.optional("WORKER_METRICS_ADDR") {
                None => None,
                Some(_) => Some(p.parse("WORKER_METRICS_ADDR")?),
            },
            app_url: p.url("APP_URL")?,
            database_url: p.database_url()?,
            database_max_connections: p.parse("DATABASE_MAX_CONNECTIONS")?,
            stripe_secret_key: p.secret("STRIPE_SECRET_KEY"),
            stripe_webhook_secret: p.secret("STRIPE_WEBHOOK_SECRET"),
            stripe_price_id_starter: p.optional("STRIPE_PRICE_ID_STARTER"),
            stripe_price_id_pro: p.optional("STRIPE_PRICE_ID_PRO"),
            stripe_price_id_enterprise: p.optional("STRIPE_PRICE_ID_ENTERPRISE"),
            stripe_api_base: p.url("STRIPE_API_BASE")?,
            pinecone_api_key: p.secret("PINECONE_API_KEY"),
            pinecone_index_host: p.optional("PINECONE_INDEX_HOST"),
            sendgrid_api_key: p.secret("SENDGRID_API_KEY"),
            sendgrid_from_email: p.string("SENDGRID_FROM_EMAIL"),
            sendgrid_from_name: p.string("SENDGRID_FROM_NAME"),
            sendgrid_api_base: p.url("SENDGRID_API_BASE")?,
            smtp_url: p.secret("SMTP_URL"),
            email_transport_setting: p
                .optional("EMAIL_TRANSPORT")
                .map(|t| t.to_ascii_lowercase()),
            email_reply_to: p.optional("EMAIL_REPLY_TO"),
            email_postal_address: p.string("EMAIL_POSTAL_ADDRESS"),
            jwt_secret: SecretString::from(p.string("JWT_SECRET")),
            jwt_expiry_hours: p.parse("JWT_EXPIRY_HOURS")?,
            welcome_link_hours: p.bounded("WELCOME_LINK_HOURS", 1, 168)?,
            provisioning_timeout_seconds: p.parse("PROVISIONING_TIMEOUT_SECONDS")?,
            max_provisioning_retries: p.parse("MAX_PROVISIONING_RETRIES")?,
            sample_data_enabled: p.boolean("SAMPLE_DATA_ENABLED")?,
            signup_rate_limit_per_hour: p.parse("SIGNUP_RATE_LIMIT_PER_HOUR")?,
            trial_days: p.bounded("TRIAL_DAYS", 0, 730)?,
            wizard_split: p.bounded("WIZARD_SPLIT", 0, 100)?,
            event_retention_days: p.bounded("EVENT_RETENTION_DAYS", 1, 3650)?,
            deprovision_grace_days: p.bounded("DEPROVISION_GRACE_DAYS", 0, 3650)?,
            audit_retention_days: p.bounded("AUDIT_RETENTION_DAYS", 1, 3650)?,
            trusted_proxies: p.cidrs("TRUSTED_PROXIES")?,
            admin_token: p.secret("ADMIN_TOKEN"),
            operator_email: p.string("OPERATOR_EMAIL"),
            at_risk_digest_hour: p.bounded("AT_RISK_DIGEST_HOUR", 0, 23)?,
            job_backoff_base_ms: p.parse("JOB_BACKOFF_BASE_MS")?,
            job_lease_seconds: p.parse("JOB_LEASE_SECONDS")?,
            worker_concurrency: p.parse("WORKER_CONCURRENCY")?,
            embeddings_url: match p.optional("EMBEDDINGS_URL") {
                Some(_) => Some(p.url("EMBEDDINGS_URL")?),
                None => None,
            },
            embeddings_api_key: p.secret("EMBEDDINGS_API_KEY"),
            embeddings_model: p.string("EMBEDDINGS_MODEL"),
            embeddings_dimension: p.parse("EMBEDDINGS_DIMENSION")?,
            plans: crate::domain::plan::PlanTable::default()
                .with_overrides(&p.string("PLAN_LIMITS"))
                .map_err(|m| p.error("PLAN_LIMITS", m))?,
            jwt_key_id: p.string("JWT_KEY_ID"),
            jwt_previous_secrets: p.signing_secrets("JWT_PREVIOUS_SECRETS")?,
            metrics_token: p.secret("METRICS_TOKEN"),
            login_failures_per_ip: p.parse("LOGIN_FAILURES_PER_IP")?,
            hash_queue_max: p.parse("HASH_QUEUE_MAX")?,
            max_api_keys: p.parse("MAX_API_KEYS")?,
            vector_cache_mb: p.parse("VECTOR_CACHE_MB")?,
            first_key_reveal_minutes: p.parse("FIRST_KEY_REVEAL_MINUTES")?,
            http_header_timeout_seconds: p.parse("HTTP_HEADER_TIMEOUT_SECONDS")?,
            http_request_timeout_seconds: p.parse("HTTP_REQUEST_TIMEOUT_SECONDS")?,
        };
        s.validate(&p)?;
        Ok(s)
    }

    fn validate(&self, p: &Parser<'_>) -> Result<(), ConfigError> {
        if self.database_max_connections == 0 {
            return Err(p.error("DATABASE_MAX_CONNECTIONS", "must be at least 1".into()));
        }
        if self.provisioning_timeout_seconds == 0 {
            return Err(p.error("PROVISIONING_TIMEOUT_SECONDS", "must be at least 1".into()));
        }
        if self.jwt_expiry_hours == 0 {
            return Err(p.error("JWT_EXPIRY_HOURS", "must be at least 1".into()));
        }
        if self.job_lease_seconds == 0 {
            return Err(p.error("JOB_LEASE_SECONDS", "must be at least 1".into()));
        }
        if self.embeddings_dimension == 0 || self.embeddings_dimension > 20_000 {
            return Err(p.error("EMBEDDINGS_DIMENSION", "must be between 1 and 20000".into()));
        }
        if self.pinecone_api_key.is_some() != self.pinecone_index_host.is_some() {
            return Err(p.error(
                "PINECONE_INDEX_HOST",
                "PINECONE_API_KEY and PINECONE_INDEX_HOST must be set together (or neither, for the embedded vector store)".into(),
            ));
        }
        // The clients themselves are built once, by `AppState::new`; here only their settings
        // are checked, so commands that never call out do not build them at all.
        if let (Some(key), Some(host)) = (&self.pinecone_api_key, &self.pinecone_index_host) {
            crate::search::PineconeClient::check(host, key)
                .map_err(|m| p.error("PINECONE_INDEX_HOST", m))?;
        }
        if let Some(url) = &self.embeddings_url {
            crate::search::EmbeddingsClient::check(
                url.as_str(),
                self.embeddings_api_key.as_ref(),
                &self.embeddings_model,
                Some(self.embeddings_dimension),
            )
            .map_err(|m| p.error("EMBEDDINGS_URL", m))?;
        }
        if self.max_provisioning_retries == 0 {
            return Err(p.error("MAX_PROVISIONING_RETRIES", "must be at least 1".into()));
        }
        if self.jwt_secret.expose_secret().len() < 16 {
            return Err(p.error("JWT_SECRET", "must be at least 16 characters".into()));
        }
        if !valid_kid(&self.jwt_key_id) {
            return Err(p.error(
                "JWT_KEY_ID",
                "must be 1-64 letters, digits, '-', '_' or '.'".into(),
            ));
        }
        if self
            .jwt_previous_secrets
            .iter()
            .any(|s| s.kid == self.jwt_key_id)
        {
            return Err(p.error(
                "JWT_PREVIOUS_SECRETS",
                format!(
                    "names the current JWT_KEY_ID '{}'; give each signing secret its own kid",
                    self.jwt_key_id
                ),
            ));
        }
        for (key, value) in [
            ("MAX_API_KEYS", self.max_api_keys as u64),
            ("VECTOR_CACHE_MB", self.vector_cache_mb),
            (
                "FIRST_KEY_REVEAL_MINUTES",
                u64::from(self.first_key_reveal_minutes),
            ),
            (
                "HTTP_HEADER_TIMEOUT_SECONDS",
                self.http_header_timeout_seconds,
            ),
            (
                "HTTP_REQUEST_TIMEOUT_SECONDS",
                self.http_request_timeout_seconds,
            ),
        ] {
            if value == 0 {
                return Err(p.error(key, "must be at least 1".into()));
            }
        }
        if self.app_env == AppEnv::Production {
            if self.jwt_secret.expose_secret() == DEV_JWT_SECRET {
                return Err(p.error(
                    "JWT_SECRET",
                    "the built-in development secret cannot be used with APP_ENV=production; set a long random value".into(),
                ));
            }
            // Production takes real payments: the dev checkout (which marks anyone paid at the
            // press of a button) is never served there, so Stripe must be fully configured.
            // Enterprise signups skip checkout, so they need no price.
            for (key, set) in [
                ("STRIPE_SECRET_KEY", self.stripe_secret_key.is_some()),
                (
                    "STRIPE_WEBHOOK_SECRET",
                    self.stripe_webhook_secret.is_some(),
                ),
                (
                    "STRIPE_PRICE_ID_STARTER",
                    self.stripe_price_id_starter.is_some(),
                ),
                ("STRIPE_PRICE_ID_PRO", self.stripe_price_id_pro.is_some()),
            ] {
                if !set {
                    return Err(p.error(
                        key,
                        "required with APP_ENV=production (the dev checkout is for development only)"
                            .into(),
                    ));
                }
            }
            if self.email_postal_address == DEV_POSTAL_ADDRESS {
                return Err(p.error(
                    "EMAIL_POSTAL_ADDRESS",
                    "required with APP_ENV=production: every email's footer shows the sender's real postal address, not the development placeholder".into(),
                ));
            }
            if self
                .admin_token
                .as_ref()
                .is_some_and(|t| t.expose_secret().len() < 16)
            {
                return Err(p.error(
                    "ADMIN_TOKEN",
                    "must be at least 16 characters in production".into(),
                ));
            }
        }
        match self.email_transport_setting.as_deref() {
            None | Some("outbox") => {}
            Some("smtp") if self.smtp_url.is_none() => {
                return Err(p.error("SMTP_URL", "required with EMAIL_TRANSPORT=smtp".into()));
            }
            Some("sendgrid") if self.sendgrid_api_key.is_none() => {
                return Err(p.error(
                    "SENDGRID_API_KEY",
                    "required with EMAIL_TRANSPORT=sendgrid".into(),
                ));
            }
            Some("smtp" | "sendgrid") => {}
            Some(other) => {
                return Err(p.error(
                    "EMAIL_TRANSPORT",
                    format!("'{other}' is not outbox, smtp or sendgrid"),
                ));
            }
        }
        if let Some(url) = &self.smtp_url {
            check_smtp_url(url.expose_secret()).map_err(|m| p.error("SMTP_URL", m))?;
        }
        if self.app_env == AppEnv::Production
            && self.email_transport() == "outbox"
            && self.email_transport_setting.as_deref() != Some("outbox")
        {
            return Err(p.error(
                "EMAIL_TRANSPORT",
                "with APP_ENV=production the outbox transport sends nothing: set SMTP_URL or SENDGRID_API_KEY, or EMAIL_TRANSPORT=outbox to keep emails only in the database".into(),
            ));
        }
        let loopback = self.addr.ip().is_loopback();
        // A public address with the published development secret would let anyone mint API
        // keys and, in development, forge webhooks.
        if !loopback && self.jwt_secret.expose_secret() == DEV_JWT_SECRET {
            return Err(p.error(
                "JWT_SECRET",
                format!(
                    "the built-in development secret cannot be used on a non-loopback address (ONBOARD_ADDR={}); set a long random value",
                    self.addr
                ),
            ));
        }
        if self.stripe_secret_key.is_some() && self.stripe_webhook_secret.is_none() {
            return Err(p.error(
                "STRIPE_WEBHOOK_SECRET",
                "required with STRIPE_SECRET_KEY: Stripe's events cannot be verified without it"
                    .into(),
            ));
        }
        if !loopback && !self.app_env_explicit && self.stripe_secret_key.is_none() {
            return Err(p.error(
                "STRIPE_SECRET_KEY",
                format!(
                    "required on a non-loopback address (ONBOARD_ADDR={}): the dev checkout marks anyone paid; set APP_ENV=development to use it there anyway",
                    self.addr
                ),
            ));
        }
        Ok(())
    }

    /// The Stripe price of a plan, when configured.
    pub fn stripe_price(&self, plan: crate::domain::Plan) -> Option<&str> {
        match plan {
            crate::domain::Plan::Starter => self.stripe_price_id_starter.as_deref(),
            crate::domain::Plan::Pro => self.stripe_price_id_pro.as_deref(),
            crate::domain::Plan::Enterprise => self.stripe_price_id_enterprise.as_deref(),
        }
    }

    /// Job loops per worker process (`WORKER_CONCURRENCY`, or the backend's default).
    pub fn worker_concurrency(&self) -> usize {
        match self.worker_concurrency {
            0 if self.database_url.starts_with("sqlite:") => 4,
            0 => 8,
            n => n,
        }
    }

    /// Whether this is a production deployment.
    pub fn is_production(&self) -> bool {
        self.app_env == AppEnv::Production
    }

    /// Which development aids are on: never in production; on a loopback listen address, or
    /// anywhere with an explicit `APP_ENV=development` (which start-up then warns about); each
    /// only while the real thing is not configured.
    pub fn dev_aids(&self) -> DevAids {
        let loopback = self.addr.ip().is_loopback();
        let allowed = !self.is_production() && (loopback || self.app_env_explicit);
        let aids = DevAids {
            checkout: allowed && self.stripe_secret_key.is_none(),
            mailbox: allowed && self.email_transport() == "outbox",
            derived_webhook_secret: allowed && self.stripe_webhook_secret.is_none(),
            forced: false,
        };
        DevAids {
            forced: !loopback && aids.any(),
            ..aids
        }
    }

    /// The configured email transport: `EMAIL_TRANSPORT`, or else `smtp` (`SMTP_URL`),
    /// `sendgrid` (`SENDGRID_API_KEY`) or `outbox`.
    pub fn email_transport(&self) -> &'static str {
        match self.email_transport_setting.as_deref() {
            Some("smtp") => return "smtp",
            Some("sendgrid") => return "sendgrid",
            Some("outbox") => return "outbox",
            _ => {}
        }
        if self.smtp_url.is_some() {
            "smtp"
        } else if self.sendgrid_api_key.is_some() {
            "sendgrid"
        } else {
            "outbox"
        }
    }

    /// The API-key signing secrets: the current one first, then earlier ones still accepted.
    pub fn signing_secrets(&self) -> Vec<SigningSecret> {
        let mut all = vec![SigningSecret {
            kid: self.jwt_key_id.clone(),
            secret: self.jwt_secret.clone(),
        }];
        all.extend(self.jwt_previous_secrets.iter().cloned());
        all
    }

    /// Password hashes that may wait or run at once (`HASH_QUEUE_MAX`, or 8 per core).
    pub fn hash_queue_max(&self) -> usize {
        match self.hash_queue_max {
            0 => 8 * std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }

    /// Settings for tests and tools: defaults with the given overrides.
    pub fn with_overrides(pairs: &[(&str, &str)]) -> Result<Self, ConfigError> {
        let mut raw = RawSettings::default();
        for (k, v) in pairs {
            raw.set(k, *v, "override");
        }
        Self::from_raw(&raw)
    }
}

/// An SMTP URL the SMTP transport can use: `smtp://` or `smtps://` with a host, and `tls`
/// (when given) `required` or `opportunistic`. Credentials are not echoed in the message.
fn check_smtp_url(url: &str) -> Result<(), String> {
    let parsed = Url::parse(url).map_err(|_| "not a URL: use smtp://host:port".to_string())?;
    if !matches!(parsed.scheme(), "smtp" | "smtps") {
        return Err(format!(
            "the scheme '{}' is not smtp or smtps",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if let Some((_, tls)) = parsed.query_pairs().find(|(k, _)| k == "tls")
        && !matches!(tls.as_ref(), "required" | "opportunistic")
    {
        return Err(format!("tls={tls} is not required or opportunistic"));
    }
    Ok(())
}

/// A key id is a short name: letters, digits, `-`, `_`, `.`.
fn valid_kid(kid: &str) -> bool {
    (1..=64).contains(&kid.len())
        && kid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

struct Parser<'a> {
    raw: &'a RawSettings,
}

impl Parser<'_> {
    fn default_of(key: &str) -> &'static str {
        SETTINGS
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, d, _)| *d)
            .unwrap_or("")
    }

    fn value(&self, key: &str) -> (String, &'static str) {
        match self.raw.get(key) {
            Some((v, origin)) => (v.trim().to_string(), origin),
            None => (Self::default_of(key).to_string(), "default"),
        }
    }

    fn error(&self, key: &str, message: String) -> ConfigError {
        let (_, origin) = self.value(key);
        ConfigError {
            key: key.to_string(),
            source_hint: format!(" (from {origin})"),
            message,
        }
    }

    fn string(&self, key: &str) -> String {
        self.value(key).0
    }

    fn optional(&self, key: &str) -> Option<String> {
        Some(self.string(key)).filter(|v| !v.is_empty())
    }

    fn secret(&self, key: &str) -> Option<SecretString> {
        self.optional(key).map(SecretString::from)
    }

    fn parse<T: FromStr>(&self, key: &str) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.string(key);
        v.parse::<T>()
            .map_err(|e| self.error(key, format!("'{v}' is not valid here: {e}")))
    }

    /// A whole number within `min..=max`.
    fn bounded(&self, key: &str, min: u32, max: u32) -> Result<u32, ConfigError> {
        let n: u32 = self.parse(key)?;
        if !(min..=max).contains(&n) {
            return Err(self.error(key, format!("'{n}' is out of range {min}..={max}")));
        }
        Ok(n)
    }

    fn boolean(&self, key: &str) -> Result<bool, ConfigError> {
        match self.string(key).to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            other => Err(self.error(key, format!("'{other}' is not true or false"))),
        }
    }

    fn url(&self, key: &str) -> Result<Url, ConfigError> {
        let v = self.string(key);
        let url =
            Url::parse(&v).map_err(|e| self.error(key, format!("'{v}' is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(self.error(key, format!("'{v}' must be an http(s) URL with a host")));
        }
        Ok(url)
    }

    fn database_url(&self) -> Result<String, ConfigError> {
        let v = self.string("DATABASE_URL");
        let ok = v.starts_with("sqlite:")
            || v.starts_with("postgres://")
            || v.starts_with("postgresql://");
        if !ok {
            return Err(self.error(
                "DATABASE_URL",
                format!("'{v}' must start with sqlite:, postgres:// or postgresql://"),
            ));
        }
        Ok(v)
    }

    /// `kid:secret,kid:secret`.
    fn signing_secrets(&self, key: &str) -> Result<Vec<SigningSecret>, ConfigError> {
        let mut out: Vec<SigningSecret> = Vec::new();
        for item in self
            .string(key)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let Some((kid, secret)) = item.split_once(':') else {
                return Err(self.error(key, "each entry must be kid:secret".into()));
            };
            let (kid, secret) = (kid.trim(), secret.trim());
            if !valid_kid(kid) {
                return Err(self.error(
                    key,
                    format!("'{kid}' is not a key id (1-64 letters, digits, '-', '_' or '.')"),
                ));
            }
            if secret.len() < 16 {
                return Err(self.error(
                    key,
                    format!("the secret of kid '{kid}' must be at least 16 characters"),
                ));
            }
            if out.iter().any(|s| s.kid == kid) {
                return Err(self.error(key, format!("kid '{kid}' is listed twice")));
            }
            out.push(SigningSecret {
                kid: kid.to_string(),
                secret: SecretString::from(secret.to_string()),
            });
        }
        Ok(out)
    }

    fn cidrs(&self, key: &str) -> Result<Vec<IpNet>, ConfigError> {
        self.string(key)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| self.error(key, format!("'{s}' is not an IP address or CIDR")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_embedded() {
        let s = Settings::with_overrides(&[]).unwrap();
        assert_eq!(s.database_url, "sqlite://onboard.db");
        assert_eq!(s.addr.to_string(), "127.0.0.1:8000");
        assert_eq!(s.signup_rate_limit_per_hour, 10);
        assert_eq!(s.provisioning_timeout_seconds, 300);
        assert!(s.sample_data_enabled);
        assert!(s.stripe_secret_key.is_none());
    }

    #[test]
    fn bad_number_names_the_setting_and_origin() {
        let mut raw = RawSettings::default();
        raw.set("SIGNUP_RATE_LIMIT_PER_HOUR", "ten", "environment");
        let e = Settings::from_raw(&raw).unwrap_err().to_string();
        assert!(
            e.starts_with("invalid setting SIGNUP_RATE_LIMIT_PER_HOUR (from environment)"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn audit_retention_defaults_to_400_days_and_refuses_nonsense() {
        let s = Settings::with_overrides(&[]).unwrap();
        assert_eq!(s.audit_retention_days, 400);
        let s = Settings::with_overrides(&[("AUDIT_RETENTION_DAYS", "30")]).unwrap();
        assert_eq!(s.audit_retention_days, 30);
        for bad in ["0", "3651", "-1", "a year"] {
            let e = Settings::with_overrides(&[("AUDIT_RETENTION_DAYS", bad)])
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("invalid setting AUDIT_RETENTION_DAYS"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn the_digest_hour_is_an_hour_of_the_day() {
        assert_eq!(
            Settings::with_overrides(&[]).unwrap().at_risk_digest_hour,
            8
        );
        let s = Settings::with_overrides(&[("AT_RISK_DIGEST_HOUR", "0")]).unwrap();
        assert_eq!(s.at_risk_digest_hour, 0);
        for bad in ["24", "-1", "8am"] {
            let e = Settings::with_overrides(&[("AT_RISK_DIGEST_HOUR", bad)])
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("invalid setting AT_RISK_DIGEST_HOUR"), "{e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn bad_url_names_the_setting() {
        let e = Settings::with_overrides(&[("APP_URL", "not a url")]).unwrap_err();
        assert_eq!(e.key, "APP_URL");
        let e = Settings::with_overrides(&[("STRIPE_API_BASE", "ftp://x")]).unwrap_err();
        assert_eq!(e.key, "STRIPE_API_BASE");
        let e = Settings::with_overrides(&[("DATABASE_URL", "mysql://x")]).unwrap_err();
        assert_eq!(e.key, "DATABASE_URL");
    }

    const PRODUCTION: [(&str, &str); 8] = [
        ("APP_ENV", "production"),
        ("JWT_SECRET", "a-long-random-production-secret"),
        ("EMAIL_TRANSPORT", "outbox"),
        ("STRIPE_SECRET_KEY", "sk_live_x"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_x"),
        ("STRIPE_PRICE_ID_STARTER", "price_s"),
        ("STRIPE_PRICE_ID_PRO", "price_p"),
        (
            "EMAIL_POSTAL_ADDRESS",
            "Onboard Ltd, 12 Harbour Road, Exampleton EX1 2AB, United Kingdom",
        ),
    ];

    #[test]
    fn production_refuses_default_jwt_secret() {
        let e = Settings::with_overrides(&[("APP_ENV", "production")]).unwrap_err();
        assert_eq!(e.key, "JWT_SECRET");
        assert!(Settings::with_overrides(&PRODUCTION).is_ok());
    }

    #[test]
    fn production_refuses_to_start_without_stripe_or_a_postal_address() {
        // Each Stripe setting, and the postal address, left out in turn is named.
        for missing in 2..PRODUCTION.len() {
            let mut settings = PRODUCTION.to_vec();
            let (key, _) = settings.remove(missing);
            let e = Settings::with_overrides(&settings).unwrap_err();
            assert_eq!(e.key, key);
            assert!(e.to_string().contains("APP_ENV=production"), "{e}");
        }
        // Development runs on the dev checkout without any of them.
        assert!(Settings::with_overrides(&[]).is_ok());
    }

    #[test]
    fn later_layers_win() {
        let mut raw = RawSettings::default();
        raw.set("SIGNUP_RATE_LIMIT_PER_HOUR", "5", "onboard.toml");
        raw.set("SIGNUP_RATE_LIMIT_PER_HOUR", "7", "environment");
        assert_eq!(
            Settings::from_raw(&raw).unwrap().signup_rate_limit_per_hour,
            7
        );
    }

    #[test]
    fn toml_file_values_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("onboard.toml");
        std::fs::write(&path, "SIGNUP_RATE_LIMIT_PER_HOUR = 3\nsample_data_enabled = false\ntrusted_proxies = [\"10.0.0.0/8\"]\n").unwrap();
        let mut raw = RawSettings::default();
        raw.merge_toml_file(&path).unwrap();
        let s = Settings::from_raw(&raw).unwrap();
        assert_eq!(s.signup_rate_limit_per_hour, 3);
        assert!(!s.sample_data_enabled);
        assert_eq!(s.trusted_proxies.len(), 1);
    }

    #[test]
    fn env_example_documents_every_setting() {
        let example = include_str!("../.env.example");
        for (key, _, _) in SETTINGS {
            assert!(
                example.contains(&format!("{key}=")),
                "{key} is missing from .env.example"
            );
        }
    }

    #[test]
    fn dev_aids_are_on_only_on_loopback_and_only_without_the_real_thing() {
        let local = Settings::with_overrides(&[]).unwrap().dev_aids();
        assert!(local.checkout && local.mailbox && local.derived_webhook_secret);
        assert!(!local.forced);
        let v6 = Settings::with_overrides(&[("ONBOARD_ADDR", "[::1]:8000")])
            .unwrap()
            .dev_aids();
        assert!(v6.checkout && !v6.forced);

        // The real thing configured: that aid is off.
        let stripe = Settings::with_overrides(&[
            ("STRIPE_SECRET_KEY", "sk_test_x"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_x"),
        ])
        .unwrap()
        .dev_aids();
        assert!(!stripe.checkout && !stripe.derived_webhook_secret && stripe.mailbox);
        let smtp = Settings::with_overrides(&[("SMTP_URL", "smtp://127.0.0.1:2525")])
            .unwrap()
            .dev_aids();
        assert!(!smtp.mailbox && smtp.checkout);

        // A public address: off, unless APP_ENV=development is set explicitly (then forced).
        let public = [
            ("ONBOARD_ADDR", "0.0.0.0:8000"),
            ("JWT_SECRET", "a-long-random-deployment-secret"),
            ("STRIPE_SECRET_KEY", "sk_test_x"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_x"),
        ];
        let off = Settings::with_overrides(&public).unwrap().dev_aids();
        assert_eq!(off, DevAids::default());
        let mut forced = public[..2].to_vec();
        forced.push(("APP_ENV", "development"));
        let forced = Settings::with_overrides(&forced).unwrap().dev_aids();
        assert!(forced.checkout && forced.mailbox && forced.derived_webhook_secret);
        assert!(forced.forced);

        // Production never has them.
        let prod = Settings::with_overrides(&PRODUCTION).unwrap().dev_aids();
        assert_eq!(prod, DevAids::default());
    }

    #[test]
    fn unsafe_public_configurations_refuse_to_start() {
        // The published development secret on a public address.
        let e = Settings::with_overrides(&[("ONBOARD_ADDR", "0.0.0.0:8000")]).unwrap_err();
        assert_eq!(e.key, "JWT_SECRET");
        assert!(e.to_string().contains("non-loopback"), "{e}");
        // Stripe without its webhook secret, anywhere.
        let e = Settings::with_overrides(&[("STRIPE_SECRET_KEY", "sk_test_x")]).unwrap_err();
        assert_eq!(e.key, "STRIPE_WEBHOOK_SECRET");
        // A public address with neither Stripe nor an explicit development environment.
        let e = Settings::with_overrides(&[
            ("ONBOARD_ADDR", "0.0.0.0:8000"),
            ("JWT_SECRET", "a-long-random-deployment-secret"),
        ])
        .unwrap_err();
        assert_eq!(e.key, "STRIPE_SECRET_KEY");
        assert!(!e.to_string().contains('\n'), "one line: {e}");
    }

    #[test]
    fn the_email_transport_is_chosen_and_checked() {
        let pick =
            |pairs: &[(&str, &str)]| Settings::with_overrides(pairs).map(|s| s.email_transport());
        assert_eq!(pick(&[]).unwrap(), "outbox");
        assert_eq!(
            pick(&[("SMTP_URL", "smtp://127.0.0.1:2525")]).unwrap(),
            "smtp"
        );
        assert_eq!(pick(&[("SENDGRID_API_KEY", "SG.x")]).unwrap(), "sendgrid");
        assert_eq!(
            pick(&[("SENDGRID_API_KEY", "SG.x"), ("EMAIL_TRANSPORT", "outbox")]).unwrap(),
            "outbox"
        );
        for (pairs, key) in [
            (vec![("EMAIL_TRANSPORT", "smtp")], "SMTP_URL"),
            (vec![("EMAIL_TRANSPORT", "sendgrid")], "SENDGRID_API_KEY"),
            (vec![("EMAIL_TRANSPORT", "pigeon")], "EMAIL_TRANSPORT"),
            (vec![("SMTP_URL", "http://mail.example.com")], "SMTP_URL"),
            (
                vec![("SMTP_URL", "smtp://mail.example.com?tls=maybe")],
                "SMTP_URL",
            ),
            (vec![("SMTP_URL", "smtp:///nohost")], "SMTP_URL"),
        ] {
            let e = Settings::with_overrides(&pairs).unwrap_err();
            assert_eq!(e.key, key, "{pairs:?}: {e}");
        }
        for ok in [
            "smtp://127.0.0.1:2525",
            "smtp://user:p%40ss@mail.example.com:587?tls=required",
            "smtps://user:pass@mail.example.com",
        ] {
            assert!(pick(&[("SMTP_URL", ok)]).is_ok(), "{ok}");
        }
        // Production keeps emails only in the database when told so, never by default.
        let mut prod = PRODUCTION.to_vec();
        prod.retain(|(k, _)| *k != "EMAIL_TRANSPORT");
        let e = Settings::with_overrides(&prod).unwrap_err();
        assert_eq!(e.key, "EMAIL_TRANSPORT");
        prod.push(("SMTP_URL", "smtps://u:p@mail.example.com"));
        assert!(Settings::with_overrides(&prod).is_ok());
    }

    #[test]
    fn previous_signing_secrets_are_parsed_and_checked() {
        let s = Settings::with_overrides(&[
            ("JWT_KEY_ID", "2026-12"),
            (
                "JWT_PREVIOUS_SECRETS",
                "2026-06:an-older-secret-value, k1:onboard-development-secret-change-me",
            ),
        ])
        .unwrap();
        let kids: Vec<_> = s.signing_secrets().into_iter().map(|s| s.kid).collect();
        assert_eq!(kids, ["2026-12", "2026-06", "k1"]);
        for (bad, why) in [
            ("nocolon", "kid:secret"),
            ("a:short", "16 characters"),
            ("a b:a-long-enough-secret", "key id"),
            ("x:a-long-enough-secret,x:another-long-secret", "twice"),
            ("k1:a-long-enough-secret", "current JWT_KEY_ID"),
        ] {
            let e = Settings::with_overrides(&[("JWT_PREVIOUS_SECRETS", bad)]).unwrap_err();
            assert_eq!(e.key, "JWT_PREVIOUS_SECRETS");
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn trusted_proxies_accept_addresses_and_cidrs() {
        let s =
            Settings::with_overrides(&[("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8,::1")]).unwrap();
        assert_eq!(s.trusted_proxies.len(), 3);
        let e = Settings::with_overrides(&[("TRUSTED_PROXIES", "nope")]).unwrap_err();
        assert_eq!(e.key, "TRUSTED_PROXIES");
    }
}
