-- Job priorities with fair sharing within a priority, and the leader row
-- that lets only one coordinator run the background duties.

ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;

-- Claims walk each job's available shards in seq order, and fair share counts
-- each job's running shards.
CREATE INDEX shards_job_state_seq ON shards (job_id, state, seq);

CREATE TABLE leader (
    name       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL   -- Unix milliseconds
);
