-- ?1 shard, ?2 attempt, ?3 owner, ?4 error, ?5 retry at, ?6 now, ?7 kind.
-- Spends an attempt; a shard out of attempts, or failed by a configuration
-- no attempt can get past, dies.
UPDATE shards
SET attempts_used = attempts_used + 1,
    state = CASE WHEN ?7 = 'configuration' OR attempts_used + 1 >= max_attempts
                 THEN 'dead' ELSE 'available' END,
    next_visible_at = ?5, last_error = ?4,
    lease_owner = NULL, lease_expires_at = NULL, progress = 0, updated_at = ?6
WHERE id = ?1 AND attempt = ?2 AND lease_owner = ?3 AND state = 'running'
RETURNING job_id, seq, state, attempts_used
