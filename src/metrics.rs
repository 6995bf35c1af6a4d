//! Counters exported in the Prometheus text format at `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Process-local counters.
#[derive(Default)]
pub struct Counters {
    pub webhook_invalid_signature: AtomicU64,
    pub webhook_received: AtomicU64,
    pub webhook_duplicate: AtomicU64,
    pub webhook_unhandled: AtomicU64,
    pub webhook_unknown_tenant: AtomicU64,
    pub jobs_succeeded: AtomicU64,
    pub jobs_failed: AtomicU64,
    pub jobs_dead: AtomicU64,
    pub tenants_provisioned: AtomicU64,
}

impl Counters {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders every counter.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, help, v) in [
            (
                "onboard_webhook_invalid_signature_total",
                "Webhook deliveries refused for their signature",
                &self.webhook_invalid_signature,
            ),
            (
                "onboard_webhook_received_total",
                "Verified webhook events stored",
                &self.webhook_received,
            ),
            (
                "onboard_webhook_duplicate_total",
                "Webhook events received again (deduplicated)",
                &self.webhook_duplicate,
            ),
            (
                "onboard_webhook_unhandled_total",
                "Webhook events of a type we do not handle",
                &self.webhook_unhandled,
            ),
            (
                "onboard_webhook_unknown_tenant_total",
                "Webhook events naming no tenant of ours",
                &self.webhook_unknown_tenant,
            ),
            (
                "onboard_jobs_succeeded_total",
                "Jobs that finished",
                &self.jobs_succeeded,
            ),
            (
                "onboard_jobs_failed_total",
                "Job attempts that failed",
                &self.jobs_failed,
            ),
            (
                "onboard_jobs_dead_total",
                "Jobs dead-lettered after their last attempt",
                &self.jobs_dead,
            ),
            (
                "onboard_tenants_provisioned_total",
                "Tenants that became active",
                &self.tenants_provisioned,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        out
    }
}
