-- $1 worker, $2 poll lease end, $3 now, $4 backends, $5 max, $6 the
-- worker's model patterns (LIKE; empty: any model).
-- Submitted shards that are due, or whose job stopped (their batches are to
-- be cancelled), and whose poll lease is free or expired; earliest due
-- first. Pollers skip each other's locked rows.
WITH due AS (
    SELECT s.id FROM shards s JOIN jobs j ON j.id = s.job_id
    WHERE s.state = 'submitted'
      AND (s.poll_expires_at IS NULL OR s.poll_expires_at < $3)
      AND (s.next_poll_at <= $3 OR j.state <> 'running')
      AND j.backend = ANY($4::text[])
      AND (cardinality($6::text[]) = 0 OR j.model LIKE ANY($6::text[]))
    ORDER BY s.next_poll_at
    LIMIT $5
    FOR UPDATE OF s SKIP LOCKED
)
UPDATE shards s
SET poll_owner = $1, poll_expires_at = $2, poll_seq = s.poll_seq + 1, updated_at = $3
FROM due, jobs j
WHERE s.id = due.id AND j.id = s.job_id
RETURNING s.id, s.job_id, s.poll_seq, s.poll_expires_at, s.batch_state, j.state AS job_state
