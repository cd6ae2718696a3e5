-- The compare and set of a fire: only the caller that saw `due_at` moves it
-- (a second one waits for the row and then finds it moved).
UPDATE schedules SET next_fire_at = $3, last_fired_at = $4, updated_at = $4
WHERE id = $1 AND next_fire_at = $2 AND NOT paused
