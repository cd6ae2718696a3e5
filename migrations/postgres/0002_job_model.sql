-- Worker capabilities: a worker may serve only some models, so claims filter
-- on the job's `model.model`, kept in its own column (the spec is text).
ALTER TABLE jobs ADD COLUMN model text NOT NULL DEFAULT '';

UPDATE jobs SET model = COALESCE(spec_json::jsonb #>> '{model,model}', '')
WHERE spec_json LIKE '{%';
