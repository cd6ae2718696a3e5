-- Shardline store on Postgres (many machines): jobs, shards and their leases,
-- the cache index, request failures and the leader row. Same model as the
-- SQLite schema, with native types: uuid ids, timestamptz times.

CREATE TABLE jobs (
    id                uuid        PRIMARY KEY,
    name              text        NOT NULL,
    -- Kept as text so the submitted spec reads back byte for byte.
    spec_json         text        NOT NULL,
    -- sha256 of the canonical JSON of the spec; submission is idempotent on it.
    spec_hash         text        NOT NULL,
    backend           text        NOT NULL,
    -- Higher runs first; within a priority, workers are shared fairly.
    priority          integer     NOT NULL DEFAULT 0,
    state             text        NOT NULL CHECK (state IN ('planning', 'running', 'completed', 'failed', 'cancelled')),
    error             text,
    docs              bigint      NOT NULL DEFAULT 0,
    bad_rows          bigint      NOT NULL DEFAULT 0,
    requests          bigint      NOT NULL DEFAULT 0,
    cached            bigint      NOT NULL DEFAULT 0,
    shards_total      bigint      NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);

-- At most one live (planning or running) job per spec.
CREATE UNIQUE INDEX jobs_live_spec ON jobs (spec_hash) WHERE state IN ('planning', 'running');
CREATE INDEX jobs_state ON jobs (state, created_at);

CREATE TABLE shards (
    id                uuid        PRIMARY KEY,
    job_id            uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq               bigint      NOT NULL,
    state             text        NOT NULL CHECK (state IN ('available', 'running', 'completed', 'failed', 'dead', 'cancelled')),
    -- Fencing token: incremented by every claim, never decremented.
    attempt           bigint      NOT NULL DEFAULT 0,
    -- Attempts that ended in failure or an expired lease (a release does not count).
    attempts_used     bigint      NOT NULL DEFAULT 0,
    max_attempts      bigint      NOT NULL,
    lease_owner       text,
    lease_expires_at  timestamptz,
    next_visible_at   timestamptz NOT NULL DEFAULT '1970-01-01T00:00:00Z',
    last_error        text,
    requests_json     text        NOT NULL,
    request_count     bigint      NOT NULL,
    completed_count   bigint      NOT NULL DEFAULT 0,
    failed_count      bigint      NOT NULL DEFAULT 0,
    -- Requests done so far by the running attempt (from heartbeats).
    progress          bigint      NOT NULL DEFAULT 0,
    -- Token usage of every attempt of this shard. Kept per shard (and summed
    -- per job on read) so that concurrent completions of one job never queue
    -- on the job's row.
    prompt_tokens     bigint      NOT NULL DEFAULT 0,
    completion_tokens bigint      NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL,
    UNIQUE (job_id, seq)
);

-- Every state change rewrites a shard's index entries (the state is
-- indexed, so no HOT update), so the shards table keeps few indexes, and
-- completed shards (the bulk of a big job) stay out of the partial ones.
-- Claims walk each job's available shards in seq order:
CREATE INDEX shards_available ON shards (job_id, seq) WHERE state = 'available';
-- Fair share counts each job's running shards, the reaper scans the running
-- ones, and a completion checks whether its job has any shard left:
CREATE INDEX shards_unfinished ON shards (job_id, state) WHERE state <> 'completed';

-- Content-addressed: a key's output lives in exactly one segment (the first
-- one indexed wins).
CREATE TABLE cache_index (
    key        text        PRIMARY KEY,
    segment    text        NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE INDEX cache_index_segment ON cache_index (segment);

-- Segments already indexed, so that a catch-up scan reads only new ones.
CREATE TABLE segments (
    path       text        PRIMARY KEY,
    job_id     uuid,
    shard_id   uuid,
    attempt    bigint,
    records    bigint      NOT NULL DEFAULT 0,
    indexed_at timestamptz NOT NULL
);

-- Requests that still failed after the worker's retries.
CREATE TABLE request_failures (
    job_id     uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    key        text        NOT NULL,
    shard_id   uuid        NOT NULL,
    error      text        NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (job_id, key)
);

CREATE INDEX request_failures_key ON request_failures (key);

-- Leader-only duties (planning, reaping): one row per duty, held by one
-- coordinator replica until expires_at unless renewed.
CREATE TABLE leader (
    name       text        PRIMARY KEY,
    holder     text        NOT NULL,
    expires_at timestamptz NOT NULL
);
