-- $1 shard, $2 'lease' or 'poll', $3 attempt or poll_seq, $4 owner.
-- Whether the caller still holds the shard (its running lease, or its poll
-- lease on the submitted shard); locks the row for the reservation.
SELECT 1 FROM shards
WHERE id = $1
  AND (($2 = 'lease' AND state = 'running' AND attempt = $3 AND lease_owner = $4)
    OR ($2 = 'poll' AND state = 'submitted' AND poll_seq = $3 AND poll_owner = $4))
FOR UPDATE
