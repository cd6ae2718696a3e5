-- $1 now, $2 backoff base (ms), $3 backoff cap (ms), $4 jitter fraction.
-- Expired leases: back to available after min(base * 2^(attempts spent - 1),
-- cap) minus a random part of up to $4 of it; dead when out of attempts
-- (failing the job with the last error); cancelled when the job stopped.
WITH reaped AS (
    UPDATE shards s
    SET attempts_used = s.attempts_used + CASE WHEN j.state = 'running' THEN 1 ELSE 0 END,
        state = CASE
            WHEN j.state <> 'running' THEN 'cancelled'
            WHEN s.attempts_used + 1 >= s.max_attempts THEN 'dead'
            ELSE 'available' END,
        last_error = 'lease of worker ' || COALESCE(s.lease_owner, '?') || ' on attempt '
                     || s.attempt || ' expired without a heartbeat',
        lease_owner = NULL, lease_expires_at = NULL, progress = 0,
        next_visible_at = $1 + make_interval(secs =>
            LEAST($2::float8 * power(2.0::float8, LEAST(s.attempts_used, 20)::float8), $3::float8)
            * (1 - $4::float8 * random()) / 1000.0),
        updated_at = $1
    FROM jobs j
    WHERE j.id = s.job_id AND s.state = 'running' AND s.lease_expires_at < $1
    RETURNING s.id, s.job_id, s.seq, s.attempt, s.state, s.attempts_used, s.last_error
),
failed_jobs AS (
    UPDATE jobs
    SET state = 'failed',
        error = 'shard ' || r.seq || ' failed ' || r.attempts_used || ' times; last error: '
                || COALESCE(r.last_error, ''),
        updated_at = $1
    FROM (SELECT DISTINCT ON (job_id) job_id, seq, attempts_used, last_error
          FROM reaped WHERE state = 'dead' ORDER BY job_id, seq) r
    WHERE jobs.id = r.job_id AND jobs.state IN ('planning', 'running')
    RETURNING 1
)
SELECT id, job_id, attempt, state FROM reaped
