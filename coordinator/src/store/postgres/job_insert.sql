-- Nothing is inserted (and no row returned) while a live job has the same spec.
INSERT INTO jobs (id, name, spec_json, spec_hash, backend, priority, state, created_at, updated_at,
                  model)
VALUES ($1, $2, $3, $4, $5, $6, 'planning', $7, $7, $8)
ON CONFLICT (spec_hash) WHERE state IN ('planning', 'running') DO NOTHING
RETURNING id
