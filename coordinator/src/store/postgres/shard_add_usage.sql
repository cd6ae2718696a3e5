-- $1 shard, $2 prompt tokens, $3 completion tokens, $4 now.
UPDATE shards SET prompt_tokens = prompt_tokens + $2, completion_tokens = completion_tokens + $3,
    updated_at = $4
WHERE id = $1
