SELECT id, name, cron, timezone, spec_json, paused, next_fire_at, last_fired_at, created_at,
       updated_at
FROM schedules WHERE NOT paused AND next_fire_at <= $1 ORDER BY next_fire_at
