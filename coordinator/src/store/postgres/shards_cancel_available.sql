UPDATE shards SET state = 'cancelled', updated_at = $2
WHERE job_id = $1 AND state = 'available'
