-- Back to a rowid primary key that may reuse ids, keeping the column order and
-- the max_attempts default of version 8.

-- River Pro installs objects on river_job that a rebuild would silently drop,
-- so this version refuses to run while any of them is there. SQLite has no
-- conditional error outside triggers; a CHECK on a scratch table fails the
-- migration (and rolls it back) with the constraint's name as the message.
CREATE TABLE temp.millrace_guard_008 (
    ok integer NOT NULL
        CONSTRAINT river_pro_schema_must_be_absent_for_main_version_8 CHECK (ok)
);

INSERT INTO temp.millrace_guard_008 (ok)
SELECT NOT EXISTS (
    SELECT 1 FROM /*schema*/sqlite_master
    WHERE name IN ('river_job_sequence', 'river_job_workflow_scheduling', 'river_workflow')
);

DROP TABLE temp.millrace_guard_008;

CREATE TABLE /*schema*/river_job_old (
    id integer PRIMARY KEY,
    args blob NOT NULL DEFAULT (jsonb('{}')),
    attempt integer NOT NULL DEFAULT 0,
    attempted_at timestamp,
    attempted_by blob,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    errors blob,
    finalized_at timestamp,
    kind text NOT NULL,
    max_attempts integer NOT NULL DEFAULT 25,
    metadata blob NOT NULL DEFAULT (jsonb('{}')),
    priority integer NOT NULL DEFAULT 1,
    queue text NOT NULL DEFAULT 'default',
    state text NOT NULL DEFAULT 'available',
    scheduled_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    tags blob NOT NULL DEFAULT (jsonb('[]')),
    unique_key blob,
    unique_states integer,
    CONSTRAINT finalized_or_finalized_at_null CHECK (
        (finalized_at IS NOT NULL) = (state IN ('cancelled', 'completed', 'discarded'))
    ),
    CONSTRAINT priority_in_range CHECK (priority BETWEEN 1 AND 4),
    CONSTRAINT queue_length CHECK (length(queue) BETWEEN 1 AND 127),
    CONSTRAINT kind_length CHECK (length(kind) BETWEEN 1 AND 127),
    CONSTRAINT state_valid CHECK (state IN (
        'available', 'cancelled', 'completed', 'discarded',
        'pending', 'retryable', 'running', 'scheduled'
    ))
);

INSERT INTO /*schema*/river_job_old (
    id, args, attempt, attempted_at, attempted_by, created_at, errors, finalized_at, kind,
    max_attempts, metadata, priority, queue, state, scheduled_at, tags, unique_key,
    unique_states
)
SELECT
    id, args, attempt, attempted_at, attempted_by, created_at, errors, finalized_at, kind,
    max_attempts, metadata, priority, queue, state, scheduled_at, tags, unique_key,
    unique_states
FROM /*schema*/river_job;

DROP TABLE /*schema*/river_job;

ALTER TABLE /*schema*/river_job_old RENAME TO river_job;

CREATE INDEX /*schema*/river_job_kind ON river_job (kind);

CREATE INDEX /*schema*/river_job_state_and_finalized_at_index
    ON river_job (state, finalized_at)
    WHERE finalized_at IS NOT NULL;

CREATE INDEX /*schema*/river_job_prioritized_fetching_index
    ON river_job (state, queue, priority, scheduled_at, id);

-- Spelled exactly as in version 6: see there.
CREATE UNIQUE INDEX /*schema*/river_job_unique_idx ON river_job (unique_key)
    WHERE unique_key IS NOT NULL AND unique_states IS NOT NULL AND CASE state
        WHEN 'available' THEN unique_states & (1 << 0)
        WHEN 'cancelled' THEN unique_states & (1 << 1)
        WHEN 'completed' THEN unique_states & (1 << 2)
        WHEN 'discarded' THEN unique_states & (1 << 3)
        WHEN 'pending' THEN unique_states & (1 << 4)
        WHEN 'retryable' THEN unique_states & (1 << 5)
        WHEN 'running' THEN unique_states & (1 << 6)
        WHEN 'scheduled' THEN unique_states & (1 << 7)
        ELSE 0
    END >= 1;
