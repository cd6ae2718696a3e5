SELECT id, name, cron, timezone, spec_json, paused, next_fire_at, last_fired_at, created_at,
       updated_at
FROM schedules ORDER BY name
