INSERT INTO segments (path, job_id, shard_id, attempt, records, indexed_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (path) DO UPDATE SET records = GREATEST(segments.records, excluded.records),
    indexed_at = excluded.indexed_at
