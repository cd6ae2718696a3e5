-- ?1 shard, ?2 its enqueued tokens, ?3 model key, ?4 now.
UPDATE shards SET enqueued_tokens = ?2, batch_model = ?3, updated_at = ?4 WHERE id = ?1
