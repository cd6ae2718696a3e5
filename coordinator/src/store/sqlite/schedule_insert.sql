INSERT INTO schedules (id, name, cron, timezone, spec_json, paused, next_fire_at, created_at,
                       updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?7)
