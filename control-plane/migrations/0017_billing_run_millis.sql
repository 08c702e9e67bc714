-- When a billing run started and ended, in Unix milliseconds: a start request is refused while a
-- run was running at the instant the request arrived, even if the request gets the database only
-- after that run ended (SQLite's one writer lock; issue 15, item 6). Seconds are too coarse for
-- that comparison (a run over a few accounts ends within the second it starts). NULL for runs
-- recorded before: they never count as overlapping.
ALTER TABLE billing_runs ADD COLUMN started_at_ms BIGINT;
ALTER TABLE billing_runs ADD COLUMN finished_at_ms BIGINT;
