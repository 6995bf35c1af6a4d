//! The Prometheus metrics of this process, exported at `GET /metrics` in the Prometheus text
//! format (0.0.4) by the `prometheus-client` crate: counters, labelled families and
//! histograms recorded where the thing happens, plus gauges the `/metrics` handler reads from
//! the database at scrape time (so that every process reports the same queue and activation
//! figures) and hands over as a [`Snapshot`].
//!
//! A leaf helper every layer may use: imports nothing of the crate.

use std::borrow::Cow;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of what [`Metrics::render`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The prefix of every exported name.
const PREFIX: &str = "onboard";

/// Payment confirmed → tenant active: seconds in the usual case, up to the ten minutes after
/// which the sweeper gives up.
const PROVISIONING_BUCKETS: [f64; 13] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// Signup → first query: minutes for an eager customer, days for most.
const ACTIVATION_BUCKETS: [f64; 15] = [
    10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 10800.0, 21600.0, 43200.0, 86400.0, 172800.0,
    259200.0, 604800.0, 1209600.0,
];
/// Webhook received → acknowledged: a millisecond or so, with room up to Stripe's patience.
const WEBHOOK_ACK_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Stripe event `created` → received: Stripe's clock is in whole seconds, so from 100 ms; a
/// redelivery after an outage is minutes to an hour late.
const STRIPE_DELAY_BUCKETS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];
/// HTTP request latency.
const HTTP_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `kind` label (email kinds, job kinds).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

/// Labels of `onboard_http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: &'static str,
    /// The route template (`/tenants/{tenant_id}`), never the raw path, so the number of
    /// series stays bounded whatever clients send; `unmatched` when no route matched.
    pub route: Cow<'static, str>,
    pub status: u16,
}

/// Labels of `onboard_http_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: &'static str,
    pub route: Cow<'static, str>,
}

