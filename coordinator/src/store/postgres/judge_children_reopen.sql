-- A judge job completed while the judge stage was adding shards to it.
UPDATE jobs SET state = 'running', updated_at = $2
WHERE parent_id = $1 AND state = 'completed'
  AND EXISTS (SELECT 1 FROM shards s WHERE s.job_id = jobs.id
                AND s.state IN ('available', 'running', 'submitted', 'failed'))
