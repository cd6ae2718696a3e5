SELECT key, error FROM request_failures WHERE key = ANY($1::text[])
ORDER BY created_at
