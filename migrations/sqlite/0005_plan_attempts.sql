-- Planning passes started for a job and not seen to end: a job whose
-- planning crashes the coordinator is failed after a few, not retried at
-- every restart.
ALTER TABLE jobs ADD COLUMN plan_attempts INTEGER NOT NULL DEFAULT 0;
