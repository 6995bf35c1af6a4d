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
use crate::email::Mailer;
use crate::search::{Embedder, EmbeddingsClient, PineconeClient, VectorStore};
use crate::store::Store;
use crate::workspace::api_keys::KeySigner;
use crate::workspace::key_cache::KeyCache;
use crate::workspace::usage::UsageMeter;

/// Shared application state.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub started_at: Instant,
    /// The webhook signing secret: configured, or in development derived from `JWT_SECRET`
    /// so every process of one deployment agrees on it.
    pub webhook_secret: Arc<SecretString>,
    pub stripe: Option<Arc<StripeClient>>,
    pub vectors: VectorStore,
    pub mailer: Mailer,
    pub signer: KeySigner,
    /// Wakes in-process workers when a job is enqueued.
    pub jobs_ready: Arc<Notify>,
    /// Counters exported at `/metrics`.
    pub metrics: Arc<crate::metrics::Counters>,
    /// Plain HTTP client for calls to ourselves (the dev checkout's webhook delivery).
    pub http: reqwest::Client,
    /// Activation milestones this process already knows are recorded.
    pub milestones: crate::analytics::MilestoneMemo,
    pub embedder: Embedder,
    /// Queries counted in memory, flushed every second.
    pub usage: UsageMeter,
    /// Verified API keys, and their batched `last_used_at`.
    pub keys: KeyCache,
    /// One permit per core for argon2 work: more hashes at once than cores only thrash the
    /// caches (each holds 19 MiB) and slow every one of them down.
    pub hashing: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    pub fn new(settings: Settings, store: Store) -> Self {
        crate::outbound::ensure_crypto_provider();
        let webhook_secret = match &settings.stripe_webhook_secret {
            Some(s) => s.clone(),
            None => SecretString::from(dev_webhook_secret(&settings.jwt_secret)),
        };
        let stripe = settings.stripe_secret_key.as_ref().map(|key| {
            Arc::new(StripeClient::new(
                settings.stripe_api_base.clone(),
                key.clone(),
            ))
        });
        let signer = KeySigner::new(&settings.jwt_secret);
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
            _ => VectorStore::embedded(store.clone(), embedder.dimension()),
        };
        Self {
            settings: Arc::new(settings),
            vectors,
            embedder,
            usage: UsageMeter::default(),
            keys: KeyCache::default(),
            hashing: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            store,
            started_at: Instant::now(),
            webhook_secret: Arc::new(webhook_secret),
            stripe,
            mailer: Mailer::outbox(),
            signer,
            jobs_ready: Arc::new(Notify::new()),
            metrics: Arc::new(crate::metrics::Counters::default()),
            http: reqwest::Client::new(),
            milestones: crate::analytics::MilestoneMemo::default(),
        }
    }
}

impl AppState {
    /// Runs argon2 work `f` on a blocking thread once a core is free for it.
    pub async fn hash<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .expect("the hashing semaphore is never closed");
        tokio::task::spawn_blocking(f).await
    }

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
