-- Email delivery sends each email once: the stable Message-ID of the email (a resend after an
-- unknown outcome carries the same one), who claimed the delivery in flight, and how many times
-- its outcome was unknown.
ALTER TABLE email_outbox ADD COLUMN message_id TEXT;
ALTER TABLE email_outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE email_outbox ADD COLUMN claimed_at BIGINT;
ALTER TABLE email_outbox ADD COLUMN unknown_outcomes BIGINT NOT NULL DEFAULT 0;
