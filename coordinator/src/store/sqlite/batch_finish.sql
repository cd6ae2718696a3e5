-- ?1 shard, ?2 poll_seq, ?3 owner, ?4 final state, ?5 outputs indexed by
-- this last step, ?6 failed requests, ?7 error (dead), ?8 now.
-- A completed shard counts every request without a final error as done
-- (those cached at claim time included); a cancelled or dead one keeps the
-- count of outputs its passes indexed.
UPDATE shards
SET state = ?4,
    completed_count = CASE WHEN ?4 = 'completed' THEN MAX(request_count - ?6, 0) ELSE completed_count + ?5 END,
    failed_count = ?6, last_error = ?7,
    attempts_used = CASE WHEN ?4 = 'dead' THEN max_attempts ELSE attempts_used END,
    poll_owner = NULL, poll_expires_at = NULL, next_poll_at = NULL, enqueued_tokens = 0,
    updated_at = ?8
WHERE id = ?1 AND poll_seq = ?2 AND poll_owner = ?3 AND state = 'submitted'
RETURNING job_id, seq
