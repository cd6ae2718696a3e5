UPDATE jobs SET state = 'completed', updated_at = ?1
WHERE state = 'running'
  AND EXISTS (SELECT 1 FROM shards WHERE job_id = jobs.id)
  AND NOT EXISTS (SELECT 1 FROM shards WHERE job_id = jobs.id
                    AND state IN ('available', 'running', 'submitted', 'failed', 'dead', 'cancelled'))
