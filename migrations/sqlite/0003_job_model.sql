-- Worker capabilities: a worker may serve only some models, so claims filter
-- on the job's `model.model`, kept in its own column (the spec is text).
ALTER TABLE jobs ADD COLUMN model TEXT NOT NULL DEFAULT '';

UPDATE jobs SET model = COALESCE(json_extract(spec_json, '$.model.model'), '')
WHERE json_valid(spec_json);
