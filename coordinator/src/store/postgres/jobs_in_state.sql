SELECT id FROM jobs WHERE state = $1 ORDER BY created_at, id
