-- The compare and set of a fire: only the caller that saw `due_at` moves it.
UPDATE schedules SET next_fire_at = ?3, last_fired_at = ?4, updated_at = ?4
WHERE id = ?1 AND next_fire_at = ?2 AND paused = 0
