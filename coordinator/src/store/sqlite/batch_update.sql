-- ?1 shard, ?2 poll_seq, ?3 owner, ?4 batch state, ?5 enqueued tokens,
-- ?6 keep the lease (0/1), ?7 next poll (ms), ?8 renewed lease end, ?9 now,
-- ?10 requests with a new output (counted completed).
UPDATE shards
SET batch_state = ?4, enqueued_tokens = ?5,
    next_poll_at = CASE WHEN ?6 THEN next_poll_at ELSE ?7 END,
    poll_owner = CASE WHEN ?6 THEN poll_owner ELSE NULL END,
    poll_expires_at = CASE WHEN ?6 THEN ?8 ELSE NULL END,
    completed_count = completed_count + ?10,
    updated_at = ?9
WHERE id = ?1 AND poll_seq = ?2 AND poll_owner = ?3 AND state = 'submitted'
RETURNING job_id
