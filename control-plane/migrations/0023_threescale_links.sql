-- Issue 22 item 2: `tollgate import 3scale` keeps, per 3scale tenant (`source`: the admin URL's
-- origin, e.g. https://acme-admin.3scale.net), which Tollgate object each 3scale object became,
-- so a second run changes nothing and a change in 3scale updates its twin instead of making a new
-- one (domain/threescale/). kind: service | metric | mapping_rule | plan | account | application |
-- user_key | app_key. threescale_id: 3scale's id; for keys, which have none there, the
-- application's id, `/` and the key's SHA-256 (never the key). tollgate_id: the twin's id. A row
-- outlives its twin when the twin is deleted in Tollgate: the importer then knows not to make it
-- again (docs/migrate-from-3scale.md).
CREATE TABLE threescale_links (
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    threescale_id TEXT NOT NULL,
    tollgate_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (source, kind, threescale_id)
);
