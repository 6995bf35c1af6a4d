-- `GET /admin/alerts` (src/alerts.rs) reads recent windows of four tables; these indexes keep
-- each read to the rows in its window however long the history grows: provisioning runs that
-- ended in the last hour, Stripe events received in the last 5 minutes, tenants that became
-- active in the last hour and tenants that paid in the last 7 days.
CREATE INDEX tenant_status_history_provisioning_idx ON tenant_status_history (at)
    WHERE from_status = 'provisioning';
CREATE INDEX webhook_events_received_idx ON webhook_events (received_at);
CREATE INDEX tenant_activation_provisioned_idx ON tenant_activation (provisioned_at);
CREATE INDEX tenant_activation_paid_idx ON tenant_activation (paid_at);
