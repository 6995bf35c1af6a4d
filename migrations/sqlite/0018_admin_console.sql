-- The operator console (`/admin`, src/http/console/): one row per sign-in with ADMIN_TOKEN,
-- behind an opaque HttpOnly cookie of which only the SHA-256 is kept, with the CSRF token every
-- console form must carry back. Expired rows are deleted at the next sign-in.
CREATE TABLE operator_sessions (
    id_hash    TEXT PRIMARY KEY,
    csrf_token TEXT NOT NULL,
    ip         TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX operator_sessions_expires_idx ON operator_sessions (expires_at);
