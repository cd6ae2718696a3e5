-- Completes a batch of shards in one statement, so one commit (and one WAL
-- flush) serves every completion that arrived together: the store's group
-- commit. Parallel arrays, one element per completion, in batch order
-- (position n, from 1):
--   $1 shard ids (distinct), $2 attempts, $3 owners, $4 failed request
--   counts, $5 prompt tokens, $6 completion tokens, $7 segments (NULL:
--   nothing written), $8 written key counts;
-- $9 now; $10/$11 written keys and the position of their completion;
-- $12/$13/$14 failed keys, their errors and positions.
-- Each completion is fenced on its own: a mismatch drops just that one.
-- Usage is added to the shard, not the job, so that completions of one job
-- never queue on the job's row.
WITH input AS (
    SELECT *
    FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[],
                $7::text[], $8::bigint[])
         WITH ORDINALITY AS t(shard_id, attempt, owner, failed, prompt, completion, segment,
                              records, n)
),
done AS (
    UPDATE shards s
    SET state = 'completed', completed_count = GREATEST(s.request_count - i.failed, 0),
        failed_count = i.failed,
        prompt_tokens = s.prompt_tokens + i.prompt,
        completion_tokens = s.completion_tokens + i.completion,
        lease_owner = NULL, lease_expires_at = NULL, progress = 0, last_error = NULL,
        updated_at = $9
    FROM input i
    WHERE s.id = i.shard_id AND s.attempt = i.attempt AND s.lease_owner = i.owner
      AND s.state = 'running'
      -- A cancelled (or failed) job takes no more completions; the worker's
      -- outputs are still indexed by the caller.
      AND EXISTS (SELECT 1 FROM jobs j WHERE j.id = s.job_id AND j.state = 'running')
    RETURNING s.id, s.job_id
),
accepted AS (
    SELECT i.n, i.shard_id, i.attempt, i.segment, i.records, d.job_id
    FROM input i JOIN done d ON d.id = i.shard_id
),
-- First writer of a key wins; sorted, so that concurrent writers of
-- overlapping keys take their locks in the same order.
indexed AS (
    INSERT INTO cache_index (key, segment, created_at)
    SELECT DISTINCT ON (w.key) w.key, a.segment, $9
    FROM UNNEST($10::text[], $11::bigint[]) AS w(key, n)
    JOIN accepted a ON a.n = w.n
    WHERE a.segment IS NOT NULL
    ORDER BY w.key, a.n
    ON CONFLICT (key) DO NOTHING
    RETURNING 1
),
segment AS (
    INSERT INTO segments (path, job_id, shard_id, attempt, records, indexed_at)
    SELECT DISTINCT ON (a.segment) a.segment, a.job_id, a.shard_id, a.attempt, a.records, $9
    FROM accepted a
    WHERE a.segment IS NOT NULL
    ORDER BY a.segment, a.n
    ON CONFLICT (path) DO UPDATE SET records = GREATEST(segments.records, excluded.records),
        indexed_at = excluded.indexed_at
    RETURNING 1
),
failures AS (
    INSERT INTO request_failures (job_id, key, shard_id, error, created_at)
    SELECT DISTINCT ON (a.job_id, f.key) a.job_id, f.key, a.shard_id, f.error, $9
    FROM UNNEST($12::text[], $13::text[], $14::bigint[]) AS f(key, error, n)
    JOIN accepted a ON a.n = f.n
    ORDER BY a.job_id, f.key, a.n DESC
    ON CONFLICT (job_id, key) DO UPDATE SET shard_id = excluded.shard_id, error = excluded.error,
        created_at = excluded.created_at
    RETURNING 1
)
SELECT n, job_id FROM accepted
