DELETE FROM leader WHERE name = ?1 AND holder = ?2
