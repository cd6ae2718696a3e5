UPDATE jobs SET plan_attempts = MAX(plan_attempts - 1, 0) WHERE id = ?1
