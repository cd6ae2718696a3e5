SELECT key, error FROM request_failures WHERE key IN (SELECT value FROM json_each(?1))
ORDER BY created_at
