-- The developer portal: people who sign in for an account, and their sessions.

CREATE TABLE portal_users (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    email TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX portal_users_email ON portal_users (email);

-- A session is found by the SHA-256 of its cookie; the cookie itself is never stored.
CREATE TABLE portal_sessions (
    id_sha256 TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES portal_users (id),
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX portal_sessions_user ON portal_sessions (user_id);
