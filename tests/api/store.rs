//! The store suite, run on both backends.

use onboard::domain::{Plan, TenantId, TenantStatus};
use onboard::store::{NewTenant, Store, StoreError};

use crate::helpers::{Backend, TestDb};
use crate::store_tests;

store_tests!(
    transitions_are_recorded_in_the_history_with_the_change,
    a_status_changed_outside_the_code_is_still_recorded,
    refused_transitions_change_nothing,
    a_rolled_back_transaction_leaves_no_trace,
    concurrent_transitions_from_one_state_let_exactly_one_win,
    rate_limit_windows_reopen_after_their_length,
    migrations_are_idempotent,
);

async fn store(backend: &Backend) -> (TestDb, Store) {
    let db = TestDb::create(backend).await;
    let store = db.store().await;
    (db, store)
}

async fn new_tenant(store: &Store, email: &str) -> TenantId {
    let id = TenantId::generate();
    let mut tx = store.begin().await.unwrap();
    tx.insert_tenant(&NewTenant {
        id: id.clone(),
        email: email.into(),
        email_normalized: email.to_lowercase(),
        company_name: "Acme".into(),
        password_hash: "$argon2id$test".into(),
        plan: Plan::Pro,
        status: TenantStatus::PendingPayment,
        reason: "signup".into(),
        stripe_checkout_session_id: None,
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

async fn transitions_are_recorded_in_the_history_with_the_change(backend: Backend) {
    let (_db, store) = store(&backend).await;
    let id = new_tenant(&store, "h@example.com").await;
    for (to, reason) in [
        (TenantStatus::Provisioning, "checkout completed"),
        (TenantStatus::Failed, "vector store unreachable"),
        (TenantStatus::Provisioning, "retry"),
        (TenantStatus::Active, "all steps done"),
    ] {
        let mut tx = store.begin().await.unwrap();
        tx.transition_tenant(&id, to, reason, "test").await.unwrap();
        tx.commit().await.unwrap();
    }
    let t = store.tenant(&id).await.unwrap().unwrap();
    assert_eq!(t.status, TenantStatus::Active);
    assert!(t.activated_at.is_some());
    let h = store.status_history(&id).await.unwrap();
    let pairs: Vec<(Option<&str>, &str, &str)> = h
        .iter()
        .map(|c| {
            (
                c.from_status.as_deref(),
                c.to_status.as_str(),
                c.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        vec![
            (None, "pending_payment", "signup"),
            (
                Some("pending_payment"),
                "provisioning",
                "checkout completed"
            ),
            (Some("provisioning"), "failed", "vector store unreachable"),
            (Some("failed"), "provisioning", "retry"),
            (Some("provisioning"), "active", "all steps done"),
        ]
    );
    assert!(h.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(h[0].actor, "customer");
    assert!(h[1..].iter().all(|c| c.actor == "test"));
}

/// The history is written by the database itself, so even a change made by hand (an operator
/// with a SQL prompt) is recorded; a statement that leaves the status as it is records nothing.
async fn a_status_changed_outside_the_code_is_still_recorded(backend: Backend) {
    let (_db, store) = store(&backend).await;
    let id = new_tenant(&store, "sql@example.com").await;
    onboard::with_pool!(&store, |pool| {
        sqlx::query(
            "UPDATE tenants SET status = 'abandoned', status_reason = 'closed by hand', \
             status_actor = 'dba', updated_at = updated_at + 1 WHERE id = $1",
        )
        .bind(id.as_str())
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "UPDATE tenants SET status = 'abandoned', company_name = 'Acme 2' WHERE id = $1",
        )
        .bind(id.as_str())
        .execute(pool)
        .await
        .unwrap();
    });
    let h = store.status_history(&id).await.unwrap();
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(h[1].from_status.as_deref(), Some("pending_payment"));
    assert_eq!(h[1].to_status, "abandoned");
    assert_eq!(h[1].reason, "closed by hand");
    assert_eq!(h[1].actor, "dba");
}

async fn refused_transitions_change_nothing(backend: Backend) {
    let (_db, store) = store(&backend).await;
    let id = new_tenant(&store, "r@example.com").await;
    let mut tx = store.begin().await.unwrap();
    let err = tx
        .transition_tenant(&id, TenantStatus::Active, "skip payment", "test")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Transition(_)), "{err:?}");
    tx.commit().await.unwrap();
    assert_eq!(
        store.tenant(&id).await.unwrap().unwrap().status,
        TenantStatus::PendingPayment
    );
    assert_eq!(store.status_history(&id).await.unwrap().len(), 1);
    let mut tx = store.begin().await.unwrap();
    let missing = tx
        .transition_tenant(&TenantId::generate(), TenantStatus::Active, "x", "test")
        .await
        .unwrap_err();
    assert!(matches!(missing, StoreError::NotFound(_)));
}

async fn a_rolled_back_transaction_leaves_no_trace(backend: Backend) {
    let (_db, store) = store(&backend).await;
    let id = new_tenant(&store, "rb@example.com").await;
    {
        let mut tx = store.begin().await.unwrap();
        tx.transition_tenant(&id, TenantStatus::Provisioning, "paid", "test")
            .await
            .unwrap();
        // dropped without commit
    }
    assert_eq!(
        store.tenant(&id).await.unwrap().unwrap().status,
        TenantStatus::PendingPayment
    );
    assert_eq!(store.status_history(&id).await.unwrap().len(), 1);
}

async fn concurrent_transitions_from_one_state_let_exactly_one_win(backend: Backend) {
    let (_db, store) = store(&backend).await;
    let id = new_tenant(&store, "c@example.com").await;
    let tasks: Vec<_> = [
        TenantStatus::Provisioning,
        TenantStatus::Abandoned,
        TenantStatus::Provisioning,
    ]
    .into_iter()
    .map(|to| {
        let (store, id) = (store.clone(), id.clone());
        tokio::spawn(async move {
            let mut tx = store.begin().await?;
            tx.transition_tenant(&id, to, "race", "test").await?;
            tx.commit().await?;
            Ok::<_, StoreError>(to)
        })
    })
    .collect();
    let mut won = Vec::new();
    for t in tasks {
        if let Ok(to) = t.await.unwrap() {
            won.push(to);
        }
    }
    assert_eq!(won.len(), 1, "{won:?}");
    let t = store.tenant(&id).await.unwrap().unwrap();
    assert_eq!(t.status, won[0]);
    assert_eq!(store.status_history(&id).await.unwrap().len(), 2);
}

async fn rate_limit_windows_reopen_after_their_length(backend: Backend) {
    let (_db, store) = store(&backend).await;
    let t0 = 1_000_000_000_000;
    let hour = 3_600_000;
    for i in 1..=2 {
        let d = store.hit_rate_limit("k", 2, hour, t0 + i).await.unwrap();
        assert!(d.allowed);
    }
    let d = store.hit_rate_limit("k", 2, hour, t0 + 1000).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after_secs, 3600, "window opened at t0+1");
    assert!(
        store
            .hit_rate_limit("other", 2, hour, t0 + 1000)
            .await
            .unwrap()
            .allowed,
        "keys are separate"
    );
    let d = store
        .hit_rate_limit("k", 2, hour, t0 + 1 + hour)
        .await
        .unwrap();
    assert!(d.allowed, "a new window opens");
    assert_eq!(d.hits, 1);
    assert_eq!(
        store.prune_rate_limits(t0 + 2000).await.unwrap(),
        1,
        "only the stale counter of other"
    );
}

async fn migrations_are_idempotent(backend: Backend) {
    let (db, store) = store(&backend).await;
    store.migrate().await.unwrap();
    let again = db.store().await;
    again.migrate().await.unwrap();
}
