-- One statement per batch: parallel arrays of ids, seqs, max attempts,
-- request lists and request counts.
INSERT INTO shards (id, job_id, seq, state, max_attempts, requests_json, request_count, updated_at)
SELECT t.id, $1, t.seq, 'available', t.max_attempts, t.requests_json, t.request_count, $7
FROM UNNEST($2::uuid[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[])
     AS t(id, seq, max_attempts, requests_json, request_count)
