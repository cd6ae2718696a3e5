-- $1 shard, $2 attempt, $3 owner, $4 batch state, $5 model key,
-- $6 enqueued tokens, $7 next poll, $8 now.
-- running → submitted in one step with the batch ids; the lease ends.
UPDATE shards
SET state = 'submitted', lease_owner = NULL, lease_expires_at = NULL, progress = 0,
    batch_state = $4, batch_model = $5, enqueued_tokens = $6, next_poll_at = $7,
    poll_owner = NULL, poll_expires_at = NULL, updated_at = $8
WHERE id = $1 AND attempt = $2 AND lease_owner = $3 AND state = 'running'
RETURNING job_id
