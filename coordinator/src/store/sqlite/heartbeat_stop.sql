UPDATE shards SET state = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, progress = 0, updated_at = ?4
WHERE id = ?1 AND attempt = ?2 AND lease_owner = ?3 AND state = 'running'
RETURNING (SELECT state FROM jobs WHERE id = shards.job_id) AS job_state
