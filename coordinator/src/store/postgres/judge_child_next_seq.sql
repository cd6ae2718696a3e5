SELECT COALESCE(MAX(seq) + 1, 0) FROM shards WHERE job_id = $1
