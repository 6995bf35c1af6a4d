-- Stuck customers (`GET /activation/at-risk`, the daily digest to OPERATOR_EMAIL).
--
-- Each stuck reason of an active tenant is read off its row of funnel times through a partial
-- index that holds only the active tenants whose furthest milestone is that step, in the order
-- the list pages through (when the step was reached, then the tenant): listing and counting the
-- stuck ones, filtered by "needs a human" or not, reads those index entries, never every tenant,
-- the tenants table or the event log. For that the row carries the tenant's status (kept by
-- triggers, like its funnel times) and the reason of its open at-risk flag (kept with the flags).
-- A failed provisioning is found through `tenants_status_idx` (status, updated_at: the moment
-- of the last status change).
ALTER TABLE tenant_activation ADD COLUMN tenant_status TEXT;
ALTER TABLE tenant_activation ADD COLUMN at_risk_flag TEXT;
UPDATE tenant_activation SET tenant_status = (SELECT t.status FROM tenants t WHERE t.id = tenant_activation.tenant_id);

CREATE FUNCTION tenant_activation_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'tenant_activation' THEN
        NEW.tenant_status := (SELECT status FROM tenants WHERE id = NEW.tenant_id);
        RETURN NEW;
    END IF;
    UPDATE tenant_activation SET tenant_status = NEW.status WHERE tenant_id = NEW.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER tenant_activation_status_insert BEFORE INSERT ON tenant_activation
    FOR EACH ROW EXECUTE FUNCTION tenant_activation_status();

CREATE TRIGGER tenants_activation_status AFTER UPDATE OF status ON tenants
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION tenant_activation_status();

-- Each index's WHERE names its step's milestone as reached and the next ones as not, so a
-- query for one reason can use only its own index.
CREATE INDEX tenant_activation_no_login_idx ON tenant_activation (provisioned_at, tenant_id, at_risk_flag)
    WHERE tenant_status = 'active' AND provisioned_at IS NOT NULL AND first_login_at IS NULL
      AND first_document_at IS NULL AND first_query_at IS NULL;
CREATE INDEX tenant_activation_no_document_idx ON tenant_activation (first_login_at, tenant_id, at_risk_flag)
    WHERE tenant_status = 'active' AND first_login_at IS NOT NULL AND first_document_at IS NULL
      AND first_query_at IS NULL;
CREATE INDEX tenant_activation_no_query_idx ON tenant_activation (first_document_at, tenant_id, at_risk_flag)
    WHERE tenant_status = 'active' AND first_document_at IS NOT NULL AND first_query_at IS NULL;

-- What the digest told the operator: once per tenant and reason ("needs a human" while
-- `resolved_at` is NULL). `since` is when the tenant became stuck for that reason; a tenant
-- stuck again later for the same reason (provisioning failing once more) is a new episode,
-- digested again. `tenant_activation.at_risk_flag` mirrors the reason of the open flag last
-- written, for the indexes above.
CREATE TABLE at_risk_flags (
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    reason          TEXT NOT NULL,
    since           BIGINT NOT NULL,
    flagged_at      BIGINT NOT NULL,
    resolved_at     BIGINT,
    resolved_by     TEXT,
    resolution_note TEXT,
    PRIMARY KEY (tenant_id, reason)
);

-- One row per digest day (the UTC date AT_RISK_DIGEST_HOUR hours earlier), claimed by the run
-- that sends it, so the digest goes out once a day whichever process runs it.
CREATE TABLE at_risk_digests (
    day      TEXT PRIMARY KEY,
    ran_at   BIGINT NOT NULL,
    flagged  BIGINT NOT NULL,
    email_id TEXT
);
