-- $1 shard, $2 poll_seq, $3 owner, $4 new poll lease end, $5 now.
UPDATE shards s SET poll_expires_at = $4, updated_at = $5
FROM jobs j
WHERE j.id = s.job_id AND s.id = $1 AND s.poll_seq = $2 AND s.poll_owner = $3
  AND s.state = 'submitted'
RETURNING j.state AS job_state
