-- A job failed by its shard's death, with the kind of the shard's failure.
UPDATE jobs SET state = 'failed', error = ?2, error_kind = ?3, updated_at = ?4
WHERE id = ?1 AND state IN ('planning', 'running')
