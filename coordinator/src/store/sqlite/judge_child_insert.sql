-- A child job starts running (it is never planned), or completed when all
-- of its first requests were cached.
INSERT INTO jobs (id, name, spec_json, spec_hash, backend, priority, state, created_at, updated_at,
                  model, parent_id)
SELECT ?1, ?2, ?3, ?4, ?5, p.priority, CASE WHEN ?8 > 0 THEN 'running' ELSE 'completed' END,
       ?6, ?6, ?7, p.id
FROM jobs p WHERE p.id = ?9
