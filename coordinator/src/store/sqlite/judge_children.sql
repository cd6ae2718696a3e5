SELECT id, name, state, error, error_kind FROM jobs WHERE parent_id = ?1 ORDER BY name
