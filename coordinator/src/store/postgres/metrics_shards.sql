SELECT state, COUNT(*) FROM shards GROUP BY state ORDER BY state
