SELECT id FROM jobs WHERE parent_id = ?1 AND name = ?2
