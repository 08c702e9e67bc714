-- Catalog, accounts, applications, keys, admin tokens, idempotency keys.
-- Portable SQL: the same text runs on SQLite and PostgreSQL. Ids are time-ordered text ids made by
-- the application; timestamps are Unix seconds (BIGINT); money is a decimal string (TEXT) parsed
-- into rust_decimal::Decimal, never a float; booleans are BIGINT 0/1.

CREATE TABLE services (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX services_name ON services (name);

CREATE TABLE metrics (
    id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL REFERENCES services (id),
    name TEXT NOT NULL,
    unit TEXT NOT NULL,
    parent_id TEXT REFERENCES metrics (id),
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX metrics_service_name ON metrics (service_id, name);

CREATE TABLE mapping_rules (
    id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL REFERENCES services (id),
    http_method TEXT NOT NULL,
    pattern TEXT NOT NULL,
    metric_id TEXT NOT NULL REFERENCES metrics (id),
    delta BIGINT NOT NULL,
    is_last BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX mapping_rules_service ON mapping_rules (service_id);

CREATE TABLE plans (
    id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL REFERENCES services (id),
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    setup_fee TEXT NOT NULL,
    fixed_fee TEXT NOT NULL,
    trial_days BIGINT NOT NULL,
    parent_plan_id TEXT REFERENCES plans (id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX plans_service ON plans (service_id);

CREATE TABLE plan_limits (
    plan_id TEXT NOT NULL REFERENCES plans (id),
    metric_id TEXT NOT NULL REFERENCES metrics (id),
    period TEXT NOT NULL,
    limit_value BIGINT NOT NULL,
    PRIMARY KEY (plan_id, metric_id, period)
);

CREATE TABLE pricing_rules (
    id TEXT PRIMARY KEY,
    plan_id TEXT NOT NULL REFERENCES plans (id),
    metric_id TEXT NOT NULL REFERENCES metrics (id),
    model TEXT NOT NULL,
    range_from BIGINT NOT NULL,
    range_to BIGINT,
    unit_price TEXT NOT NULL,
    package_size BIGINT
);
CREATE INDEX pricing_rules_plan ON pricing_rules (plan_id);

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    billing_address TEXT NOT NULL,
    vat_rate TEXT NOT NULL,
    vat_code TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE applications (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    plan_id TEXT NOT NULL REFERENCES plans (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    state TEXT NOT NULL,
    state_reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX applications_account ON applications (account_id);
CREATE INDEX applications_plan ON applications (plan_id);

CREATE TABLE application_keys (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications (id),
    key_sha256 TEXT NOT NULL,
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);
CREATE UNIQUE INDEX application_keys_sha256 ON application_keys (key_sha256);
CREATE INDEX application_keys_application ON application_keys (application_id);

CREATE TABLE admin_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX admin_tokens_sha256 ON admin_tokens (token_sha256);

CREATE TABLE idempotency_keys (
    token_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    state TEXT NOT NULL,
    status BIGINT,
    response TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (token_id, idem_key)
);
