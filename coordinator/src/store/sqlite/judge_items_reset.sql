DELETE FROM judge_items
WHERE job_id = ?1 AND EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND state = 'planning')
