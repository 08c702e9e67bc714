-- Usage alerts (docs/operations.md, "Usage alerts"): thresholds in percent of each limit, per plan
-- and overridden per application (absent: the defaults, 50, 80, 90 and 100), and the crossings
-- alerted. Thresholds are a JSON array of integers (`[]`: no alerts). No foreign keys: deleting a
-- plan or application leaves its row behind harmlessly (ids are never reused).
CREATE TABLE plan_alert_thresholds (
    plan_id TEXT PRIMARY KEY,
    thresholds TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE application_alert_thresholds (
    application_id TEXT PRIMARY KEY,
    thresholds TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- One row per crossing: the unique key is the claim, so two replicas' passes (or two passes of one)
-- alert a crossing exactly once; the email and webhook event are written in the same transaction.
CREATE TABLE usage_alerts (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    metric_id TEXT NOT NULL,
    period TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    threshold BIGINT NOT NULL,
    limit_value BIGINT NOT NULL,
    usage_value BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (application_id, metric_id, period, window_start, threshold)
);
CREATE INDEX usage_alerts_created ON usage_alerts (created_at);
