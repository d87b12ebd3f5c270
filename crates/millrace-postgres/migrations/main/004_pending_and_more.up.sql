-- args and metadata were kept non-null by clients only; make the database
-- enforce it, filling any nulls first. args keeps no default.
ALTER TABLE /*schema*/river_job ALTER COLUMN args SET DEFAULT '{}';
UPDATE /*schema*/river_job SET args = '{}' WHERE args IS NULL;
ALTER TABLE /*schema*/river_job ALTER COLUMN args SET NOT NULL;
ALTER TABLE /*schema*/river_job ALTER COLUMN args DROP DEFAULT;

ALTER TABLE /*schema*/river_job ALTER COLUMN metadata SET DEFAULT '{}';
UPDATE /*schema*/river_job SET metadata = '{}' WHERE metadata IS NULL;
ALTER TABLE /*schema*/river_job ALTER COLUMN metadata SET NOT NULL;

-- A new state keeps the enum in alphabetical order. PostgreSQL cannot drop an
-- enum value, so the down migration leaves it in place.
ALTER TYPE /*schema*/river_job_state ADD VALUE IF NOT EXISTS 'pending' AFTER 'discarded';

-- finalized_at is now required for finalized states, not merely allowed.
ALTER TABLE /*schema*/river_job DROP CONSTRAINT finalized_or_finalized_at_null;
ALTER TABLE /*schema*/river_job ADD CONSTRAINT finalized_or_finalized_at_null CHECK (
    (finalized_at IS NULL AND state NOT IN ('cancelled', 'completed', 'discarded'))
    OR (finalized_at IS NOT NULL AND state IN ('cancelled', 'completed', 'discarded'))
);

-- Inserting clients notify for themselves from here on.
DROP TRIGGER river_notify ON /*schema*/river_job;
DROP FUNCTION /*schema*/river_job_notify();

CREATE TABLE /*schema*/river_queue (
    name text PRIMARY KEY NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    paused_at timestamptz,
    updated_at timestamptz NOT NULL
);

-- Only one leader row is ever used, and it is named `default`.
ALTER TABLE /*schema*/river_leader
    ALTER COLUMN name SET DEFAULT 'default',
    DROP CONSTRAINT name_length,
    ADD CONSTRAINT name_length CHECK (name = 'default');
