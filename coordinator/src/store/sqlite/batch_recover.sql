-- ?1 now. Ends every poll lease.
UPDATE shards SET poll_owner = NULL, poll_expires_at = NULL, updated_at = ?1
WHERE state = 'submitted' AND poll_owner IS NOT NULL
