-- ?1 shard, ?2 poll_seq, ?3 owner, ?4 new poll lease end, ?5 now.
UPDATE shards SET poll_expires_at = ?4, updated_at = ?5
WHERE id = ?1 AND poll_seq = ?2 AND poll_owner = ?3 AND state = 'submitted'
RETURNING (SELECT state FROM jobs WHERE id = shards.job_id) AS job_state
