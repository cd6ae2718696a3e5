SELECT key, segment FROM cache_index WHERE key IN (SELECT value FROM json_each(?1))
