-- ?2 requests, ?3 of them cached, ?4 new shards.
UPDATE jobs
SET requests = requests + ?2, cached = cached + ?3, shards_total = shards_total + ?4,
    state = CASE WHEN ?4 > 0 AND state = 'completed' THEN 'running' ELSE state END,
    updated_at = ?5
WHERE id = ?1
