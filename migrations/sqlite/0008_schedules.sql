-- Schedules: a stored job spec submitted again on a cron schedule, fired by
-- the leader replica. `next_fire_at` only moves forward, by a compare and
-- set in the transaction that creates the fired job, so no fire happens
-- twice; a fire missed while no coordinator ran is caught up once.
CREATE TABLE schedules (
    id            TEXT    PRIMARY KEY,            -- uuid
    name          TEXT    NOT NULL UNIQUE,
    cron          TEXT    NOT NULL,
    timezone      TEXT    NOT NULL,
    spec_json     TEXT    NOT NULL,
    paused        INTEGER NOT NULL DEFAULT 0,
    next_fire_at  INTEGER NOT NULL,               -- ms
    last_fired_at INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE paused = 0;

-- The schedule a job was fired by: its run history.
ALTER TABLE jobs ADD COLUMN schedule_id TEXT REFERENCES schedules (id) ON DELETE SET NULL;
CREATE INDEX jobs_schedule ON jobs (schedule_id, created_at) WHERE schedule_id IS NOT NULL;
