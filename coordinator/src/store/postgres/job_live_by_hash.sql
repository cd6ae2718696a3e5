SELECT id FROM jobs WHERE spec_hash = $1 AND state IN ('planning', 'running')
