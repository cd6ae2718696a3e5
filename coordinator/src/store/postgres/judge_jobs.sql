SELECT id FROM jobs j
WHERE state = 'running' AND parent_id IS NULL
  AND EXISTS (SELECT 1 FROM judge_items i WHERE i.job_id = j.id)
ORDER BY created_at
