-- Outbound webhooks (docs/webhooks.md). An endpoint belongs to the admin (account_id NULL: every
-- event it subscribes to) or to one account (only that account's events). Its signing secret is
-- sealed with the master key, bound to (webhook_endpoints, secret, <id>); it is never stored in
-- clear. state: enabled | disabled; disabled_reason: admin | failures. After a secret rotation
-- the previous secret (sealed as (webhook_endpoints, previous_secret, <id>)) also signs until
-- previous_secret_expires_at (Unix seconds).
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    account_id TEXT REFERENCES accounts(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    description TEXT NOT NULL,
    secret_sealed TEXT NOT NULL,
    previous_secret_sealed TEXT,
    previous_secret_expires_at BIGINT,
    state TEXT NOT NULL,
    disabled_reason TEXT,
    consecutive_failures BIGINT NOT NULL,
    last_success_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_account ON webhook_endpoints (account_id);
-- The event types an endpoint subscribes to (one row each).
CREATE TABLE webhook_endpoint_events (
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    event_type TEXT NOT NULL,
    PRIMARY KEY (endpoint_id, event_type)
);
-- One row per event (`msg_...`, the `webhook-id` of every delivery and retry of it), written in
-- the transaction of the change it reports. payload: the exact JSON body sent. account_id: the
-- account the event is about (NULL: none, e.g. webhook.test).
CREATE TABLE webhook_messages (
    id TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    account_id TEXT,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
-- The outbox: one row per (event, subscribed enabled endpoint) at the time of the event.
-- state: pending | delivering (claimed; next_attempt_at is then the lease's end) | delivered |
-- failed (retry window spent). Times in milliseconds where they schedule (next_attempt_at,
-- window_started_at), seconds elsewhere.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES webhook_messages(id),
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    window_started_at BIGINT NOT NULL,
    last_status_code BIGINT,
    last_latency_ms BIGINT,
    last_error TEXT,
    delivered_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX webhook_deliveries_event_endpoint ON webhook_deliveries (event_id, endpoint_id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);
-- Every attempt made (the delivery log's detail): status code (NULL: no HTTP answer), latency,
-- error text (no secret, no body beyond a capped excerpt).
CREATE TABLE webhook_attempts (
    id TEXT PRIMARY KEY,
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempt BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    status_code BIGINT,
    latency_ms BIGINT NOT NULL,
    error TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, attempt);
