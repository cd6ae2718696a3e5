SELECT j.id, j.parent_id, j.name, j.spec_hash, j.backend, j.priority, j.state, j.error, j.error_kind, j.docs, j.bad_rows,
       j.requests, j.cached, j.shards_total, j.created_at, j.updated_at,
       COALESCE(SUM(s.prompt_tokens), 0)::bigint AS prompt_tokens,
       COALESCE(SUM(s.completion_tokens), 0)::bigint AS completion_tokens,
       COUNT(s.id) FILTER (WHERE s.state = 'completed') AS shards_completed,
       COUNT(s.id) FILTER (WHERE s.state = 'running') AS shards_running,
       COUNT(s.id) FILTER (WHERE s.state = 'dead') AS shards_dead,
       (COALESCE(SUM(s.completed_count), 0)
         + COALESCE(SUM(s.progress) FILTER (WHERE s.state = 'running'), 0))::bigint AS completed,
       COALESCE(SUM(s.failed_count), 0)::bigint AS failed
FROM jobs j LEFT JOIN shards s ON s.job_id = j.id
GROUP BY j.id
ORDER BY j.created_at DESC, j.id
