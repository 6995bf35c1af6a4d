-- The audit log (SOC2): who did what to which object, from where and when. Append-only: the
-- database refuses every UPDATE; rows leave only through the retention job's DELETE of entries
-- older than AUDIT_RETENTION_DAYS. The id orders entries (newest first = highest id) and is the
-- paging cursor; `detail` is a small JSON object.
CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     BIGINT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    ip     TEXT,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, id);
CREATE INDEX audit_log_action_idx ON audit_log (action, id);
CREATE INDEX audit_log_target_idx ON audit_log (target, id);

CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: entries cannot be changed');
END;

-- Every status change of a tenant, whichever code path makes it, in the transaction that makes
-- it (as the status history of migration 0005). The writer's `status_actor` says who: an
-- operator, the customer, Stripe (its webhook or the checkout session the success page read),
-- or else the system (provisioning, sweepers); it is kept as `detail.by`.
CREATE TRIGGER tenants_audit_status_insert AFTER INSERT ON tenants
BEGIN
    INSERT INTO audit_log (at, actor, action, target, ip, detail)
    VALUES (NEW.updated_at,
            CASE COALESCE(NEW.status_actor, 'system')
                WHEN 'operator' THEN 'operator'
                WHEN 'customer' THEN 'tenant:' || NEW.id
                WHEN 'stripe webhook' THEN 'stripe'
                WHEN 'success page' THEN 'stripe'
                ELSE 'system' END,
            'tenant.status_changed', NEW.id, NULL,
            json_object('from', NULL, 'to', NEW.status, 'reason', COALESCE(NEW.status_reason, ''),
                        'by', COALESCE(NEW.status_actor, 'system')));
END;

CREATE TRIGGER tenants_audit_status_update AFTER UPDATE OF status ON tenants
WHEN NEW.status IS NOT OLD.status
BEGIN
    INSERT INTO audit_log (at, actor, action, target, ip, detail)
    VALUES (NEW.updated_at,
            CASE COALESCE(NEW.status_actor, 'system')
                WHEN 'operator' THEN 'operator'
                WHEN 'customer' THEN 'tenant:' || NEW.id
                WHEN 'stripe webhook' THEN 'stripe'
                WHEN 'success page' THEN 'stripe'
                ELSE 'system' END,
            'tenant.status_changed', NEW.id, NULL,
            json_object('from', OLD.status, 'to', NEW.status, 'reason', COALESCE(NEW.status_reason, ''),
                        'by', COALESCE(NEW.status_actor, 'system')));
END;
