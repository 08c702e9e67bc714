-- An endpoint's next due delivery in one index range (domain/webhooks/deliver.rs, `claim_next`):
-- an attempt that ends takes its endpoint's next due delivery at once, whatever the size of the
-- endpoint's delivery log or of other endpoints' backlogs.
CREATE INDEX webhook_deliveries_endpoint_due ON webhook_deliveries (endpoint_id, state, next_attempt_at);
