-- Payments: the payment gateway's settings (secrets sealed with TOLLGATE_MASTER_KEY), developers'
-- account-scoped API tokens, customers at the provider, charge attempts and processed webhooks.

-- One row (id 1): which provider, its public fields in clear and its secrets sealed.
CREATE TABLE payment_gateway (
    id BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    config TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE account_tokens (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX account_tokens_sha256 ON account_tokens (token_sha256);
CREATE INDEX account_tokens_account ON account_tokens (account_id);

-- The account's customer at a provider; cards live at the provider, under this customer.
CREATE TABLE payment_customers (
    account_id TEXT NOT NULL REFERENCES accounts (id),
    provider TEXT NOT NULL,
    customer_ref TEXT NOT NULL,
    default_method_ref TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, provider)
);

-- One row per attempt to charge an invoice, written before the provider is called, so a retry
-- after a crash or a timeout finds the attempt (and its provider object) instead of charging again.
CREATE TABLE charge_attempts (
    id TEXT PRIMARY KEY,
    invoice_id TEXT NOT NULL REFERENCES invoices (id),
    attempt BIGINT NOT NULL,
    provider TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    provider_ref TEXT,
    state TEXT NOT NULL,
    amount TEXT NOT NULL,
    currency TEXT NOT NULL,
    error_code TEXT,
    error_message TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX charge_attempts_invoice_attempt ON charge_attempts (invoice_id, attempt);
CREATE INDEX charge_attempts_provider_ref ON charge_attempts (provider_ref);

-- Webhook events already applied (a replay changes nothing).
CREATE TABLE webhook_events (
    provider TEXT NOT NULL,
    event_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (provider, event_id)
);

-- Dunning: failed attempts so far and the day of the next one.
ALTER TABLE invoices ADD COLUMN failed_attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN next_charge_on BIGINT;
