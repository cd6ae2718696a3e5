-- $1 model key, $2 the asking shard (left out).
-- Tokens other shards of the model have at the provider (or reserved).
SELECT COALESCE(SUM(enqueued_tokens), 0)::bigint FROM shards
WHERE batch_model = $1 AND id <> $2 AND state IN ('running', 'submitted')
