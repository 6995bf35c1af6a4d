-- The subscription after day one (domain::subscription): the newest observed subscription
-- status with its Stripe time, and the newest subscription details (plan, cancel at period
-- end, trial end) with theirs; when the tenant was canceled (its data is erased
-- DEPROVISION_GRACE_DAYS later) and when it was erased.
ALTER TABLE tenants ADD COLUMN subscription_status TEXT;
ALTER TABLE tenants ADD COLUMN subscription_at BIGINT;
ALTER TABLE tenants ADD COLUMN billing_details_at BIGINT;
ALTER TABLE tenants ADD COLUMN cancel_at_period_end BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN trial_end BIGINT;
ALTER TABLE tenants ADD COLUMN canceled_at BIGINT;
ALTER TABLE tenants ADD COLUMN erased_at BIGINT;
CREATE INDEX tenants_stripe_subscription_idx ON tenants (stripe_subscription_id);
CREATE INDEX tenants_stripe_customer_idx ON tenants (stripe_customer_id);

-- Marketing consent: the current answer on the tenant, and every answer given (time, source,
-- client address) as the record a regulator asks for. Unsubscribing is an answer too.
ALTER TABLE tenants ADD COLUMN marketing_opt_in BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN unsubscribed_at BIGINT;
CREATE TABLE consent_events (
    id BIGSERIAL PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    purpose    TEXT NOT NULL,
    granted    BIGINT NOT NULL,
    source     TEXT NOT NULL,
    client     TEXT,
    at         BIGINT NOT NULL
);
CREATE INDEX consent_events_tenant_idx ON consent_events (tenant_id, id);

-- Events name their tenant once processed (for `onboard events list/replay --tenant`), and are
-- replayed in Stripe's order.
ALTER TABLE webhook_events ADD COLUMN tenant_id TEXT;
CREATE INDEX webhook_events_created_idx ON webhook_events (created);
CREATE INDEX webhook_events_tenant_idx ON webhook_events (tenant_id);

-- Whether an email is transactional, lifecycle or marketing (the last two stop after an
-- unsubscribe).
ALTER TABLE email_outbox ADD COLUMN category TEXT NOT NULL DEFAULT 'transactional';
