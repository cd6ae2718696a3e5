-- $1 shard, $2 poll_seq, $3 owner, $4 batch state, $5 enqueued tokens,
-- $6 keep the lease, $7 next poll, $8 renewed lease end, $9 now,
-- $10 segment (NULL: no new outputs), $11 written keys (sorted),
-- $12/$13 prompt/completion tokens.
-- Records a poll pass and indexes its outputs in one statement.
WITH updated AS (
    UPDATE shards
    SET batch_state = $4, enqueued_tokens = $5,
        next_poll_at = CASE WHEN $6 THEN next_poll_at ELSE $7 END,
        poll_owner = CASE WHEN $6 THEN poll_owner ELSE NULL END,
        poll_expires_at = CASE WHEN $6 THEN $8 ELSE NULL END,
        completed_count = completed_count + cardinality($11::text[]),
        prompt_tokens = prompt_tokens + $12, completion_tokens = completion_tokens + $13,
        updated_at = $9
    WHERE id = $1 AND poll_seq = $2 AND poll_owner = $3 AND state = 'submitted'
    RETURNING job_id
),
indexed AS (
    INSERT INTO cache_index (key, segment, created_at)
    SELECT k, $10::text, $9 FROM updated, UNNEST($11::text[]) AS k
    WHERE $10::text IS NOT NULL
    ORDER BY k
    ON CONFLICT (key) DO NOTHING
    RETURNING 1
),
segment AS (
    INSERT INTO segments (path, job_id, shard_id, attempt, records, indexed_at)
    SELECT $10::text, updated.job_id, $1, NULL, cardinality($11::text[]), $9 FROM updated
    WHERE $10::text IS NOT NULL
    ON CONFLICT (path) DO UPDATE SET records = GREATEST(segments.records, excluded.records),
        indexed_at = excluded.indexed_at
    RETURNING 1
)
SELECT job_id FROM updated
