-- Tenants, their status history and the shared rate-limit counters.
-- Timestamps are Unix milliseconds (BIGINT) in both backends so SQL is shared.
CREATE TABLE tenants (
    id                          TEXT PRIMARY KEY,
    email                       TEXT NOT NULL,
    email_normalized            TEXT NOT NULL UNIQUE,
    company_name                TEXT NOT NULL,
    password_hash               TEXT NOT NULL,
    plan                        TEXT NOT NULL,
    status                      TEXT NOT NULL,
    status_reason               TEXT,
    stripe_checkout_session_id  TEXT UNIQUE,
    stripe_customer_id          TEXT,
    stripe_subscription_id      TEXT,
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL,
    activated_at                BIGINT
);
CREATE INDEX tenants_status_idx ON tenants (status, updated_at);

CREATE TABLE tenant_status_history (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    from_status TEXT,
    to_status   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX tenant_status_history_tenant_idx ON tenant_status_history (tenant_id, id);

CREATE TABLE rate_limits (
    key          TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    hits         BIGINT NOT NULL
);
