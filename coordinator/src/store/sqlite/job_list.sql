SELECT j.id, j.parent_id, j.name, j.spec_hash, j.backend, j.priority, j.state, j.error, j.error_kind, j.docs, j.bad_rows, j.requests,
       j.cached, j.shards_total, j.prompt_tokens, j.completion_tokens, j.created_at, j.updated_at,
       COALESCE(SUM(s.state = 'completed'), 0) AS shards_completed,
       COALESCE(SUM(s.state = 'running'), 0) AS shards_running,
       COALESCE(SUM(s.state = 'dead'), 0) AS shards_dead,
       COALESCE(SUM(s.completed_count), 0)
         + COALESCE(SUM(CASE WHEN s.state = 'running' THEN s.progress ELSE 0 END), 0) AS completed,
       COALESCE(SUM(s.failed_count), 0) AS failed
FROM jobs j LEFT JOIN shards s ON s.job_id = j.id
GROUP BY j.id
ORDER BY j.created_at DESC, j.id
