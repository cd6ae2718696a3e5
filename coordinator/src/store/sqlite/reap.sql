UPDATE shards
SET attempts_used = attempts_used + CASE WHEN (SELECT state FROM jobs WHERE id = shards.job_id) = 'running' THEN 1 ELSE 0 END,
    state = CASE
        WHEN (SELECT state FROM jobs WHERE id = shards.job_id) <> 'running' THEN 'cancelled'
        WHEN attempts_used + 1 >= max_attempts THEN 'dead'
        ELSE 'available' END,
    last_error = 'lease of worker ' || COALESCE(lease_owner, '?') || ' on attempt ' || attempt
                 || ' expired without a heartbeat',
    lease_owner = NULL, lease_expires_at = NULL, progress = 0, next_visible_at = ?1, updated_at = ?1
WHERE state = 'running' AND lease_expires_at < ?1
RETURNING job_id, seq, state, attempts_used, last_error
