UPDATE jobs SET plan_attempts = plan_attempts + 1
WHERE id = $1 AND state = 'planning'
RETURNING plan_attempts::BIGINT
