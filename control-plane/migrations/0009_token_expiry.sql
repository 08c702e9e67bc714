-- Admin and account tokens may expire (NULL: until revoked).
ALTER TABLE admin_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE account_tokens ADD COLUMN expires_at BIGINT;
