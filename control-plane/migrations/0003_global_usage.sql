-- Usage per gateway instance, for global quotas: a gateway is told what the others used in the
-- current windows. Minutes serve minute limits (kept 2 hours); hours serve every longer window.

CREATE TABLE usage_instance_minutes (
    instance TEXT NOT NULL,
    application_id TEXT NOT NULL,
    metric_id TEXT NOT NULL,
    bucket_start BIGINT NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (instance, application_id, metric_id, bucket_start)
);
CREATE INDEX usage_instance_minutes_bucket ON usage_instance_minutes (bucket_start);

CREATE TABLE usage_instance_hours (
    instance TEXT NOT NULL,
    application_id TEXT NOT NULL,
    metric_id TEXT NOT NULL,
    bucket_start BIGINT NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (instance, application_id, metric_id, bucket_start)
);
CREATE INDEX usage_instance_hours_bucket ON usage_instance_hours (bucket_start);

-- Snapshot versions count keys whose rotation grace ran out, on every gateway poll.
CREATE INDEX application_keys_expires ON application_keys (expires_at);
