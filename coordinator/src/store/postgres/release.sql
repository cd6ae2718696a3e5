-- $1 shard, $2 attempt, $3 owner, $4 now, $5 segment (NULL: no partial
-- output), $6 written keys (sorted), $7/$8 prompt/completion tokens.
-- Hands the shard back without spending an attempt.
WITH released AS (
    UPDATE shards s
    SET state = CASE WHEN j.state = 'running' THEN 'available' ELSE 'cancelled' END,
        lease_owner = NULL, lease_expires_at = NULL, progress = 0, next_visible_at = $4,
        prompt_tokens = s.prompt_tokens + $7, completion_tokens = s.completion_tokens + $8,
        updated_at = $4
    FROM jobs j
    WHERE j.id = s.job_id AND s.id = $1 AND s.attempt = $2 AND s.lease_owner = $3
      AND s.state = 'running'
    RETURNING s.job_id
),
indexed AS (
    INSERT INTO cache_index (key, segment, created_at)
    SELECT k, $5::text, $4 FROM released, UNNEST($6::text[]) AS k
    WHERE $5::text IS NOT NULL
    ORDER BY k
    ON CONFLICT (key) DO NOTHING
    RETURNING 1
),
segment AS (
    INSERT INTO segments (path, job_id, shard_id, attempt, records, indexed_at)
    SELECT $5::text, released.job_id, $1, $2, cardinality($6::text[]), $4 FROM released
    WHERE $5::text IS NOT NULL
    ON CONFLICT (path) DO UPDATE SET records = GREATEST(segments.records, excluded.records),
        indexed_at = excluded.indexed_at
    RETURNING 1
)
SELECT job_id FROM released
