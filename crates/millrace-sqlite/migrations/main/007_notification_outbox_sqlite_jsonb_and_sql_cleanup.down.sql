-- Back to version 6: the client registry returns (empty), JSON columns become
-- text again with json() defaults, and river_job.max_attempts loses its
-- default.
CREATE TABLE /*schema*/river_client (
    id text PRIMARY KEY NOT NULL,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    metadata blob NOT NULL DEFAULT (json('{}')),
    paused_at timestamp,
    updated_at timestamp NOT NULL,
    CONSTRAINT name_length CHECK (length(id) BETWEEN 1 AND 127)
);

CREATE TABLE /*schema*/river_client_queue (
    river_client_id text NOT NULL REFERENCES river_client (id) ON DELETE CASCADE,
    name text NOT NULL,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    max_workers integer NOT NULL DEFAULT 0,
    metadata blob NOT NULL DEFAULT (json('{}')),
    num_jobs_completed integer NOT NULL DEFAULT 0,
    num_jobs_running integer NOT NULL DEFAULT 0,
    updated_at timestamp NOT NULL,
    PRIMARY KEY (river_client_id, name),
    CONSTRAINT name_length CHECK (length(name) BETWEEN 1 AND 127),
    CONSTRAINT num_jobs_completed_zero_or_positive CHECK (num_jobs_completed >= 0),
    CONSTRAINT num_jobs_running_zero_or_positive CHECK (num_jobs_running >= 0)
);

CREATE TABLE /*schema*/river_job_old (
    id integer PRIMARY KEY,
    args blob NOT NULL DEFAULT '{}',
    attempt integer NOT NULL DEFAULT 0,
    attempted_at timestamp,
    attempted_by blob,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    errors blob,
    finalized_at timestamp,
    kind text NOT NULL,
    max_attempts integer NOT NULL,
    metadata blob NOT NULL DEFAULT (json('{}')),
    priority integer NOT NULL DEFAULT 1,
    queue text NOT NULL DEFAULT 'default',
    state text NOT NULL DEFAULT 'available',
    scheduled_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    tags blob NOT NULL DEFAULT (json('[]')),
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
    id, json(args), attempt, attempted_at, json(attempted_by), created_at, json(errors),
    finalized_at, kind, max_attempts, json(metadata), priority, queue, state, scheduled_at,
    json(tags), unique_key, unique_states
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

CREATE TABLE /*schema*/river_queue_old (
    name text PRIMARY KEY NOT NULL,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    metadata blob NOT NULL DEFAULT (json('{}')),
    paused_at timestamp,
    updated_at timestamp NOT NULL
);

INSERT INTO /*schema*/river_queue_old (name, created_at, metadata, paused_at, updated_at)
SELECT name, created_at, json(metadata), paused_at, updated_at FROM /*schema*/river_queue;

DROP TABLE /*schema*/river_queue;

ALTER TABLE /*schema*/river_queue_old RENAME TO river_queue;

DROP TABLE /*schema*/river_notification;
