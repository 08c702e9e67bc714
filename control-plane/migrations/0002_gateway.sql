-- Gateways: their tokens, the catalog revision they poll, and exactly-once usage ingestion.

CREATE TABLE gateway_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX gateway_tokens_sha256 ON gateway_tokens (token_sha256);

-- One row; bumped by every successful admin write, so a snapshot version changes with the catalog.
CREATE TABLE catalog_revision (
    id BIGINT PRIMARY KEY,
    revision BIGINT NOT NULL
);
INSERT INTO catalog_revision (id, revision) VALUES (1, 1);

-- The idempotency ids of applied usage reports, written in the same transaction as the counters.
CREATE TABLE usage_reports (
    gateway_id TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (gateway_id, sequence)
);
CREATE INDEX usage_reports_received ON usage_reports (received_at);

-- Usage per application, metric and UTC hour (days and months are sums of hours).
CREATE TABLE usage_counters (
    application_id TEXT NOT NULL,
    metric_id TEXT NOT NULL,
    bucket_start BIGINT NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (application_id, metric_id, bucket_start)
);
