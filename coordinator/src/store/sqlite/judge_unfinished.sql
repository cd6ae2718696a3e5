SELECT seq FROM shards
WHERE job_id = ?1 AND seq IN (SELECT value FROM json_each(?2))
  AND state NOT IN ('completed', 'dead', 'cancelled')
