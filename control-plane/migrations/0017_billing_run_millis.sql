-- When a billing run ended, in Unix milliseconds: a start request is refused when a run ended
-- after the instant the request arrived, i.e. a run was working while the request waited for the
-- database (SQLite's one writer lock; issue 15, item 6). Seconds are too coarse for that
-- comparison (a run over a few accounts ends within the second it starts). NULL for runs
-- recorded before: they never count.
ALTER TABLE billing_runs ADD COLUMN finished_at_ms BIGINT;
