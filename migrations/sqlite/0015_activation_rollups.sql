-- Aggregates kept as events arrive, so `GET /activation/metrics` reads a few hundred rows instead
-- of the event log or every tenant, and so the funnel's history survives event retention:
--
-- * `activation_rollup`: per signup day (UTC, days since the epoch), plan and wizard variant
--   ('' before one is given), how many tenants reached each funnel step, activated within 24 h,
--   the sum of their signup → first query times, and per wizard step (1..4) how many viewed,
--   completed and skipped it. Kept by triggers on `tenant_activation`: an update takes the old
--   row's contribution out and puts the new row's in, so a plan change or a late milestone moves
--   the tenant between rows exactly.
-- * `activation_event_daily`: per day, event type and source, how many events were stored and
--   how many of them were flagged (a client milestone with no server record). Kept by a trigger
--   on `activation_events`; the retention job deletes raw events, never these.
--
-- The wizard's per-step progress moves from keyed events to bit sets on the tenant's row (bit
-- n-1 = step n), so views, completions and skips count distinct tenants and survive retention.

ALTER TABLE tenant_activation ADD COLUMN wizard_viewed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tenant_activation ADD COLUMN wizard_completed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tenant_activation ADD COLUMN wizard_skipped BIGINT NOT NULL DEFAULT 0;

-- Exact time-to-activation quantiles walk this index (covering: no table row is read) instead
-- of sorting every activated tenant.
ALTER TABLE tenant_activation ADD COLUMN activation_ms BIGINT GENERATED ALWAYS AS (first_query_at - signed_up_at) VIRTUAL;
CREATE INDEX tenant_activation_ttfq_idx ON tenant_activation (activation_ms, signed_up_at, plan, variant)
    WHERE activation_ms IS NOT NULL;

CREATE TABLE activation_rollup (
    day     BIGINT NOT NULL,
    plan    TEXT NOT NULL,
    variant TEXT NOT NULL,
    signups BIGINT NOT NULL DEFAULT 0,
    paid BIGINT NOT NULL DEFAULT 0,
    provisioned BIGINT NOT NULL DEFAULT 0,
    first_login BIGINT NOT NULL DEFAULT 0,
    first_document BIGINT NOT NULL DEFAULT 0,
    first_query BIGINT NOT NULL DEFAULT 0,
    integration BIGINT NOT NULL DEFAULT 0,
    activated_24h BIGINT NOT NULL DEFAULT 0,
    activation_ms_sum BIGINT NOT NULL DEFAULT 0,
    viewed1 BIGINT NOT NULL DEFAULT 0,
    viewed2 BIGINT NOT NULL DEFAULT 0,
    viewed3 BIGINT NOT NULL DEFAULT 0,
    viewed4 BIGINT NOT NULL DEFAULT 0,
    completed1 BIGINT NOT NULL DEFAULT 0,
    completed2 BIGINT NOT NULL DEFAULT 0,
    completed3 BIGINT NOT NULL DEFAULT 0,
    completed4 BIGINT NOT NULL DEFAULT 0,
    skipped1 BIGINT NOT NULL DEFAULT 0,
    skipped2 BIGINT NOT NULL DEFAULT 0,
    skipped3 BIGINT NOT NULL DEFAULT 0,
    skipped4 BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, plan, variant)
);

CREATE TABLE activation_event_daily (
    day        BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    source     TEXT NOT NULL,
    events     BIGINT NOT NULL DEFAULT 0,
    flagged    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, event_type, source)
);

-- The wizard's progress so far, from its keyed events and the skips.
UPDATE tenant_activation SET
    wizard_viewed = COALESCE((SELECT SUM(DISTINCT 1 << (CAST(substr(e.client_event_id, length(e.client_event_id)) AS INTEGER) - 1))
        FROM activation_events e WHERE e.tenant_id = tenant_activation.tenant_id AND e.source = 'server'
        AND e.client_event_id LIKE 'wizard:viewed:%' AND e.client_event_id LIKE '%:' || tenant_activation.variant || ':%'), 0),
    wizard_completed = COALESCE((SELECT SUM(DISTINCT 1 << (CAST(substr(e.client_event_id, length(e.client_event_id)) AS INTEGER) - 1))
        FROM activation_events e WHERE e.tenant_id = tenant_activation.tenant_id AND e.source = 'server'
        AND e.client_event_id LIKE 'wizard:completed:%' AND e.client_event_id LIKE '%:' || tenant_activation.variant || ':%'), 0),
    wizard_skipped = COALESCE((SELECT SUM(DISTINCT 1 << (s.step - 1)) FROM wizard_skips s
        WHERE s.tenant_id = tenant_activation.tenant_id AND s.variant = tenant_activation.variant), 0)
