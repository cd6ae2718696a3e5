-- The openai-batch backend. A shard whose requests sit in provider batches is
-- `submitted`: it holds no lease, its batch state (ids, statuses, what is left
-- to retry) is kept as JSON, and pollers take short poll leases on it, fenced
-- on poll_seq. enqueued_tokens/batch_model feed the per-model cap on tokens
-- enqueued at the provider.
--
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt
-- (the "other kinds of table schema changes" recipe of the SQLite manual):
-- nothing references shards, so it can be dropped and replaced in this
-- migration's transaction. The rebuild also moves requests_json (large: the
-- shard's requests) to the end of the row. SQLite reads a row's columns in
-- order, walking a large value's overflow pages to reach the columns after
-- it, so every scan that reads a count or a poll time (job status, poll
-- claims) would otherwise read every shard's requests.

CREATE TABLE shards_new (
    id               TEXT    PRIMARY KEY,
    job_id           TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq              INTEGER NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('available', 'running', 'submitted', 'completed', 'failed', 'dead', 'cancelled')),
    attempt          INTEGER NOT NULL DEFAULT 0,
    attempts_used    INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    next_visible_at  INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    request_count    INTEGER NOT NULL,
    completed_count  INTEGER NOT NULL DEFAULT 0,
    failed_count     INTEGER NOT NULL DEFAULT 0,
    progress         INTEGER NOT NULL DEFAULT 0,
    updated_at       INTEGER NOT NULL,
    -- Provider quota group (base URL and model) of the enqueued tokens.
    batch_model      TEXT,
    -- Estimated input tokens of this shard's batches still at the provider.
    enqueued_tokens  INTEGER NOT NULL DEFAULT 0,
    -- Unix ms when pollers should look at the submitted shard again.
    next_poll_at     INTEGER,
    poll_owner       TEXT,
    poll_expires_at  INTEGER,
    -- Fencing token of poll leases: incremented by every poll claim.
    poll_seq         INTEGER NOT NULL DEFAULT 0,
    -- jobs::batch::BatchShardState as JSON, set when the shard is submitted.
    batch_state      TEXT,
    requests_json    TEXT    NOT NULL,
    UNIQUE (job_id, seq)
);

INSERT INTO shards_new (id, job_id, seq, state, attempt, attempts_used, max_attempts, lease_owner,
                        lease_expires_at, next_visible_at, last_error, requests_json, request_count,
                        completed_count, failed_count, progress, updated_at)
SELECT id, job_id, seq, state, attempt, attempts_used, max_attempts, lease_owner,
       lease_expires_at, next_visible_at, last_error, requests_json, request_count,
       completed_count, failed_count, progress, updated_at
FROM shards;

DROP TABLE shards;
ALTER TABLE shards_new RENAME TO shards;

CREATE INDEX shards_claimable ON shards (state, next_visible_at);
CREATE INDEX shards_lease ON shards (state, lease_expires_at);
CREATE INDEX shards_job_state_seq ON shards (job_id, state, seq);
-- Pollers look for submitted shards that are due; the cap sums a model's
-- enqueued tokens.
CREATE INDEX shards_submitted ON shards (next_poll_at) WHERE state = 'submitted';
CREATE INDEX shards_batch_model ON shards (batch_model) WHERE batch_model IS NOT NULL;
