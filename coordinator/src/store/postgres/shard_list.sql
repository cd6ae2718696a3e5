SELECT id, job_id, seq, state, attempt, attempts_used, max_attempts, lease_owner, lease_expires_at,
       next_visible_at, last_error, request_count, completed_count, failed_count
FROM shards WHERE job_id = $1 ORDER BY seq
