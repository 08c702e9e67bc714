-- The admin portal: sessions of admins signed in with an admin token (stored as SHA-256).
CREATE TABLE admin_sessions (
    id_sha256 TEXT PRIMARY KEY,
    token_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
