-- Safety net of the reaper: a completion whose follow-up check was cut short
-- (crash, lost connection) leaves a finished job running.
UPDATE jobs SET state = 'completed', updated_at = $1
WHERE state = 'running'
  AND (EXISTS (SELECT 1 FROM shards WHERE job_id = jobs.id)
       OR EXISTS (SELECT 1 FROM judge_items WHERE job_id = jobs.id))
  AND NOT EXISTS (SELECT 1 FROM shards WHERE job_id = jobs.id
                    AND state <> 'completed')
  -- A judged job also waits for its documents' judging and its judges.
  AND NOT EXISTS (SELECT 1 FROM judge_items WHERE job_id = jobs.id AND state = 'waiting')
  AND NOT EXISTS (SELECT 1 FROM jobs c WHERE c.parent_id = jobs.id AND c.state <> 'completed')
  -- ... and their shards: a judge job may read as completed for a moment
  -- while the judge stage adds shards to it (a completion check racing it
  -- on Postgres); the stage then reopens it.
  AND NOT EXISTS (SELECT 1 FROM jobs c JOIN shards s ON s.job_id = c.id
                  WHERE c.parent_id = jobs.id AND s.state <> 'completed')
