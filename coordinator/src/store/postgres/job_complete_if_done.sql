-- Run after a batch of completions committed, as its own statement: of two
-- last shards of a job completing at once, the later commit's check sees
-- both.
UPDATE jobs SET state = 'completed', updated_at = $2
WHERE id = ANY($1::uuid[]) AND state = 'running'
  AND NOT EXISTS (SELECT 1 FROM shards WHERE job_id = jobs.id
                    AND state <> 'completed')
