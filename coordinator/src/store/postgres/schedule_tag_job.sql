UPDATE jobs SET schedule_id = $2 WHERE id = $1
