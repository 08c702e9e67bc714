-- The admin dashboard sums today's usage per service and metric: read by time, not by application.
-- Only a new hourly row touches this index (updates of a row's value do not).
CREATE INDEX usage_counters_bucket ON usage_counters (bucket_start);