WHERE variant IS NOT NULL;

-- The rollups of what is there already.
INSERT INTO activation_rollup (day, plan, variant, signups, paid, provisioned, first_login, first_document, first_query, integration, activated_24h, activation_ms_sum, viewed1, viewed2, viewed3, viewed4, completed1, completed2, completed3, completed4, skipped1, skipped2, skipped3, skipped4)
SELECT signed_up_at / 86400000, plan, COALESCE(variant, ''), COUNT(*), COUNT(paid_at), COUNT(provisioned_at), COUNT(first_login_at),
       COUNT(first_document_at), COUNT(first_query_at), COUNT(integration_at),
       SUM(CASE WHEN first_query_at - signed_up_at <= 86400000 THEN 1 ELSE 0 END),
       COALESCE(SUM(first_query_at - signed_up_at), 0),
       SUM((wizard_viewed >> 0) & 1),
       SUM((wizard_viewed >> 1) & 1),
       SUM((wizard_viewed >> 2) & 1),
       SUM((wizard_viewed >> 3) & 1),
       SUM((wizard_completed >> 0) & 1),
       SUM((wizard_completed >> 1) & 1),
       SUM((wizard_completed >> 2) & 1),
       SUM((wizard_completed >> 3) & 1),
       SUM((wizard_skipped >> 0) & 1),
       SUM((wizard_skipped >> 1) & 1),
       SUM((wizard_skipped >> 2) & 1),
       SUM((wizard_skipped >> 3) & 1)
FROM tenant_activation GROUP BY signed_up_at / 86400000, plan, COALESCE(variant, '');

INSERT INTO activation_event_daily (day, event_type, source, events, flagged)
SELECT occurred_at / 86400000, event_type, source, COUNT(*), SUM(flagged)
FROM activation_events GROUP BY occurred_at / 86400000, event_type, source;

CREATE TRIGGER tenant_activation_rollup_insert AFTER INSERT ON tenant_activation
BEGIN
    INSERT INTO activation_rollup (day, plan, variant, signups, paid, provisioned, first_login, first_document, first_query, integration, activated_24h, activation_ms_sum, viewed1, viewed2, viewed3, viewed4, completed1, completed2, completed3, completed4, skipped1, skipped2, skipped3, skipped4)
        VALUES (NEW.signed_up_at / 86400000, NEW.plan, COALESCE(NEW.variant, ''), 1, (CASE WHEN NEW.paid_at IS NOT NULL THEN 1 ELSE 0 END), (CASE WHEN NEW.provisioned_at IS NOT NULL THEN 1 ELSE 0 END), (CASE WHEN NEW.first_login_at IS NOT NULL THEN 1 ELSE 0 END), (CASE WHEN NEW.first_document_at IS NOT NULL THEN 1 ELSE 0 END), (CASE WHEN NEW.first_query_at IS NOT NULL THEN 1 ELSE 0 END), (CASE WHEN NEW.integration_at IS NOT NULL THEN 1 ELSE 0 END), (CASE WHEN NEW.first_query_at - NEW.signed_up_at <= 86400000 THEN 1 ELSE 0 END), 1 * COALESCE(NEW.first_query_at - NEW.signed_up_at, 0), 1 * ((NEW.wizard_viewed >> 0) & 1), 1 * ((NEW.wizard_viewed >> 1) & 1), 1 * ((NEW.wizard_viewed >> 2) & 1), 1 * ((NEW.wizard_viewed >> 3) & 1), 1 * ((NEW.wizard_completed >> 0) & 1), 1 * ((NEW.wizard_completed >> 1) & 1), 1 * ((NEW.wizard_completed >> 2) & 1), 1 * ((NEW.wizard_completed >> 3) & 1), 1 * ((NEW.wizard_skipped >> 0) & 1), 1 * ((NEW.wizard_skipped >> 1) & 1), 1 * ((NEW.wizard_skipped >> 2) & 1), 1 * ((NEW.wizard_skipped >> 3) & 1))
        ON CONFLICT (day, plan, variant) DO UPDATE SET signups = activation_rollup.signups + excluded.signups, paid = activation_rollup.paid + excluded.paid, provisioned = activation_rollup.provisioned + excluded.provisioned, first_login = activation_rollup.first_login + excluded.first_login, first_document = activation_rollup.first_document + excluded.first_document, first_query = activation_rollup.first_query + excluded.first_query, integration = activation_rollup.integration + excluded.integration, activated_24h = activation_rollup.activated_24h + excluded.activated_24h, activation_ms_sum = activation_rollup.activation_ms_sum + excluded.activation_ms_sum, viewed1 = activation_rollup.viewed1 + excluded.viewed1, viewed2 = activation_rollup.viewed2 + excluded.viewed2, viewed3 = activation_rollup.viewed3 + excluded.viewed3, viewed4 = activation_rollup.viewed4 + excluded.viewed4, completed1 = activation_rollup.completed1 + excluded.completed1, completed2 = activation_rollup.completed2 + excluded.completed2, completed3 = activation_rollup.completed3 + excluded.completed3, completed4 = activation_rollup.completed4 + excluded.completed4, skipped1 = activation_rollup.skipped1 + excluded.skipped1, skipped2 = activation_rollup.skipped2 + excluded.skipped2, skipped3 = activation_rollup.skipped3 + excluded.skipped3, skipped4 = activation_rollup.skipped4 + excluded.skipped4;
