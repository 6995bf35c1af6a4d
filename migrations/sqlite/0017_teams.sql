-- Teams: a tenant has users (the signup's email is its first user, the owner), each with a role;
-- the password, sessions and single-use sign-in links move from the tenant to the user. Members
-- join through invitations. API keys carry the role they act with and who created them.

CREATE TABLE users (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    email            TEXT NOT NULL,
    -- One email, one user, across every tenant (compared case-insensitively).
    email_normalized TEXT NOT NULL UNIQUE,
    name             TEXT NOT NULL DEFAULT '',
    password_hash    TEXT NOT NULL,
    role             TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX users_tenant_idx ON users (tenant_id, created_at);

-- Every tenant's signup becomes its owner (`usr_` + the tenant id's ULID).
INSERT INTO users (id, tenant_id, email, email_normalized, name, password_hash, role, created_at, updated_at)
SELECT 'usr_' || substr(id, 8), id, email, email_normalized, '', password_hash, 'owner', created_at, updated_at
FROM tenants;

ALTER TABLE tenants DROP COLUMN password_hash;

ALTER TABLE sessions ADD COLUMN user_id TEXT REFERENCES users (id);
UPDATE sessions SET user_id = 'usr_' || substr(tenant_id, 8);
CREATE INDEX sessions_user_idx ON sessions (user_id);

ALTER TABLE login_tokens ADD COLUMN user_id TEXT REFERENCES users (id);
UPDATE login_tokens SET user_id = 'usr_' || substr(tenant_id, 8);

ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'owner';
ALTER TABLE api_keys ADD COLUMN created_by TEXT;

-- An invitation: a single-use link (only its hash is kept) that expires; resending replaces it.
-- At most one open (not accepted, not revoked) invitation per email and tenant.
CREATE TABLE invitations (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    email            TEXT NOT NULL,
    email_normalized TEXT NOT NULL,
    role             TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    token_hash       TEXT NOT NULL UNIQUE,
    invited_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    sent_at          BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    accepted_at      BIGINT,
    accepted_user_id TEXT,
    revoked_at       BIGINT
);
CREATE UNIQUE INDEX invitations_open_idx ON invitations (tenant_id, email_normalized)
    WHERE accepted_at IS NULL AND revoked_at IS NULL;
CREATE INDEX invitations_tenant_idx ON invitations (tenant_id, created_at);

-- The funnel's optional step after activation, "invited a teammate": tenants that activated
-- (a first query) and had a member join. Kept in the rollup by its own trigger, which moves the
-- tenant's contribution exactly as the main rollup trigger does.
ALTER TABLE tenant_activation ADD COLUMN member_joined_at BIGINT;
ALTER TABLE activation_rollup ADD COLUMN teammate BIGINT NOT NULL DEFAULT 0;

CREATE TRIGGER tenant_activation_rollup_teammate AFTER UPDATE OF signed_up_at, plan, variant, first_query_at, member_joined_at ON tenant_activation
WHEN (OLD.member_joined_at IS NOT NULL AND OLD.first_query_at IS NOT NULL)
  OR (NEW.member_joined_at IS NOT NULL AND NEW.first_query_at IS NOT NULL)
BEGIN
    INSERT INTO activation_rollup (day, plan, variant, teammate)
        VALUES (OLD.signed_up_at / 86400000, OLD.plan, COALESCE(OLD.variant, ''),
                CASE WHEN OLD.member_joined_at IS NOT NULL AND OLD.first_query_at IS NOT NULL THEN -1 ELSE 0 END)
        ON CONFLICT (day, plan, variant) DO UPDATE SET teammate = activation_rollup.teammate + excluded.teammate;
    INSERT INTO activation_rollup (day, plan, variant, teammate)
        VALUES (NEW.signed_up_at / 86400000, NEW.plan, COALESCE(NEW.variant, ''),
                CASE WHEN NEW.member_joined_at IS NOT NULL AND NEW.first_query_at IS NOT NULL THEN 1 ELSE 0 END)
        ON CONFLICT (day, plan, variant) DO UPDATE SET teammate = activation_rollup.teammate + excluded.teammate;
END;

CREATE TRIGGER tenant_activation_rollup_teammate_delete AFTER DELETE ON tenant_activation
WHEN OLD.member_joined_at IS NOT NULL AND OLD.first_query_at IS NOT NULL
BEGIN
    INSERT INTO activation_rollup (day, plan, variant, teammate)
        VALUES (OLD.signed_up_at / 86400000, OLD.plan, COALESCE(OLD.variant, ''), -1)
        ON CONFLICT (day, plan, variant) DO UPDATE SET teammate = activation_rollup.teammate - 1;
END;
