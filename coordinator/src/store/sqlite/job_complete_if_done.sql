UPDATE jobs SET state = 'completed', updated_at = ?2
WHERE id = ?1 AND state = 'running'
  AND NOT EXISTS (SELECT 1 FROM shards WHERE job_id = ?1
                    AND state IN ('available', 'running', 'submitted', 'failed', 'dead', 'cancelled'))
  -- A judged job also waits for its documents' judging and its judges.
  AND NOT EXISTS (SELECT 1 FROM judge_items WHERE job_id = ?1 AND state = 'waiting')
  AND NOT EXISTS (SELECT 1 FROM jobs c WHERE c.parent_id = ?1 AND c.state <> 'completed')
  -- ... and their shards: a judge job may read as completed for a moment
  -- while the judge stage adds shards to it (a completion check racing it
  -- on Postgres); the stage then reopens it.
  AND NOT EXISTS (SELECT 1 FROM jobs c JOIN shards s ON s.job_id = c.id
                  WHERE c.parent_id = ?1 AND s.state <> 'completed')
