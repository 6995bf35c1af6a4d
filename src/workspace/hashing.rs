//! The bounded argon2 queue shared by signup and sign-in.
//!
//! At most one hash per core runs at once (more only thrash the caches: each holds 19 MiB), each
//! with a working memory that is allocated once and reused ([`HashMemory`]), so memory stays
//! bounded however many hashes a flood asks for. The queue itself is bounded too: when more than
//! `max` hashes wait or run, a signup is answered "busy" at once instead of queueing without
//! limit, and sign-ins are refused already at half of it, so a flood of fake sign-ins can never
//! take the places that signups need.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

use crate::domain::password::HashMemory;

/// Who is asking for a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFor {
    /// A new account: may use the whole queue.
    Signup,
    /// A sign-in or a password change: may use half of it.
    SignIn,
}

/// Why a hash did not run.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The queue is full for this kind of caller: try again in a moment.
    #[error("too many password checks are in progress")]
    Busy,
    #[error("the hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The queue; cheap to share behind an `Arc`.
pub struct Hashing {
    running: Semaphore,
    /// Working memories not in use (at most one per core once warm).
    memories: Mutex<Vec<HashMemory>>,
    /// Hashes admitted: waiting for a core or running.
    admitted: AtomicUsize,
    max: usize,
}

/// Gives back an admitted place when the hash finishes, however it finishes.
struct Admitted<'a>(&'a AtomicUsize);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Hashing {
    /// `cores` hashes run at once; at most `max` wait or run.
    pub fn new(cores: usize, max: usize) -> Self {
        Self {
            running: Semaphore::new(cores.max(1)),
            memories: Mutex::new(Vec::new()),
            admitted: AtomicUsize::new(0),
            max: max.max(2),
        }
    }

    /// How many `who` may have waiting or running at once.
    fn limit(&self, who: HashFor) -> usize {
        match who {
            HashFor::Signup => self.max,
            HashFor::SignIn => self.max / 2,
        }
    }

    /// Runs `f` with a working memory on a blocking thread once a core is free, or answers
    /// [`HashError::Busy`] at once when the queue is full for `who`.
    pub async fn run<T: Send + 'static>(
        &self,
        who: HashFor,
        f: impl FnOnce(&mut HashMemory) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let limit = self.limit(who);
        let admitted = self
            .admitted
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            });
        if admitted.is_err() {
            return Err(HashError::Busy);
        }
        let _place = Admitted(&self.admitted);
        let _core = self
            .running
            .acquire()
            .await
            .expect("the hashing semaphore is never closed");
        let mut memory = self
            .memories
            .lock()
            .expect("hash memory lock")
            .pop()
            .unwrap_or_default();
        let (memory, out) = tokio::task::spawn_blocking(move || {
            let out = f(&mut memory);
            (memory, out)
        })
        .await?;
        self.memories.lock().expect("hash memory lock").push(memory);
        Ok(out)
    }

    /// Hashes admitted right now (waiting or running).
    pub fn admitted(&self) -> usize {
        self.admitted.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn sign_ins_are_refused_at_half_the_queue_and_signups_when_full() {
        let hashing = Arc::new(Hashing::new(1, 4));
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        // Two sign-ins: one runs (and blocks until released), one waits.
        let mut held = Vec::new();
        for _ in 0..2 {
            let (h, rx) = (hashing.clone(), release_rx.clone());
            held.push(tokio::spawn(async move {
                h.run(HashFor::SignIn, move |_| {
                    let _ = rx.lock().unwrap().recv();
                })
                .await
            }));
        }
        while hashing.admitted() < 2 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            hashing.run(HashFor::SignIn, |_| ()).await,
            Err(HashError::Busy)
        ));
        // Signups still get the other half.
        for _ in 0..2 {
            let (h, rx) = (hashing.clone(), release_rx.clone());
            held.push(tokio::spawn(async move {
                h.run(HashFor::Signup, move |_| {
                    let _ = rx.lock().unwrap().recv();
                })
                .await
            }));
        }
        while hashing.admitted() < 4 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            hashing.run(HashFor::Signup, |_| ()).await,
            Err(HashError::Busy)
        ));
        for _ in 0..4 {
            release_tx.send(()).unwrap();
        }
        for h in held {
            h.await.unwrap().unwrap();
        }
        assert_eq!(hashing.admitted(), 0, "every place is given back");
        assert!(hashing.run(HashFor::SignIn, |_| 7).await.unwrap() == 7);
    }

    #[tokio::test]
    async fn working_memory_is_reused_not_reallocated() {
        let hashing = Hashing::new(1, 8);
        for _ in 0..4 {
            hashing.run(HashFor::SignIn, |_| ()).await.unwrap();
        }
        assert_eq!(
            hashing.memories.lock().unwrap().len(),
            1,
            "one core, one memory, however many hashes"
        );
    }
}
