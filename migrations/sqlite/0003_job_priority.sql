-- Jobs carry a priority so that work on a customer's critical path (provisioning) is claimed
-- before work that can wait (emails, housekeeping) when a burst arrives.
ALTER TABLE jobs ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;
DROP INDEX jobs_claim_idx;
CREATE INDEX jobs_claim_idx ON jobs (status, priority, run_at);
