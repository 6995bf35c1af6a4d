//! Group commit for `POST /activation/track`: each request hands its event to one writer task
//! and waits for the commit that holds it. While a transaction commits, the events that arrive
//! queue up and go into the next one together, so the store pays one commit (one fsync on
//! PostgreSQL, one WAL append on SQLite) per batch instead of per event. Under light load a
//! batch is one event and nothing waits. A request is answered only once its event is stored.

use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot};

use super::{ClientEvent, TrackedEvent};
use crate::store::{Store, StoreError, StoreResult};

/// Most events in one transaction.
const MAX_BATCH: usize = 512;

/// Requests waiting for the writer before new ones are told the store is busy (backpressure).
const QUEUE: usize = 8_192;

type Reply = oneshot::Sender<StoreResult<TrackedEvent>>;

/// The handle requests use; cheap to clone. The writer task starts with the first event and
/// stops when the last handle is dropped.
#[derive(Clone, Default)]
pub struct Ingest {
    tx: Arc<OnceLock<mpsc::Sender<(ClientEvent, Reply)>>>,
}

impl Ingest {
    /// Stores `event` (in the next batch) and returns what was stored.
    pub async fn track(&self, store: &Store, event: ClientEvent) -> StoreResult<TrackedEvent> {
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(write_loop(store.clone(), rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        tx.send((event, reply))
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?;
        answer
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?
    }
}

async fn write_loop(store: Store, mut rx: mpsc::Receiver<(ClientEvent, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (events, replies): (Vec<ClientEvent>, Vec<Reply>) = batch.drain(..).unzip();
        match store.track_client_events(&events).await {
            Ok(tracked) => {
                for (reply, t) in replies.into_iter().zip(tracked) {
                    let _ = reply.send(Ok(t));
                }
            }
            // One bad event (its tenant erased meanwhile, say) must not fail the others: each
            // is tried alone and gets its own answer.
            Err(_) if events.len() > 1 => {
                for (event, reply) in events.into_iter().zip(replies) {
                    let one = store
                        .track_client_events(std::slice::from_ref(&event))
                        .await
                        .map(|mut v| v.remove(0));
                    let _ = reply.send(one);
                }
            }
            Err(e) => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
        }
    }
}