/// The route label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// A method as a label without allocating: the standard ones by name, anything else `other`
/// (a client inventing methods must not grow the series).
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Every metric this process records, registered once. Cloning a metric shares it, so the
/// fields can be handed out; [`Metrics::render`] encodes them all.
pub struct Metrics {
    registry: Registry,
    pub signups: Counter,
    pub checkouts_completed: Counter,
    /// A provisioning attempt began on a tenant in `provisioning`.
    pub provisioning_started: Counter,
    /// A provisioning attempt made its tenant active.
    pub provisioning_succeeded: Counter,
    /// A provisioning attempt failed (it is retried, or the tenant fails after the last).
    pub provisioning_failed: Counter,
    pub emails_sent: Family<KindLabel, Counter>,
    pub emails_failed: Family<KindLabel, Counter>,
    pub email_unknown_outcomes: Counter,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_request_duration: Family<RouteLabels, Histogram>,
    pub webhook_invalid_signature: Counter,
    pub webhook_received: Counter,
    pub webhook_duplicate: Counter,
    pub webhook_unhandled: Counter,
    pub webhook_unknown_tenant: Counter,
    pub jobs_succeeded: Counter,
    pub jobs_failed: Counter,
    pub jobs_dead: Counter,
    pub tenants_provisioned: Counter,
    pub provisioning_duration: Histogram,
    pub time_to_activation: Histogram,
    pub webhook_ack: Histogram,
    pub stripe_event_delay: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn histogram(buckets: &'static [f64]) -> Histogram {
    Histogram::new(buckets.iter().copied())
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let seconds = |registry: &mut Registry, name: &str, help: &str, buckets: &'static [f64]| {
            let h = histogram(buckets);
            registry.register_with_unit(name, help, Unit::Seconds, h.clone());
            h
        };
        let r = &mut registry;
        let signups = counter(r, "signups", "Signups stored (tenants created)");
        let checkouts_completed = counter(
            r,
            "checkouts_completed",
            "Paid checkouts that moved their tenant to provisioning",
        );
        let provisioning_started = counter(
            r,
            "provisioning_started",
            "Provisioning attempts begun on a tenant in provisioning",
        );
        let provisioning_succeeded = counter(
            r,
            "provisioning_succeeded",
            "Provisioning attempts that made their tenant active",
        );
        let provisioning_failed = counter(
            r,
            "provisioning_failed",
            "Provisioning attempts that failed (retried, or the tenant failed after the last)",
        );
        let emails_sent = Family::<KindLabel, Counter>::default();
        r.register(
            "emails_sent",
            "Emails handed to the transport, by template kind",
            emails_sent.clone(),
        );
        let emails_failed = Family::<KindLabel, Counter>::default();
        r.register(
            "emails_failed",
            "Email send attempts that failed (retried or refused for good), by template kind",
            emails_failed.clone(),
        );
        let email_unknown_outcomes = counter(
            r,
            "email_unknown_outcomes",
            "Emails sent once more because a process stopped between the send and its record",
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        r.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            http_requests.clone(),
        );
        let http_request_duration =
            Family::<RouteLabels, Histogram>::new_with_constructor(|| histogram(&HTTP_BUCKETS));
        r.register_with_unit(
            "http_request_duration",
            "HTTP request latency, by method and route template",
            Unit::Seconds,
            http_request_duration.clone(),
        );
        let webhook_invalid_signature = counter(
            r,
            "webhook_invalid_signature",
            "Webhook deliveries refused for their signature",
        );
        let webhook_received = counter(r, "webhook_received", "Verified webhook events stored");
        let webhook_duplicate = counter(
            r,
            "webhook_duplicate",
            "Webhook events received again (deduplicated)",
        );
        let webhook_unhandled = counter(
            r,
            "webhook_unhandled",
            "Webhook events of a type we do not handle",
        );
        let webhook_unknown_tenant = counter(
            r,
            "webhook_unknown_tenant",
            "Webhook events naming no tenant of ours",
        );
        let jobs_succeeded = counter(r, "jobs_succeeded", "Jobs that finished");
        let jobs_failed = counter(r, "jobs_failed", "Job attempts that failed");
        let jobs_dead = counter(
            r,
            "jobs_dead",
            "Jobs dead-lettered after their last attempt",
        );
        let tenants_provisioned = counter(r, "tenants_provisioned", "Tenants that became active");
        let provisioning_duration = seconds(
            r,
            "provisioning_duration",
            "Payment confirmed to tenant active",
            &PROVISIONING_BUCKETS,
        );
        let time_to_activation = seconds(
            r,
            "time_to_activation",
            "Signup to the tenant's first query",
            &ACTIVATION_BUCKETS,
        );
        let webhook_ack = seconds(
            r,
            "webhook_ack",
            "Stripe webhook request received to acknowledged (200)",
            &WEBHOOK_ACK_BUCKETS,
        );
        let stripe_event_delay = seconds(
            r,
            "stripe_event_delay",
            "Stripe event created (Stripe's clock, whole seconds) to first received by us",
            &STRIPE_DELAY_BUCKETS,
        );
        Self {
            registry,
            signups,
            checkouts_completed,
            provisioning_started,
            provisioning_succeeded,
            provisioning_failed,
            emails_sent,
            emails_failed,
            email_unknown_outcomes,
            http_requests,
            http_request_duration,
            webhook_invalid_signature,
            webhook_received,
            webhook_duplicate,
            webhook_unhandled,
            webhook_unknown_tenant,
            jobs_succeeded,
            jobs_failed,
            jobs_dead,
            tenants_provisioned,
            provisioning_duration,
            time_to_activation,
            webhook_ack,
            stripe_event_delay,
        }
    }

    /// Counts an email sent (`ok`) or a failed send attempt, under its template kind.
    pub fn email(&self, kind: &str, ok: bool) {
        let family = if ok {
            &self.emails_sent
        } else {
            &self.emails_failed
        };
        family
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// Records one answered HTTP request.
    pub fn http_request(
        &self,
        method: &'static str,
        route: Cow<'static, str>,
        status: u16,
        seconds: f64,
    ) {
        let labels = RouteLabels { method, route };
        self.http_request_duration
            .get_or_create(&labels)
            .observe(seconds);
        self.http_requests
            .get_or_create(&HttpLabels {
                method,
                route: labels.route,
                status,
            })
            .inc();
    }

    /// The whole exposition: this process's metrics, then the database's `snapshot` (none when
    /// the database could not be read).
    pub fn render(&self, snapshot: Option<&Snapshot>) -> String {
        use prometheus_client::encoding::prometheus_text::encode;
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        if let Some(snapshot) = snapshot {
            let _ = encode(&mut out, &snapshot.registry());
        }
        out
    }
}

/// One job kind's queue, read from the database.
#[derive(Debug, Clone, PartialEq)]
pub struct JobQueue {
    pub kind: String,
    /// Jobs queued or running (not yet done or dead).
    pub queued: i64,
    /// Age of the oldest of them that is due, counted from when it became due; 0 when none.
    pub oldest_age_seconds: f64,
}

/// The gauges read from the database at scrape time, so every process reports the same.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub jobs: Vec<JobQueue>,
    /// Tenants whose payment was confirmed in the last 7 days.
    pub activation_tenants_7d: i64,
    /// How many of them ran a first query.
    pub activated_7d: i64,
}

