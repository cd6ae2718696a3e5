SELECT key, segment FROM cache_index WHERE key = ANY($1::text[])
