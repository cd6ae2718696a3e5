-- ?1 worker, ?2 poll lease end, ?3 now, ?4 backends (JSON array), ?5 max,
-- ?6 the worker's model patterns (JSON array of GLOBs; empty: any model).
-- Submitted shards that are due, or whose job stopped (their batches are to
-- be cancelled), and whose poll lease is free or expired; earliest due first.
UPDATE shards
SET poll_owner = ?1, poll_expires_at = ?2, poll_seq = poll_seq + 1, updated_at = ?3
WHERE id IN (
    SELECT s.id FROM shards s JOIN jobs j ON j.id = s.job_id
    WHERE s.state = 'submitted'
      AND (s.poll_expires_at IS NULL OR s.poll_expires_at < ?3)
      AND (s.next_poll_at <= ?3 OR j.state <> 'running')
      AND j.backend IN (SELECT value FROM json_each(?4))
      AND (json_array_length(?6) = 0
           OR EXISTS (SELECT 1 FROM json_each(?6) p WHERE j.model GLOB p.value))
    ORDER BY s.next_poll_at
    LIMIT ?5
)
RETURNING id, job_id, poll_seq, poll_expires_at, batch_state,
          (SELECT state FROM jobs WHERE id = shards.job_id) AS job_state
