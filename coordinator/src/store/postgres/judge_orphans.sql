SELECT c.id FROM jobs c JOIN jobs p ON p.id = c.parent_id
WHERE c.state IN ('planning', 'running') AND p.state IN ('failed', 'cancelled')
