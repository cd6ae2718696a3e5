-- The openai-batch backend. A shard whose requests sit in provider batches is
-- `submitted`: it holds no lease, its batch state (ids, statuses, what is left
-- to retry) is kept as JSON text, and pollers take short poll leases on it,
-- fenced on poll_seq. enqueued_tokens/batch_model feed the per-model cap on
-- tokens enqueued at the provider.

ALTER TABLE shards DROP CONSTRAINT IF EXISTS shards_state_check;
ALTER TABLE shards ADD CONSTRAINT shards_state_check
    CHECK (state IN ('available', 'running', 'submitted', 'completed', 'failed', 'dead', 'cancelled'));

ALTER TABLE shards
    ADD COLUMN batch_state     text,
    ADD COLUMN batch_model     text,
    ADD COLUMN enqueued_tokens bigint      NOT NULL DEFAULT 0,
    ADD COLUMN next_poll_at    timestamptz,
    ADD COLUMN poll_owner      text,
    ADD COLUMN poll_expires_at timestamptz,
    ADD COLUMN poll_seq        bigint      NOT NULL DEFAULT 0;

CREATE INDEX shards_submitted ON shards (next_poll_at) WHERE state = 'submitted';
CREATE INDEX shards_batch_model ON shards (batch_model) WHERE batch_model IS NOT NULL;
