-- $1 backends, $2 model patterns (LIKE).
-- When the next submitted shard a poller could take is due.
SELECT MIN(GREATEST(COALESCE(s.next_poll_at, 'epoch'::timestamptz),
                    COALESCE(s.poll_expires_at, 'epoch'::timestamptz)))
FROM shards s JOIN jobs j ON j.id = s.job_id
WHERE s.state = 'submitted'
  AND j.backend = ANY($1::text[])
  AND (cardinality($2::text[]) = 0 OR j.model LIKE ANY($2::text[]))