impl Snapshot {
    /// The share of the last 7 days' paying tenants that ran a first query (0 when none).
    pub fn activation_rate_7d(&self) -> f64 {
        if self.activation_tenants_7d > 0 {
            self.activated_7d as f64 / self.activation_tenants_7d as f64
        } else {
            0.0
        }
    }

    /// The snapshot as a registry of gauges, encoded after the process's own metrics.
    fn registry(&self) -> Registry {
        let mut registry = Registry::with_prefix(PREFIX);
        let queued = Family::<KindLabel, Gauge>::default();
        let oldest = Family::<KindLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        for q in &self.jobs {
            let label = KindLabel {
                kind: q.kind.clone(),
            };
            queued.get_or_create(&label).set(q.queued);
            oldest.get_or_create(&label).set(q.oldest_age_seconds);
        }
        registry.register(
            "jobs_queued",
            "Jobs queued or running (not yet done or dead), by kind, from the database",
            queued,
        );
        registry.register_with_unit(
            "jobs_oldest_age",
            "Age of the oldest due job queued or running, from when it became due, by kind (0 when none)",
            Unit::Seconds,
            oldest,
        );
        let rate = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        rate.set(self.activation_rate_7d());
        registry.register(
            "activation_rate_7d",
            "Share (0..1) of the tenants whose payment was confirmed in the last 7 days that ran a first query",
            rate,
        );
        let tenants = Gauge::<i64>::default();
        tenants.set(self.activation_tenants_7d);
        registry.register(
            "activation_tenants_7d",
            "Tenants whose payment was confirmed in the last 7 days",
            tenants,
        );
        registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample lines of `text`: `name{labels} value`, comments skipped.
    fn samples(text: &str) -> Vec<(&str, f64)> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect("name and value");
                (series, value.parse::<f64>().expect("a number"))
            })
            .collect()
    }

    #[test]
    fn every_family_is_described_and_counters_end_in_total() {
        let m = Metrics::new();
        m.signups.inc();
        m.email("welcome", true);
        m.email("welcome", false);
        m.http_request("GET", Cow::Borrowed("/tenants/{tenant_id}"), 404, 0.003);
        m.provisioning_duration.observe(4.0);
        let text = m.render(Some(&Snapshot {
            jobs: vec![JobQueue {
                kind: "send_email".into(),
                queued: 3,
                oldest_age_seconds: 12.5,
            }],
            activation_tenants_7d: 4,
            activated_7d: 1,
        }));
        for (name, kind) in [
            ("onboard_signups_total", "counter"),
            ("onboard_emails_sent_total", "counter"),
            ("onboard_http_requests_total", "counter"),
            ("onboard_http_request_duration_seconds", "histogram"),
            ("onboard_provisioning_duration_seconds", "histogram"),
            ("onboard_jobs_queued", "gauge"),
            ("onboard_jobs_oldest_age_seconds", "gauge"),
            ("onboard_activation_rate_7d", "gauge"),
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}: {text}");
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name}: {text}"
            );
        }
        let s = samples(&text);
        let value = |series: &str| {
            s.iter()
                .find(|(n, _)| *n == series)
                .unwrap_or_else(|| panic!("{series} in {text}"))
                .1
        };
        assert_eq!(value("onboard_signups_total"), 1.0);
        assert_eq!(value("onboard_emails_sent_total{kind=\"welcome\"}"), 1.0);
        assert_eq!(value("onboard_emails_failed_total{kind=\"welcome\"}"), 1.0);
        assert_eq!(
            value(
                "onboard_http_requests_total{method=\"GET\",route=\"/tenants/{tenant_id}\",status=\"404\"}"
            ),
            1.0
        );
        assert_eq!(
            value("onboard_provisioning_duration_seconds_bucket{le=\"2.5\"}"),
            0.0
        );
        assert_eq!(
            value("onboard_provisioning_duration_seconds_bucket{le=\"5\"}"),
            1.0
        );
        assert_eq!(
            value("onboard_provisioning_duration_seconds_bucket{le=\"+Inf\"}"),
            1.0
        );
        assert_eq!(value("onboard_jobs_queued{kind=\"send_email\"}"), 3.0);
        assert_eq!(
            value("onboard_jobs_oldest_age_seconds{kind=\"send_email\"}"),
            12.5
        );
        assert_eq!(value("onboard_activation_rate_7d"), 0.25);
        assert_eq!(value("onboard_activation_tenants_7d"), 4.0);
    }

    #[test]
    fn no_paying_tenant_is_a_zero_rate() {
        assert_eq!(Snapshot::default().activation_rate_7d(), 0.0);
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("BREW"), "other");
    }
}