END;

-- Only updates of what the rollup counts (not, say, the at-risk bookkeeping of migration 0013).
CREATE TRIGGER tenant_activation_rollup_update AFTER UPDATE OF signed_up_at, plan, variant, paid_at, provisioned_at, first_login_at, first_document_at, first_query_at, integration_at, wizard_viewed, wizard_completed, wizard_skipped ON tenant_activation
BEGIN
    INSERT INTO activation_rollup (day, plan, variant, signups, paid, provisioned, first_login, first_document, first_query, integration, activated_24h, activation_ms_sum, viewed1, viewed2, viewed3, viewed4, completed1, completed2, completed3, completed4, skipped1, skipped2, skipped3, skipped4)
        VALUES (OLD.signed_up_at / 86400000, OLD.plan, COALESCE(OLD.variant, ''), -1, (CASE WHEN OLD.paid_at IS NOT NULL THEN -1 ELSE 0 END), (CASE WHEN OLD.provisioned_at IS NOT NULL THEN -1 ELSE 0 END), (CASE WHEN OLD.first_login_at IS NOT NULL THEN -1 ELSE 0 END), (CASE WHEN OLD.first_document_at IS NOT NULL THEN -1 ELSE 0 END), (CASE WHEN OLD.first_query_at IS NOT NULL THEN -1 ELSE 0 END), (CASE WHEN OLD.integration_at IS NOT NULL THEN -1 ELSE 0 END), (CASE WHEN OLD.first_query_at - OLD.signed_up_at <= 86400000 THEN -1 ELSE 0 END), -1 * COALESCE(OLD.first_query_at - OLD.signed_up_at, 0), -1 * ((OLD.wizard_viewed >> 0) & 1), -1 * ((OLD.wizard_viewed >> 1) & 1), -1 * ((OLD.wizard_viewed >> 2) & 1), -1 * ((OLD.wizard_viewed >> 3) & 1), -1 * ((OLD.wizard_completed >> 0) & 1), -1 * ((OLD.wizard_completed >> 1) & 1), -1 * ((OLD.wizard_completed >> 2) & 1), -1 * ((OLD.wizard_completed >> 3) & 1), -1 * ((OLD.wizard_skipped >> 0) & 1), -1 * ((OLD.wizard_skipped >> 1) & 1), -1 * ((OLD.wizard_skipped >> 2) & 1), -1 * ((OLD.wizard_skipped >> 3) & 1))
        ON CONFLICT (day, plan, variant) DO UPDATE SET signups = activation_rollup.signups + excluded.signups, paid = activation_rollup.paid + excluded.paid, provisioned = activation_rollup.provisioned + excluded.provisioned, first_login = activation_rollup.first_login + excluded.first_login, first_document = activation_rollup.first_document + excluded.first_document, first_query = activation_rollup.first_query + excluded.first_query, integration = activation_rollup.integration + excluded.integration, activated_24h = activation_rollup.activated_24h + excluded.activated_24h, activation_ms_sum = activation_rollup.activation_ms_sum + excluded.activation_ms_sum, viewed1 = activation_rollup.viewed1 + excluded.viewed1, viewed2 = activation_rollup.viewed2 + excluded.viewed2, viewed3 = activation_rollup.viewed3 + excluded.viewed3, viewed4 = activation_rollup.viewed4 + excluded.viewed4, completed1 = activation_rollup.completed1 + excluded.completed1, completed2 = activation_rollup.completed2 + excluded.completed2, completed3 = activation_rollup.completed3 + excluded.completed3, completed4 = activation_rollup.completed4 + excluded.completed4, skipped1 = activation_rollup.skipped1 + excluded.skipped1, skipped2 = activation_rollup.skipped2 + excluded.skipped2, skipped3 = activation_rollup.skipped3 + excluded.skipped3, skipped4 = activation_rollup.skipped4 + excluded.skipped4;
    INSERT INTO activation_rollup (day, plan, variant, signups, paid, provisioned, first_login, first_document, first_query, integration, activated_24h, activation_ms_sum, viewed1, viewed2, viewed3, viewed4, completed1, completed2, completed3, completed4, skipped1, skipped2, skipped3, skipped4)
        VALUES (NEW.signed_up_at / 86400000, NEW.plan, COALESCE(NEW.variant, ''), 1, (CASE WHEN NEW.paid_at IS NOT NULL THEN 1 ELSE 0 END), (CASE WHEN NEW.provisioned_at IS NOT NULL THEN 1 ELSE 0 END), (CASE WHEN NEW.first_login_at IS NOT NULL THEN 1 ELSE 0 END), (CASE WHEN NEW.first_document_at IS NOT NULL THEN 1 ELSE 0 END), (CASE WHEN NEW.first_query_at IS NOT NULL THEN 1 ELSE 0 END), (CASE WHEN NEW.integration_at IS NOT NULL THEN 1 ELSE 0 END), (CASE WHEN NEW.first_query_at - NEW.signed_up_at <= 86400000 THEN 1 ELSE 0 END), 1 * COALESCE(NEW.first_query_at - NEW.signed_up_at, 0), 1 * ((NEW.wizard_viewed >> 0) & 1), 1 * ((NEW.wizard_viewed >> 1) & 1), 1 * ((NEW.wizard_viewed >> 2) & 1), 1 * ((NEW.wizard_viewed >> 3) & 1), 1 * ((NEW.wizard_completed >> 0) & 1), 1 * ((NEW.wizard_completed >> 1) & 1), 1 * ((NEW.wizard_completed >> 2) & 1), 1 * ((NEW.wizard_completed >> 3) & 1), 1 * ((NEW.wizard_skipped >> 0) & 1), 1 * ((NEW.wizard_skipped >> 1) & 1), 1 * ((NEW.wizard_skipped >> 2) & 1), 1 * ((NEW.wizard_skipped >> 3) & 1))
        ON CONFLICT (day, plan, variant) DO UPDATE SET signups = activation_rollup.signups + excluded.signups, paid = activation_rollup.paid + excluded.paid, provisioned = activation_rollup.provisioned + excluded.provisioned, first_login = activation_rollup.first_login + excluded.first_login, first_document = activation_rollup.first_document + excluded.first_document, first_query = activation_rollup.first_query + excluded.first_query, integration = activation_rollup.integration + excluded.integration, activated_24h = activation_rollup.activated_24h + excluded.activated_24h, activation_ms_sum = activation_rollup.activation_ms_sum + excluded.activation_ms_sum, viewed1 = activation_rollup.viewed1 + excluded.viewed1, viewed2 = activation_rollup.viewed2 + excluded.viewed2, viewed3 = activation_rollup.viewed3 + excluded.viewed3, viewed4 = activation_rollup.viewed4 + excluded.viewed4, completed1 = activation_rollup.completed1 + excluded.completed1, completed2 = activation_rollup.completed2 + excluded.completed2, completed3 = activation_rollup.completed3 + excluded.completed3, completed4 = activation_rollup.completed4 + excluded.completed4, skipped1 = activation_rollup.skipped1 + excluded.skipped1, skipped2 = activation_rollup.skipped2 + excluded.skipped2, skipped3 = activation_rollup.skipped3 + excluded.skipped3, skipped4 = activation_rollup.skipped4 + excluded.skipped4;
