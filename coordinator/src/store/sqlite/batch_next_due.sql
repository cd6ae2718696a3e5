-- ?1 backends (JSON array), ?2 model patterns (JSON array).
-- When the next submitted shard a poller could take is due.
SELECT MIN(MAX(COALESCE(s.next_poll_at, 0), COALESCE(s.poll_expires_at, 0)))
FROM shards s JOIN jobs j ON j.id = s.job_id
WHERE s.state = 'submitted'
  AND j.backend IN (SELECT value FROM json_each(?1))
  AND (json_array_length(?2) = 0
       OR EXISTS (SELECT 1 FROM json_each(?2) p WHERE j.model GLOB p.value))
