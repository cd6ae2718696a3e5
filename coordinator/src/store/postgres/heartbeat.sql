-- $1 shard, $2 attempt, $3 owner, $4 new lease end, $5 progress, $6 now.
-- Renews the lease while the job runs; once the job stopped (cancelled or
-- failed) the shard stops with it. No row: the fence does not match.
UPDATE shards s
SET lease_expires_at = CASE WHEN j.state = 'running' THEN $4 END,
    lease_owner = CASE WHEN j.state = 'running' THEN s.lease_owner END,
    state = CASE WHEN j.state = 'running' THEN 'running' ELSE 'cancelled' END,
    progress = CASE WHEN j.state = 'running' THEN $5 ELSE 0 END,
    updated_at = $6
FROM jobs j
WHERE j.id = s.job_id AND s.id = $1 AND s.attempt = $2 AND s.lease_owner = $3 AND s.state = 'running'
RETURNING j.state AS job_state, s.lease_expires_at
