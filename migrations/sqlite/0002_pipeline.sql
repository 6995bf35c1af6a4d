-- Webhook events, the job queue, provisioning steps, the workspace (namespaces, vectors, API keys),
-- the email outbox and single-use login tokens.
CREATE TABLE webhook_events (
    id           TEXT PRIMARY KEY,
    type         TEXT NOT NULL,
    object_id    TEXT,
    created      BIGINT NOT NULL,
    payload      TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    processed_at BIGINT,
    outcome      TEXT
);
CREATE INDEX webhook_events_object_idx ON webhook_events (object_id, type);

CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    run_at       BIGINT NOT NULL,
    locked_until BIGINT,
    locked_by    TEXT,
    last_error   TEXT,
    dedupe_key   TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    finished_at  BIGINT
);
CREATE INDEX jobs_claim_idx ON jobs (status, run_at);
-- At most one queued-or-running job per dedupe key (e.g. one provisioning run per tenant).
CREATE UNIQUE INDEX jobs_dedupe_idx ON jobs (dedupe_key) WHERE status IN ('queued', 'running');

CREATE TABLE provisioning_steps (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    step         TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    detail       TEXT,
    duration_ms  BIGINT NOT NULL,
    completed_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, step)
);

CREATE TABLE vector_namespaces (
    name       TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    dimension  BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE vectors (
    namespace  TEXT NOT NULL,
    id         TEXT NOT NULL,
    embedding  BLOB NOT NULL,
    metadata   TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (namespace, id)
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    name         TEXT NOT NULL,
    jti_hash     TEXT NOT NULL UNIQUE,
    scopes       TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    reveal_jti   TEXT,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    expires_at   BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id);

CREATE TABLE email_outbox (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT,
    kind          TEXT NOT NULL,
    dedupe_key    TEXT UNIQUE,
    to_email      TEXT NOT NULL,
    subject       TEXT NOT NULL,
    preheader     TEXT NOT NULL,
    text_body     TEXT NOT NULL,
    html_body     TEXT NOT NULL,
    headers       TEXT NOT NULL,
    status        TEXT NOT NULL,
    transport     TEXT,
    attempts      BIGINT NOT NULL DEFAULT 0,
    last_error    TEXT,
    created_at    BIGINT NOT NULL,
    sent_at       BIGINT
);

CREATE TABLE login_tokens (
    token_hash TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    purpose    TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    created_at BIGINT NOT NULL
);
