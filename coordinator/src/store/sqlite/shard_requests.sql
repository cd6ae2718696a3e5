-- ?1 shard: its job and its requests (JSON), to check what a worker reports.
SELECT job_id, requests_json FROM shards WHERE id = ?1
