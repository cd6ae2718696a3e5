UPDATE shards
SET state = 'completed', completed_count = MAX(request_count - ?4, 0), failed_count = ?4,
    lease_owner = NULL, lease_expires_at = NULL, progress = 0, last_error = NULL, updated_at = ?5
WHERE id = ?1 AND attempt = ?2 AND lease_owner = ?3 AND state = 'running'
  -- A cancelled (or failed) job takes no more completions; the worker's
  -- outputs are still indexed by the caller.
  AND (SELECT state FROM jobs WHERE id = shards.job_id) = 'running'
RETURNING job_id
