-- Billing: settings, contracts (which plan an application was on, and when), invoices and their
-- lines, gapless invoice numbers, credit balances, billing runs and the email outbox.
-- Days are day numbers (days since 1970-01-01, UTC); money is a decimal string.

-- One row (id 1): the billing settings as validated JSON (see billing/settings.rs).
CREATE TABLE billing_settings (
    id BIGINT PRIMARY KEY,
    settings TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- An application on a plan from `starts_on` (inclusive) to `ends_on` (exclusive; NULL while
-- current). A plan change ends one contract and starts the next on the same day; deleting the
-- application ends it the day after (the day of deletion is billed). Contracts outlive their
-- application, so usage and fees of a deleted application are still billed.
CREATE TABLE contracts (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    application_id TEXT NOT NULL,
    application_name TEXT NOT NULL,
    plan_id TEXT NOT NULL REFERENCES plans (id),
    starts_on BIGINT NOT NULL,
    ends_on BIGINT,
    trial_ends_on BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX contracts_account ON contracts (account_id);
CREATE INDEX contracts_application ON contracts (application_id);
-- Applications that exist before billing: a contract from their creation day.
INSERT INTO contracts (id, account_id, application_id, application_name, plan_id, starts_on, ends_on, trial_ends_on, created_at)
SELECT 'ctr_' || a.id, a.account_id, a.id, a.name, a.plan_id, a.created_at / 86400, NULL,
       a.created_at / 86400 + p.trial_days, a.created_at
FROM applications a JOIN plans p ON p.id = a.plan_id;

-- The account's credit balance (net, in the billing currency): prepaid time credited on a plan
-- change beyond what an invoice could absorb, and credit notes. Used by the next invoices.
ALTER TABLE accounts ADD COLUMN credit_balance TEXT NOT NULL DEFAULT '0';

CREATE TABLE invoices (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    kind TEXT NOT NULL,
    credited_invoice_id TEXT REFERENCES invoices (id),
    state TEXT NOT NULL,
    number TEXT,
    currency TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    period_end BIGINT NOT NULL,
    subtotal TEXT NOT NULL,
    tax TEXT NOT NULL,
    total TEXT NOT NULL,
    vat_rate TEXT,
    buyer TEXT,
    seller TEXT,
    footer TEXT,
    billing_run_id TEXT,
    issued_at BIGINT,
    due_on BIGINT,
    paid_at BIGINT,
    cancelled_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX invoices_number ON invoices (number);
CREATE INDEX invoices_account_state ON invoices (account_id, state);
CREATE INDEX invoices_state ON invoices (state);

-- `line_key` names what a run-made line bills (a contract's fee for a month, its usage of a
-- metric in a month, ...). It is unique, so no run ever bills the same thing twice; manual lines
-- have none.
CREATE TABLE invoice_lines (
    id TEXT PRIMARY KEY,
    invoice_id TEXT NOT NULL REFERENCES invoices (id),
    position BIGINT NOT NULL,
    kind TEXT NOT NULL,
    line_key TEXT,
    contract_id TEXT,
    description TEXT NOT NULL,
    quantity TEXT NOT NULL,
    unit_price TEXT NOT NULL,
    amount TEXT NOT NULL,
    period_start BIGINT,
    period_end BIGINT
);
CREATE UNIQUE INDEX invoice_lines_key ON invoice_lines (line_key);
CREATE INDEX invoice_lines_invoice ON invoice_lines (invoice_id);
CREATE INDEX invoice_lines_contract ON invoice_lines (contract_id);

-- The last number given in each series ("2026-11" or "2026"; credit notes "CN-2026-11").
-- Incremented in the transaction that issues, so a rolled-back issue leaves no gap.
CREATE TABLE invoice_counters (
    series TEXT PRIMARY KEY,
    last_number BIGINT NOT NULL
);

CREATE TABLE billing_runs (
    id TEXT PRIMARY KEY,
    run_on BIGINT NOT NULL,
    state TEXT NOT NULL,
    accounts_done BIGINT NOT NULL,
    invoices_issued BIGINT NOT NULL,
    error TEXT,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX billing_runs_run_on ON billing_runs (run_on);

-- Email to send. `dedupe_key` makes enqueueing idempotent (one "invoice issued" per invoice);
-- the sender claims a row before sending and marks it sent after the SMTP server accepted it.
CREATE TABLE email_outbox (
    id TEXT PRIMARY KEY,
    dedupe_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    invoice_id TEXT,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE UNIQUE INDEX email_outbox_dedupe ON email_outbox (dedupe_key);
CREATE INDEX email_outbox_pending ON email_outbox (state, next_attempt_at);
