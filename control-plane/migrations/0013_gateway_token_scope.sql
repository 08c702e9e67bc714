-- Gateway tokens are scoped to services: a token reads the snapshot and global usage of, and
-- reports usage for, only the services listed here.
CREATE TABLE gateway_token_services (
    token_id TEXT NOT NULL REFERENCES gateway_tokens (id) ON DELETE CASCADE,
    service_id TEXT NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    PRIMARY KEY (token_id, service_id)
);
CREATE INDEX gateway_token_services_service ON gateway_token_services (service_id);
-- An upgrade keeps running gateways working: every existing token is granted the services that
-- exist now, and no service created later (a grant is explicit from here on).
INSERT INTO gateway_token_services (token_id, service_id) SELECT t.id, s.id FROM gateway_tokens t CROSS JOIN services s;
