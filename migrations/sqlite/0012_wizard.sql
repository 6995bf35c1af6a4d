-- The setup wizard's A/B test: each tenant's variant (assigned once, deterministically from its
-- id and WIZARD_SPLIT, and kept), and the steps it chose to skip.
ALTER TABLE tenant_activation ADD COLUMN variant TEXT;
CREATE TABLE wizard_skips (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    variant   TEXT NOT NULL,
    step      BIGINT NOT NULL,
    at        BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, variant, step)
);
