UPDATE jobs SET state = 'completed', updated_at = ?1
WHERE state = 'running'
  AND (EXISTS (SELECT 1 FROM shards WHERE job_id = jobs.id)
       OR EXISTS (SELECT 1 FROM judge_items WHERE job_id = jobs.id))
  AND NOT EXISTS (SELECT 1 FROM shards WHERE job_id = jobs.id
                    AND state IN ('available', 'running', 'submitted', 'failed', 'dead', 'cancelled'))
  -- A judged job also waits for its documents' judging and its judges.
  AND NOT EXISTS (SELECT 1 FROM judge_items WHERE job_id = jobs.id AND state = 'waiting')
  AND NOT EXISTS (SELECT 1 FROM jobs c WHERE c.parent_id = jobs.id AND c.state <> 'completed')
