UPDATE jobs SET state = 'failed', error = $2, updated_at = $3, error_kind = $4
WHERE id = $1 AND state IN ('planning', 'running')
