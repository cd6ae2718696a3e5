SELECT seq FROM shards
WHERE job_id = $1 AND seq = ANY($2::bigint[])
  AND state NOT IN ('completed', 'dead', 'cancelled')
