-- Shardline embedded store (SQLite): jobs, shards and leases, the cache index.
-- Times are Unix milliseconds (INTEGER) so that lease comparisons are plain
-- integer comparisons.

CREATE TABLE jobs (
    id                TEXT    PRIMARY KEY,            -- uuid
    name              TEXT    NOT NULL,
    spec_json         TEXT    NOT NULL,
    -- sha256 of the canonical JSON of the spec; submission is idempotent on it.
    spec_hash         TEXT    NOT NULL,
    backend           TEXT    NOT NULL,
    state             TEXT    NOT NULL CHECK (state IN ('planning', 'running', 'completed', 'failed', 'cancelled')),
    error             TEXT,
    docs              INTEGER NOT NULL DEFAULT 0,
    bad_rows          INTEGER NOT NULL DEFAULT 0,
    requests          INTEGER NOT NULL DEFAULT 0,
    cached            INTEGER NOT NULL DEFAULT 0,
    shards_total      INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

-- At most one live (planning or running) job per spec: a second submission of
-- the same spec finds the first instead of duplicating the work.
CREATE UNIQUE INDEX jobs_live_spec ON jobs (spec_hash) WHERE state IN ('planning', 'running');
CREATE INDEX jobs_state ON jobs (state, created_at);

CREATE TABLE shards (
    id               TEXT    PRIMARY KEY,             -- uuid
    job_id           TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq              INTEGER NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('available', 'running', 'completed', 'failed', 'dead', 'cancelled')),
    -- Fencing token: incremented by every claim, never decremented.
    attempt          INTEGER NOT NULL DEFAULT 0,
    -- Attempts that ended in failure or an expired lease; a release does not
    -- count. Compared with max_attempts.
    attempts_used    INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    next_visible_at  INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    requests_json    TEXT    NOT NULL,
    request_count    INTEGER NOT NULL,
    completed_count  INTEGER NOT NULL DEFAULT 0,
    failed_count     INTEGER NOT NULL DEFAULT 0,
    -- Requests done so far by the running attempt (from heartbeats).
    progress         INTEGER NOT NULL DEFAULT 0,
    updated_at       INTEGER NOT NULL,
    UNIQUE (job_id, seq)
);

CREATE INDEX shards_claimable ON shards (state, next_visible_at);
CREATE INDEX shards_lease ON shards (state, lease_expires_at);

-- Content-addressed: a key's output lives in exactly one segment (the first
-- one indexed wins).
CREATE TABLE cache_index (
    key        TEXT    PRIMARY KEY,
    segment    TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX cache_index_segment ON cache_index (segment);

-- Segments already indexed, so that a catch-up scan reads only new ones.
CREATE TABLE segments (
    path       TEXT    PRIMARY KEY,
    job_id     TEXT,
    shard_id   TEXT,
    attempt    INTEGER,
    records    INTEGER NOT NULL DEFAULT 0,
    indexed_at INTEGER NOT NULL
);

-- Requests that still failed after the worker's retries. Not in the cache
-- index, so a later run retries exactly these.
CREATE TABLE request_failures (
    job_id     TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    key        TEXT    NOT NULL,
    shard_id   TEXT    NOT NULL,
    error      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, key)
);

CREATE INDEX request_failures_key ON request_failures (key);
