-- Admin-portal sessions opened with TOLLGATE_ADMIN_TOKEN remember the SHA-256 of that token: a
-- restart with another token (or none) ends them. NULL for sessions of stored admin tokens.
ALTER TABLE admin_sessions ADD COLUMN env_token_sha256 TEXT;
