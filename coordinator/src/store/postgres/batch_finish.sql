-- $1 shard, $2 poll_seq, $3 owner, $4 final state ('completed', 'dead' or
-- 'cancelled'), $5 failed requests, $6 error (dead), $7 now,
-- $8 segment (NULL: no new outputs), $9 written keys (sorted),
-- $10/$11 prompt/completion tokens, $12/$13 failed keys and their errors.
-- Ends a submitted shard in one statement: a completed shard counts every
-- request without a final error as done (those cached at claim time
-- included), records its failures; a dead one fails its job.
WITH finished AS (
    UPDATE shards
    SET state = $4,
        completed_count = CASE WHEN $4 = 'completed' THEN GREATEST(request_count - $5, 0)
                               ELSE completed_count + cardinality($9::text[]) END,
        failed_count = $5, last_error = $6,
        attempts_used = CASE WHEN $4 = 'dead' THEN max_attempts ELSE attempts_used END,
        prompt_tokens = prompt_tokens + $10, completion_tokens = completion_tokens + $11,
        poll_owner = NULL, poll_expires_at = NULL, next_poll_at = NULL, enqueued_tokens = 0,
        updated_at = $7
    WHERE id = $1 AND poll_seq = $2 AND poll_owner = $3 AND state = 'submitted'
    RETURNING job_id, seq
),
indexed AS (
    INSERT INTO cache_index (key, segment, created_at)
    SELECT k, $8::text, $7 FROM finished, UNNEST($9::text[]) AS k
    WHERE $8::text IS NOT NULL
    ORDER BY k
    ON CONFLICT (key) DO NOTHING
    RETURNING 1
),
segment AS (
    INSERT INTO segments (path, job_id, shard_id, attempt, records, indexed_at)
    SELECT $8::text, finished.job_id, $1, NULL, cardinality($9::text[]), $7 FROM finished
    WHERE $8::text IS NOT NULL
    ON CONFLICT (path) DO UPDATE SET records = GREATEST(segments.records, excluded.records),
        indexed_at = excluded.indexed_at
    RETURNING 1
),
failures AS (
    INSERT INTO request_failures (job_id, key, shard_id, error, created_at)
    SELECT DISTINCT ON (f.key) finished.job_id, f.key, $1, f.error, $7
    FROM finished, UNNEST($12::text[], $13::text[]) AS f(key, error)
    ORDER BY f.key
    ON CONFLICT (job_id, key) DO UPDATE SET shard_id = excluded.shard_id, error = excluded.error,
        created_at = excluded.created_at
    RETURNING 1
),
failed_job AS (
    UPDATE jobs
    SET state = 'failed', error = 'shard ' || finished.seq || ' failed: ' || $6, updated_at = $7
    FROM finished
    WHERE jobs.id = finished.job_id AND $4 = 'dead' AND jobs.state IN ('planning', 'running')
    RETURNING 1
)
SELECT job_id, seq FROM finished
