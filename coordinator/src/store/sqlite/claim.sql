-- ?1 worker, ?2 lease end, ?3 now, ?4 backends (JSON array), ?5 max shards,
-- ?6 the worker's model patterns (JSON array of GLOBs; empty: any model).
-- Highest priority first; within a priority the job with the fewest running
-- shards, counting the ones this claim takes (ROW_NUMBER), so one batch is
-- spread across jobs; then older jobs, then seq. Only the first ?5 claimable
-- shards of each job are ranked, so a claim costs O(jobs × ?5), not
-- O(available shards).
WITH eligible AS MATERIALIZED (
    SELECT j.id, j.priority, j.created_at,
           (SELECT COUNT(*) FROM shards r WHERE r.job_id = j.id AND r.state = 'running') AS running,
           (SELECT a.seq FROM shards a
            WHERE a.job_id = j.id AND a.state = 'available' AND a.next_visible_at <= ?3
            ORDER BY a.seq LIMIT 1 OFFSET ?5 - 1) AS last_seq
    FROM jobs j
    WHERE j.state = 'running' AND j.backend IN (SELECT value FROM json_each(?4))
      AND (json_array_length(?6) = 0
           OR EXISTS (SELECT 1 FROM json_each(?6) p WHERE j.model GLOB p.value))
),
candidates AS (
    SELECT s.id, e.priority, e.created_at, s.job_id, s.seq,
           e.running + ROW_NUMBER() OVER (PARTITION BY s.job_id ORDER BY s.seq) AS load
    FROM eligible e JOIN shards s INDEXED BY shards_job_state_seq ON s.job_id = e.id
    WHERE s.state = 'available' AND s.next_visible_at <= ?3
      AND s.seq <= COALESCE(e.last_seq, 9223372036854775807)
)
UPDATE shards
SET state = 'running', attempt = attempt + 1, lease_owner = ?1, lease_expires_at = ?2,
    progress = 0, updated_at = ?3
WHERE id IN (
    SELECT id FROM candidates ORDER BY priority DESC, load, created_at, job_id, seq LIMIT ?5
)
RETURNING id, job_id, attempt, lease_expires_at, requests_json
