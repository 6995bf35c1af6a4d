-- Every status a tenant takes is recorded by the database itself: the statement that changes
-- the status writes the history row too, so no code path can forget it and a transition costs
-- one statement instead of two. The writer sets `status_reason` and `status_actor` with the
-- status; the row's `updated_at` is the moment.
ALTER TABLE tenants ADD COLUMN status_actor TEXT;

CREATE TRIGGER tenants_status_history_insert AFTER INSERT ON tenants
BEGIN
    INSERT INTO tenant_status_history (tenant_id, from_status, to_status, reason, actor, at)
    VALUES (NEW.id, NULL, NEW.status, COALESCE(NEW.status_reason, ''),
            COALESCE(NEW.status_actor, 'system'), NEW.updated_at);
END;

CREATE TRIGGER tenants_status_history_update AFTER UPDATE OF status ON tenants
WHEN NEW.status IS NOT OLD.status
BEGIN
    INSERT INTO tenant_status_history (tenant_id, from_status, to_status, reason, actor, at)
    VALUES (NEW.id, OLD.status, NEW.status, COALESCE(NEW.status_reason, ''),
            COALESCE(NEW.status_actor, 'system'), NEW.updated_at);
END;
