UPDATE shards s
SET state = CASE WHEN j.state = 'running' THEN 'available' ELSE 'cancelled' END,
    lease_owner = NULL, lease_expires_at = NULL, progress = 0, next_visible_at = $1, updated_at = $1
FROM jobs j
WHERE j.id = s.job_id AND s.state = 'running'
