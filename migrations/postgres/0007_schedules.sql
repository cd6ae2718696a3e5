-- Schedules: a stored job spec submitted again on a cron schedule, fired by
-- the leader replica. `next_fire_at` only moves forward, by a compare and
-- set in the transaction that creates the fired job, so no fire happens
-- twice; a fire missed while no coordinator ran is caught up once.
CREATE TABLE schedules (
    id            uuid        PRIMARY KEY,
    name          text        NOT NULL UNIQUE,
    cron          text        NOT NULL,
    timezone      text        NOT NULL,
    spec_json     text        NOT NULL,
    paused        boolean     NOT NULL DEFAULT false,
    next_fire_at  timestamptz NOT NULL,
    last_fired_at timestamptz,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE NOT paused;

-- The schedule a job was fired by: its run history.
ALTER TABLE jobs ADD COLUMN schedule_id uuid REFERENCES schedules (id) ON DELETE SET NULL;
CREATE INDEX jobs_schedule ON jobs (schedule_id, created_at) WHERE schedule_id IS NOT NULL;
