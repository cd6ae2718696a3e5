UPDATE shards
SET state = CASE WHEN (SELECT state FROM jobs WHERE id = shards.job_id) = 'running'
                 THEN 'available' ELSE 'cancelled' END,
    lease_owner = NULL, lease_expires_at = NULL, progress = 0, next_visible_at = ?4, updated_at = ?4
WHERE id = ?1 AND attempt = ?2 AND lease_owner = ?3 AND state = 'running'
RETURNING job_id