END;

CREATE TRIGGER tenant_activation_rollup_delete AFTER DELETE ON tenant_activation
BEGIN
    INSERT INTO activation_rollup (day, plan, variant, signups, paid, provisioned, first_login, first_document, first_query, integration, activated_24h, activation_ms_sum, viewed1, viewed2, viewed3, viewed4, completed1, completed2, completed3, completed4, skipped1, skipped2, skipped3, skipped4)
        VALUES (OLD.signed_up_at / 86400000, OLD.plan, COALESCE(OLD.variant, ''), -1, (CASE WHEN OLD.paid_at IS NOT NULL THEN -1 ELSE 0 END), (CASE WHEN OLD.provisioned_at IS NOT NULL THEN -1 ELSE 0 END), (CASE WHEN OLD.first_login_at IS NOT NULL THEN -1 ELSE 0 END), (CASE WHEN OLD.first_document_at IS NOT NULL THEN -1 ELSE 0 END), (CASE WHEN OLD.first_query_at IS NOT NULL THEN -1 ELSE 0 END), (CASE WHEN OLD.integration_at IS NOT NULL THEN -1 ELSE 0 END), (CASE WHEN OLD.first_query_at - OLD.signed_up_at <= 86400000 THEN -1 ELSE 0 END), -1 * COALESCE(OLD.first_query_at - OLD.signed_up_at, 0), -1 * ((OLD.wizard_viewed >> 0) & 1), -1 * ((OLD.wizard_viewed >> 1) & 1), -1 * ((OLD.wizard_viewed >> 2) & 1), -1 * ((OLD.wizard_viewed >> 3) & 1), -1 * ((OLD.wizard_completed >> 0) & 1), -1 * ((OLD.wizard_completed >> 1) & 1), -1 * ((OLD.wizard_completed >> 2) & 1), -1 * ((OLD.wizard_completed >> 3) & 1), -1 * ((OLD.wizard_skipped >> 0) & 1), -1 * ((OLD.wizard_skipped >> 1) & 1), -1 * ((OLD.wizard_skipped >> 2) & 1), -1 * ((OLD.wizard_skipped >> 3) & 1))
        ON CONFLICT (day, plan, variant) DO UPDATE SET signups = activation_rollup.signups + excluded.signups, paid = activation_rollup.paid + excluded.paid, provisioned = activation_rollup.provisioned + excluded.provisioned, first_login = activation_rollup.first_login + excluded.first_login, first_document = activation_rollup.first_document + excluded.first_document, first_query = activation_rollup.first_query + excluded.first_query, integration = activation_rollup.integration + excluded.integration, activated_24h = activation_rollup.activated_24h + excluded.activated_24h, activation_ms_sum = activation_rollup.activation_ms_sum + excluded.activation_ms_sum, viewed1 = activation_rollup.viewed1 + excluded.viewed1, viewed2 = activation_rollup.viewed2 + excluded.viewed2, viewed3 = activation_rollup.viewed3 + excluded.viewed3, viewed4 = activation_rollup.viewed4 + excluded.viewed4, completed1 = activation_rollup.completed1 + excluded.completed1, completed2 = activation_rollup.completed2 + excluded.completed2, completed3 = activation_rollup.completed3 + excluded.completed3, completed4 = activation_rollup.completed4 + excluded.completed4, skipped1 = activation_rollup.skipped1 + excluded.skipped1, skipped2 = activation_rollup.skipped2 + excluded.skipped2, skipped3 = activation_rollup.skipped3 + excluded.skipped3, skipped4 = activation_rollup.skipped4 + excluded.skipped4;
END;

CREATE TRIGGER activation_events_daily AFTER INSERT ON activation_events
BEGIN
    INSERT INTO activation_event_daily (day, event_type, source, events, flagged)
        VALUES (NEW.occurred_at / 86400000, NEW.event_type, NEW.source, 1, NEW.flagged)
        ON CONFLICT (day, event_type, source) DO UPDATE SET events = activation_event_daily.events + 1,
            flagged = activation_event_daily.flagged + excluded.flagged;
END;

-- Retention (EVENT_RETENTION_DAYS) expires raw webhook payloads oldest first; this index holds
-- only the payloads still kept, so each run starts where the last one stopped.
CREATE INDEX webhook_events_kept_idx ON webhook_events (received_at)
    WHERE payload <> '{"expired":true}' AND payload <> '{"erased":true}';

-- The per-type discrepancy counts read activation_event_daily now; this index only cost every
-- insert a write.
DROP INDEX activation_events_type_idx;
