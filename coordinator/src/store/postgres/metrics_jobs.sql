SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state
