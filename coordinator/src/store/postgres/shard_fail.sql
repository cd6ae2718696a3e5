-- $1 shard, $2 attempt, $3 owner, $4 error, $5 retry at, $6 now, $7 kind.
-- Spends an attempt; a shard out of attempts, or failed by a configuration
-- no attempt can get past, dies and fails its job.
WITH failed AS (
    UPDATE shards
    SET attempts_used = attempts_used + 1,
        state = CASE WHEN $7 = 'configuration' OR attempts_used + 1 >= max_attempts
                     THEN 'dead' ELSE 'available' END,
        next_visible_at = $5, last_error = $4,
        lease_owner = NULL, lease_expires_at = NULL, progress = 0, updated_at = $6
    WHERE id = $1 AND attempt = $2 AND lease_owner = $3 AND state = 'running'
    RETURNING job_id, seq, state, attempts_used
),
job AS (
    UPDATE jobs
    SET state = 'failed',
        -- A configuration failure is the whole story; a shard that ran out
        -- of attempts says how often it tried.
        error = CASE WHEN $7 = 'configuration' THEN $4
                     ELSE 'shard ' || f.seq || ' failed ' || f.attempts_used
                          || ' times; last error: ' || $4 END,
        -- The job's failure kind (FailureKind): configuration, else runtime.
        error_kind = CASE WHEN $7 = 'configuration' THEN 'configuration' ELSE 'runtime' END,
        updated_at = $6
    FROM failed f
    WHERE jobs.id = f.job_id AND f.state = 'dead' AND jobs.state IN ('planning', 'running')
    RETURNING 1
)
SELECT job_id, seq, state, attempts_used FROM failed
