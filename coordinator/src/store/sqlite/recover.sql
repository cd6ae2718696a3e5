UPDATE shards
SET state = CASE WHEN (SELECT state FROM jobs WHERE id = shards.job_id) = 'running'
                 THEN 'available' ELSE 'cancelled' END,
    lease_owner = NULL, lease_expires_at = NULL, progress = 0, next_visible_at = ?1, updated_at = ?1
WHERE state = 'running'
