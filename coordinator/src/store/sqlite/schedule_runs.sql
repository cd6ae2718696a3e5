SELECT id, state, created_at FROM jobs
WHERE schedule_id = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2
