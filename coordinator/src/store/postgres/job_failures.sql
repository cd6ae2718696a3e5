SELECT job_id, key, shard_id, error FROM request_failures WHERE job_id = $1 ORDER BY key LIMIT $2
