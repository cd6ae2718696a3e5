UPDATE jobs SET plan_attempts = GREATEST(plan_attempts - 1, 0) WHERE id = $1
