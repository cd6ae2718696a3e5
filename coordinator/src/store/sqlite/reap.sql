-- ?1 now, ?2 backoff base (ms), ?3 backoff cap (ms), ?4 jitter fraction.
-- A returned shard waits min(base * 2^(attempts spent - 1), cap), minus a
-- random part of up to ?4 of it, before it can be claimed again.
UPDATE shards
SET attempts_used = attempts_used + CASE WHEN (SELECT state FROM jobs WHERE id = shards.job_id) = 'running' THEN 1 ELSE 0 END,
    state = CASE
        WHEN (SELECT state FROM jobs WHERE id = shards.job_id) <> 'running' THEN 'cancelled'
        WHEN attempts_used + 1 >= max_attempts THEN 'dead'
        ELSE 'available' END,
    last_error = 'lease of worker ' || COALESCE(lease_owner, '?') || ' on attempt ' || attempt
                 || ' expired without a heartbeat',
    lease_owner = NULL, lease_expires_at = NULL, progress = 0,
    next_visible_at = ?1 + CAST(
        MIN(?2 * 1.0 * (1 << MIN(attempts_used, 20)), ?3 * 1.0)
        * (1.0 - ?4 * ((random() & 1048575) / 1048576.0)) AS INTEGER),
    updated_at = ?1
WHERE state = 'running' AND lease_expires_at < ?1
RETURNING id, job_id, seq, attempt, state, attempts_used, last_error
