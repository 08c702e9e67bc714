-- Issue 22: keys brought from elsewhere, and 3scale's app_id + app_key model.
-- An application's public app_id, unique across the installation (a 3scale tenant's scope; many
-- applications have none: NULLs never collide, on SQLite and PostgreSQL alike).
ALTER TABLE applications ADD COLUMN app_id TEXT;
CREATE UNIQUE INDEX applications_app_id ON applications (app_id);
-- Its app keys (at most 5, domain/accounts/app_keys.rs), stored as SHA-256 like every key. Unlike
-- API keys they open the application only with its app_id, so two applications may hold the same
-- one; one application holds a value once.
CREATE TABLE application_app_keys (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications (id),
    key_sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX application_app_keys_digest ON application_app_keys (application_id, key_sha256);
-- An API key may not also be an app key (domain/accounts/keys.rs, `key_is_other_kind`): adding
-- either looks the digest up among the other kind.
CREATE INDEX application_app_keys_sha256 ON application_app_keys (key_sha256);
