INSERT INTO shards (id, job_id, seq, state, max_attempts, requests_json, request_count, next_visible_at, updated_at)
VALUES (?1, ?2, ?3, 'available', ?4, ?5, ?6, 0, ?7)
