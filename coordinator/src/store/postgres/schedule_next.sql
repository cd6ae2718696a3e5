UPDATE schedules SET next_fire_at = $2, updated_at = $3 WHERE name = $1
