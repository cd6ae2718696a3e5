INSERT INTO request_failures (job_id, key, shard_id, error, created_at)
SELECT ?1, json_extract(value, '$.key'), ?2, json_extract(value, '$.error'), ?3
FROM json_each(?4) WHERE true
ON CONFLICT (job_id, key) DO UPDATE SET shard_id = excluded.shard_id, error = excluded.error,
    created_at = excluded.created_at
