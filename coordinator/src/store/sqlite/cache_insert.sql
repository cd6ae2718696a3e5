INSERT OR IGNORE INTO cache_index (key, segment, created_at)
SELECT value, ?1, ?2 FROM json_each(?3)
