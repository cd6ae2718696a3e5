UPDATE jobs SET state = 'completed', updated_at = ?2
WHERE id = ?1 AND state = 'running'
  AND NOT EXISTS (SELECT 1 FROM shards WHERE job_id = ?1
                    AND state IN ('available', 'running', 'submitted', 'failed', 'dead', 'cancelled'))
