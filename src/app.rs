//! The services every handler and job reaches, built once at start-up from the settings: the
//! store, Stripe, the vector store and embedder, the mailer, the key signer and caches. Imports
//! only modules below the HTTP layer; handlers receive it as their context.

use std::sync::Arc;
use std::time::Instant;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use tokio::sync::Notify;

use crate::billing::stripe::StripeClient;
use crate::config::Settings;
use crate::email::sendgrid::SendGrid;
use crate::email::{Brand, Mailer, Sender, Transport};
use crate::search::{Embedder, EmbeddingsClient, PineconeClient, VectorStore};
use crate::store::Store;
use crate::workspace::api_keys::KeySigner;
use crate::workspace::hashing::Hashing;
use crate::workspace::key_cache::KeyCache;
use crate::workspace::usage::UsageMeter;

/// Shared application state.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub started_at: Instant,
    /// The webhook signing secret: configured, or (a development aid, on a loopback address
    /// only) derived from `JWT_SECRET` so every process of one deployment agrees on it. None:
    /// every delivery is refused (fail closed).
    pub webhook_secret: Option<Arc<SecretString>>,
    pub stripe: Option<Arc<StripeClient>>,
    pub vectors: VectorStore,
    pub mailer: Mailer,
    pub signer: KeySigner,
    /// Wakes in-process workers when a job is enqueued.
    pub jobs_ready: Arc<Notify>,
    /// This process's Prometheus metrics, exported at `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Plain HTTP client for calls to ourselves (the dev checkout's webhook delivery).
    pub http: reqwest::Client,
    /// Activation milestones this process already knows are recorded.
    pub milestones: crate::analytics::MilestoneMemo,
    /// Group commit of tracked activation events.
    pub ingest: crate::analytics::ingest::Ingest,
    pub embedder: Embedder,
    /// Queries counted in memory, flushed every second.
    pub usage: UsageMeter,
    /// Verified API keys, and their batched `last_used_at`.
    pub keys: KeyCache,
    /// Rations the success page's lookups of checkout sessions at Stripe.
    pub checkout_lookups: crate::billing::checkout::LookupThrottle,
    /// The bounded argon2 queue of signup and sign-in (one hash per core, reused memory).
    pub hashing: Arc<Hashing>,
}

impl AppState {
    pub fn new(settings: Settings, store: Store) -> Self {
        crate::outbound::ensure_crypto_provider();
        let webhook_secret = match &settings.stripe_webhook_secret {
            Some(s) => Some(s.clone()),
            None if settings.dev_aids().derived_webhook_secret => {
                Some(SecretString::from(dev_webhook_secret(&settings.jwt_secret)))
            }
            None => None,
        };
        let stripe = settings.stripe_secret_key.as_ref().map(|key| {
            Arc::new(StripeClient::new(
                settings.stripe_api_base.clone(),
                key.clone(),
            ))
        });
        let signer = KeySigner::new(settings.signing_secrets());
        // `Settings::validate` checked both clients' settings: building them fails only if
        // this machine cannot set up TLS at all.
        let embedder = match &settings.embeddings_url {
            None => Embedder::Builtin,
            Some(url) => Embedder::Remote(
                EmbeddingsClient::new(
                    url.as_str(),
                    settings.embeddings_api_key.clone(),
                    &settings.embeddings_model,
                    Some(settings.embeddings_dimension),
                )
                .expect("validated embeddings settings"),
            ),
        };
        let vectors = match (&settings.pinecone_api_key, &settings.pinecone_index_host) {
            (Some(key), Some(host)) => VectorStore::pinecone(
                store.clone(),
                PineconeClient::new(host, key.clone()).expect("validated Pinecone settings"),
                embedder.dimension(),
            ),
            _ => VectorStore::embedded(
                store.clone(),
                embedder.dimension(),
                (settings.vector_cache_mb as usize).saturating_mul(1024 * 1024),
            ),
        };
        let sender = Sender {
            name: settings.sendgrid_from_name.clone(),
            email: settings.sendgrid_from_email.clone(),
            reply_to: settings.email_reply_to.clone(),
        };
        // `Settings::validate` checked the SMTP URL and the SendGrid settings.
        let transport = match settings.email_transport() {
            "smtp" => Transport::smtp(
                settings
                    .smtp_url
                    .as_ref()
                    .map(ExposeSecret::expose_secret)
                    .expect("validated: EMAIL_TRANSPORT=smtp has SMTP_URL"),
            )
            .expect("validated SMTP_URL"),
            "sendgrid" => Transport::SendGrid(
                SendGrid::new(
                    &settings.sendgrid_api_base,
                    settings
                        .sendgrid_api_key
                        .as_ref()
                        .expect("validated: EMAIL_TRANSPORT=sendgrid has SENDGRID_API_KEY"),
                )
                .expect("validated SendGrid settings"),
            ),
            _ => Transport::Outbox,
        };
        let brand = Brand::new(
            settings.app_url.as_str(),
            &settings.sendgrid_from_name,
            &settings.email_postal_address,
            settings.jwt_secret.expose_secret().as_bytes(),
        );
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let mailer = Mailer::new(transport, sender, brand, metrics.clone());
        let hashing = Arc::new(Hashing::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
            settings.hash_queue_max(),
        ));
        Self {
            settings: Arc::new(settings),
            vectors,
            embedder,
            usage: UsageMeter::default(),
            keys: KeyCache::default(),
            checkout_lookups: Default::default(),
            hashing,
            store,
            started_at: Instant::now(),
            webhook_secret: webhook_secret.map(Arc::new),
            stripe,
            mailer,
            signer,
            jobs_ready: Arc::new(Notify::new()),
            metrics,
            http: reqwest::Client::new(),
            milestones: crate::analytics::MilestoneMemo::default(),
            ingest: crate::analytics::ingest::Ingest::default(),
        }
    }
}

impl AppState {
    /// Writes what is counted in memory (query usage, keys' last use). Runs every second while
    /// serving, and once more at shutdown.
    pub async fn flush_counters(&self) {
        if let Err(e) = self.usage.flush(&self.store).await {
            tracing::warn!(error = %e, "could not write query usage; will retry");
        }
        if let Err(e) = self.keys.flush_last_used(&self.store).await {
            tracing::warn!(error = %e, "could not write API keys' last use; will retry");
        }
    }
}

/// `whsec_dev_` + HMAC(JWT_SECRET, "dev-webhook"): secret, stable across processes.
pub fn dev_webhook_secret(jwt_secret: &SecretString) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(jwt_secret.expose_secret().as_bytes())
        .expect("any key length");
    mac.update(b"onboard dev webhook secret");
    format!("whsec_dev_{}", hex::encode(mac.finalize().into_bytes()))
}
