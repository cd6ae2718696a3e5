INSERT INTO jobs (id, name, spec_json, spec_hash, backend, priority, state, created_at, updated_at,
                  model)
VALUES (?1, ?2, ?3, ?4, ?5, ?7, 'planning', ?6, ?6, ?8)
