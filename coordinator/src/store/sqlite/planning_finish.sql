UPDATE jobs
SET docs = ?2, bad_rows = ?3, requests = ?4, cached = ?5,
    shards_total = (SELECT COUNT(*) FROM shards WHERE job_id = ?1),
    -- Documents waiting for their judges keep a job running too.
    state = CASE WHEN EXISTS (SELECT 1 FROM shards WHERE job_id = ?1)
                   OR EXISTS (SELECT 1 FROM judge_items WHERE job_id = ?1 AND state = 'waiting')
                 THEN 'running' ELSE 'completed' END,
    updated_at = ?6
WHERE id = ?1 AND state = 'planning'
RETURNING state
