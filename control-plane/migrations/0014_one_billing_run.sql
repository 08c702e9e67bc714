-- At most one billing run is `running` at a time, across every replica on this database: the
-- insert that starts a run relies on this index (a second start fails on it and answers 409),
-- instead of a check-then-insert that two processes could both pass.
-- Runs left running by the race this closes: all but the newest are marked interrupted first.
UPDATE billing_runs SET state = 'interrupted' WHERE state = 'running' AND id <> (SELECT MAX(id) FROM billing_runs WHERE state = 'running');
CREATE UNIQUE INDEX billing_runs_one_running ON billing_runs (state) WHERE state = 'running';
