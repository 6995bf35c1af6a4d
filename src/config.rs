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
        "smtp://user:pass@host:port; set = SMTP email transport",
    ),
    (
        "JWT_SECRET",
        DEV_JWT_SECRET,
        "HMAC secret for API keys and signed tokens",
    ),
    (
        "JWT_EXPIRY_HOURS",
        "24",
        "lifetime of sessions and login links, in hours",
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
        "a running job not finished within this is presumed crashed and taken again",
    ),
];

/// Where the service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

/// All configuration, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub app_env: AppEnv,
    pub addr: SocketAddr,
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
    pub jwt_secret: SecretString,
    pub jwt_expiry_hours: u32,
    pub provisioning_timeout_seconds: u64,
    pub max_provisioning_retries: u32,
    pub sample_data_enabled: bool,
    pub signup_rate_limit_per_hour: u32,
    pub trusted_proxies: Vec<IpNet>,
    pub admin_token: Option<SecretString>,
    pub operator_email: String,
    pub job_backoff_base_ms: u64,
    pub job_lease_seconds: u64,
    pub worker_concurrency: usize,
    pub embeddings_url: Option<Url>,
    pub embeddings_api_key: Option<SecretString>,
    pub embeddings_model: String,
    pub embeddings_dimension: usize,
    pub plans: crate::domain::plan::PlanTable,
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
            addr: p.parse("ONBOARD_ADDR")?,
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
            jwt_secret: SecretString::from(p.string("JWT_SECRET")),
            jwt_expiry_hours: p.parse("JWT_EXPIRY_HOURS")?,
            provisioning_timeout_seconds: p.parse("PROVISIONING_TIMEOUT_SECONDS")?,
            max_provisioning_retries: p.parse("MAX_PROVISIONING_RETRIES")?,
            sample_data_enabled: p.boolean("SAMPLE_DATA_ENABLED")?,
            signup_rate_limit_per_hour: p.parse("SIGNUP_RATE_LIMIT_PER_HOUR")?,
            trusted_proxies: p.cidrs("TRUSTED_PROXIES")?,
            admin_token: p.secret("ADMIN_TOKEN"),
            operator_email: p.string("OPERATOR_EMAIL"),
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

    /// Settings for tests and tools: defaults with the given overrides.
    pub fn with_overrides(pairs: &[(&str, &str)]) -> Result<Self, ConfigError> {
        let mut raw = RawSettings::default();
        for (k, v) in pairs {
            raw.set(k, *v, "override");
        }
        Self::from_raw(&raw)
    }
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
    fn bad_url_names_the_setting() {
        let e = Settings::with_overrides(&[("APP_URL", "not a url")]).unwrap_err();
        assert_eq!(e.key, "APP_URL");
        let e = Settings::with_overrides(&[("STRIPE_API_BASE", "ftp://x")]).unwrap_err();
        assert_eq!(e.key, "STRIPE_API_BASE");
        let e = Settings::with_overrides(&[("DATABASE_URL", "mysql://x")]).unwrap_err();
        assert_eq!(e.key, "DATABASE_URL");
    }

    const PRODUCTION: [(&str, &str); 6] = [
        ("APP_ENV", "production"),
        ("JWT_SECRET", "a-long-random-production-secret"),
        ("STRIPE_SECRET_KEY", "sk_live_x"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_x"),
        ("STRIPE_PRICE_ID_STARTER", "price_s"),
        ("STRIPE_PRICE_ID_PRO", "price_p"),
    ];

    #[test]
    fn production_refuses_default_jwt_secret() {
        let e = Settings::with_overrides(&[("APP_ENV", "production")]).unwrap_err();
        assert_eq!(e.key, "JWT_SECRET");
        assert!(Settings::with_overrides(&PRODUCTION).is_ok());
    }

    #[test]
    fn production_refuses_to_start_without_stripe() {
        // Each Stripe setting left out in turn is named.
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
    fn trusted_proxies_accept_addresses_and_cidrs() {
        let s =
            Settings::with_overrides(&[("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8,::1")]).unwrap();
        assert_eq!(s.trusted_proxies.len(), 3);
        let e = Settings::with_overrides(&[("TRUSTED_PROXIES", "nope")]).unwrap_err();
        assert_eq!(e.key, "TRUSTED_PROXIES");
    }
}
