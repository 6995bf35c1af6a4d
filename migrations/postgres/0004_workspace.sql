-- The tenant's workspace: documents, login sessions and failures, activation milestones, usage
-- counters, and a version per vector namespace (bumped by every write, so each process can tell
-- whether its in-memory copy of a namespace is current).
ALTER TABLE vector_namespaces ADD COLUMN version BIGINT NOT NULL DEFAULT 0;

CREATE TABLE documents (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    id           TEXT NOT NULL,
    title        TEXT NOT NULL,
    content_type TEXT NOT NULL,
    content      TEXT NOT NULL,
    metadata     TEXT NOT NULL,
    bytes        BIGINT NOT NULL,
    chunk_count  BIGINT NOT NULL,
    sample       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX documents_tenant_created_idx ON documents (tenant_id, created_at);

CREATE TABLE sessions (
    id_hash      TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    method       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX sessions_tenant_idx ON sessions (tenant_id);

CREATE TABLE login_failures (
    email     TEXT NOT NULL,
    failed_at BIGINT NOT NULL
);
CREATE INDEX login_failures_email_idx ON login_failures (email, failed_at);

CREATE TABLE activation_milestones (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    milestone   TEXT NOT NULL,
    source      TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    detail      TEXT,
    PRIMARY KEY (tenant_id, milestone)
);

CREATE TABLE usage_counters (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    period    TEXT NOT NULL,
    queries   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, period)
);
