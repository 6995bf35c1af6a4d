-- Activation events (the seed's six, and the wizard's), from the server itself or reported by
-- a client (`POST /activation/track`; a client's `event_id` makes retries idempotent). A client
-- milestone the server has no record of is kept, flagged.
CREATE TABLE activation_events (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    event_type      TEXT NOT NULL,
    source          TEXT NOT NULL,
    client_event_id TEXT,
    metadata        TEXT NOT NULL,
    flagged         BIGINT NOT NULL DEFAULT 0,
    occurred_at     BIGINT NOT NULL
);
CREATE UNIQUE INDEX activation_events_client_idx ON activation_events (tenant_id, client_event_id);
CREATE INDEX activation_events_type_idx ON activation_events (event_type, source);
CREATE INDEX activation_events_at_idx ON activation_events (occurred_at);

-- One row per tenant with the time of each funnel step, kept as events arrive, so the metrics
-- count distinct tenants without reading the event log.
CREATE TABLE tenant_activation (
    tenant_id         TEXT PRIMARY KEY REFERENCES tenants (id),
    plan              TEXT NOT NULL,
    signed_up_at      BIGINT NOT NULL,
    paid_at           BIGINT,
    provisioned_at    BIGINT,
    first_login_at    BIGINT,
    first_document_at BIGINT,
    first_query_at    BIGINT,
    integration_at    BIGINT
);
CREATE INDEX tenant_activation_signup_idx ON tenant_activation (signed_up_at);

-- Tenants that signed up before this migration.
INSERT INTO tenant_activation (tenant_id, plan, signed_up_at, paid_at, provisioned_at, first_login_at, first_document_at, first_query_at)
SELECT t.id, t.plan, t.created_at,
       (SELECT MIN(h.at) FROM tenant_status_history h WHERE h.tenant_id = t.id AND h.to_status = 'provisioning'),
       t.activated_at,
       (SELECT m.occurred_at FROM activation_milestones m WHERE m.tenant_id = t.id AND m.milestone = 'first_login'),
       (SELECT m.occurred_at FROM activation_milestones m WHERE m.tenant_id = t.id AND m.milestone = 'first_document_upload'),
       (SELECT m.occurred_at FROM activation_milestones m WHERE m.tenant_id = t.id AND m.milestone = 'first_query_executed')
FROM tenants t;

-- The funnel steps the database itself sees, written by the statements that make them (no
-- extra round trip on signup, payment or activation): a new tenant's row and its
-- `signup_completed`; the first payment (pending_payment → provisioning) and its
-- `payment_confirmed`; the first activation.
CREATE TRIGGER tenants_activation_insert AFTER INSERT ON tenants
BEGIN
    INSERT INTO tenant_activation (tenant_id, plan, signed_up_at) VALUES (NEW.id, NEW.plan, NEW.created_at)
        ON CONFLICT (tenant_id) DO NOTHING;
    INSERT INTO activation_events (id, tenant_id, event_type, source, client_event_id, metadata, flagged, occurred_at)
        VALUES ('aev_' || lower(hex(randomblob(16))), NEW.id, 'signup_completed', 'server', NULL, '{}', 0, NEW.created_at);
END;

CREATE TRIGGER tenants_activation_paid AFTER UPDATE OF status ON tenants
WHEN OLD.status = 'pending_payment' AND NEW.status = 'provisioning'
BEGIN
    INSERT INTO activation_events (id, tenant_id, event_type, source, client_event_id, metadata, flagged, occurred_at)
        SELECT 'aev_' || lower(hex(randomblob(16))), NEW.id, 'payment_confirmed', 'server', NULL, '{}', 0, NEW.updated_at
        WHERE EXISTS (SELECT 1 FROM tenant_activation WHERE tenant_id = NEW.id AND paid_at IS NULL);
    UPDATE tenant_activation SET paid_at = NEW.updated_at WHERE tenant_id = NEW.id AND paid_at IS NULL;
END;

CREATE TRIGGER tenants_activation_active AFTER UPDATE OF status ON tenants
WHEN NEW.status = 'active' AND OLD.status IS NOT 'active'
BEGIN
    UPDATE tenant_activation SET provisioned_at = NEW.updated_at WHERE tenant_id = NEW.id AND provisioned_at IS NULL;
END;

-- The plan follows the subscription.
CREATE TRIGGER tenants_activation_plan AFTER UPDATE OF plan ON tenants
WHEN NEW.plan IS NOT OLD.plan
BEGIN
    UPDATE tenant_activation SET plan = NEW.plan WHERE tenant_id = NEW.id;
END;
