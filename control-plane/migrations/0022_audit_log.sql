-- The audit log (docs/operations.md, "Audit log"): one row per admin write, inserted in the
-- transaction of the write, so a write that rolls back leaves no event and a committed one
-- always has its event. Append-only: no route, command or purge updates or deletes a row.
-- actor_type: token (an admin API token; actor_id its id, or `env` for TOLLGATE_ADMIN_TOKEN) |
-- session (the admin portal; actor_id the id of the token the session was opened with) | cli
-- (a command writing the database directly; actor_id `cli`). ip: the client address as the
-- abuse limits see it (NULL for the CLI). changes: a JSON object {field: {"before", "after"}}
-- with secrets redacted (never their values).
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    actor_type TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    ip TEXT,
    action TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    changes TEXT NOT NULL
);
CREATE INDEX audit_events_object ON audit_events (object_type, object_id);
CREATE INDEX audit_events_actor ON audit_events (actor_id);
