-- $1 worker, $2 lease end, $3 now, $4 backends, $5 max shards, $6 candidates
-- per job, $7 the worker's model patterns (LIKE; empty: any model).
--
-- Order: highest priority first; within a priority the job with the fewest
-- running shards, counting the ones this claim takes (ROW_NUMBER), so one
-- batch is spread across jobs; then older jobs, then seq. Each job offers its
-- first $6 claimable shards (an index range scan), so a claim costs
-- O(jobs × $6), not O(available shards). $6 is well above $5 so that claimers
-- running at the same time, which skip each other's locked rows, still find
-- enough.
WITH eligible AS MATERIALIZED (
    SELECT j.id, j.priority, j.created_at,
           (SELECT COUNT(*) FROM shards r WHERE r.job_id = j.id AND r.state = 'running') AS running
    FROM jobs j
    WHERE j.state = 'running' AND j.backend = ANY($4::text[])
      AND (cardinality($7::text[]) = 0 OR j.model LIKE ANY($7::text[]))
),
candidates AS MATERIALIZED (
    SELECT c.id, e.priority, e.created_at, c.job_id, c.seq,
           e.running + ROW_NUMBER() OVER (PARTITION BY c.job_id ORDER BY c.seq) AS load
    FROM eligible e
    CROSS JOIN LATERAL (
        SELECT a.id, a.job_id, a.seq FROM shards a
        WHERE a.job_id = e.id AND a.state = 'available' AND a.next_visible_at <= $3
        ORDER BY a.seq
        LIMIT $6
    ) c
),
-- Walks the candidates best first and locks each one that is still
-- available, skipping rows other claimers hold, until it has $5. Each lock
-- is a primary-key probe; the walk stops at $5.
picked AS (
    SELECT locked.id
    FROM (SELECT id FROM candidates
          ORDER BY priority DESC, load, created_at, job_id, seq) c
    CROSS JOIN LATERAL (
        -- Re-checked on the locked row: another claimer may have taken it
        -- since this statement's snapshot.
        SELECT s.id FROM shards s
        WHERE s.id = c.id AND s.state = 'available' AND s.next_visible_at <= $3
        FOR UPDATE SKIP LOCKED
    ) locked
    LIMIT $5
)
UPDATE shards s
SET state = 'running', attempt = s.attempt + 1, lease_owner = $1, lease_expires_at = $2,
    progress = 0, updated_at = $3
FROM picked
WHERE s.id = picked.id
RETURNING s.id, s.job_id, s.attempt, s.lease_expires_at, s.requests_json
