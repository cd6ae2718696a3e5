UPDATE shards SET lease_expires_at = ?4, progress = ?5, updated_at = ?6
WHERE id = ?1 AND attempt = ?2 AND lease_owner = ?3 AND state = 'running'
  AND (SELECT state FROM jobs WHERE id = shards.job_id) = 'running'
RETURNING lease_expires_at
