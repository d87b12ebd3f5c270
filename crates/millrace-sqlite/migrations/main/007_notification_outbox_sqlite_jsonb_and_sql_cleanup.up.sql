-- The notification outbox: SQLite has no LISTEN/NOTIFY, so notifications are
-- rows that listeners poll for by id. AUTOINCREMENT keeps ids rising even after
-- the newest row is deleted, so a listener's cursor never skips one.
CREATE TABLE /*schema*/river_notification (
    id integer PRIMARY KEY AUTOINCREMENT,
    created_at timestamp NOT NULL DEFAULT (datetime('now', 'subsec')),
    payload text NOT NULL,
    topic text NOT NULL,
    CONSTRAINT topic_length CHECK (length(topic) BETWEEN 1 AND 127)
);

CREATE INDEX /*schema*/river_notification_created_at_idx
    ON river_notification (created_at);

CREATE INDEX /*schema*/river_notification_topic_id_idx
    ON river_notification (topic, id);

-- JSON columns become JSONB blobs, with jsonb() defaults, and
-- river_job.max_attempts gets its default of 25. SQLite changes neither a
-- column's type nor its default in place, so each table is copied into its new
-- shape and takes the old one's name. In River's version max_attempts is
-- re-added as the last column, so it is the last column here too.
CREATE TABLE /*schema*/river_job_new (
    id integer PRIMARY KEY,
    args blob NOT NULL DEFAULT (jsonb('{}')),
    attempt integer NOT NULL DEFAULT 0,
    attempted_at timestamp,
    attempted_by blob,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    errors blob,
    finalized_at timestamp,
    kind text NOT NULL,
    metadata blob NOT NULL DEFAULT (jsonb('{}')),
    priority integer NOT NULL DEFAULT 1,
    queue text NOT NULL DEFAULT 'default',
    state text NOT NULL DEFAULT 'available',
    scheduled_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    tags blob NOT NULL DEFAULT (jsonb('[]')),
    unique_key blob,
    unique_states integer,
    max_attempts integer NOT NULL DEFAULT 25,
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

-- jsonb(NULL) is NULL, so absent attempted_by and errors stay absent.
INSERT INTO /*schema*/river_job_new (
    id, args, attempt, attempted_at, attempted_by, created_at, errors, finalized_at, kind,
    metadata, priority, queue, state, scheduled_at, tags, unique_key, unique_states,
    max_attempts
)
SELECT
    id, jsonb(args), attempt, attempted_at, jsonb(attempted_by), created_at, jsonb(errors),
    finalized_at, kind, jsonb(metadata), priority, queue, state, scheduled_at, jsonb(tags),
    unique_key, unique_states, max_attempts
FROM /*schema*/river_job;

DROP TABLE /*schema*/river_job;

ALTER TABLE /*schema*/river_job_new RENAME TO river_job;

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

-- river_queue: JSONB metadata, and updated_at may be left out of inserts.
CREATE TABLE /*schema*/river_queue_new (
    name text PRIMARY KEY NOT NULL,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    metadata blob NOT NULL DEFAULT (jsonb('{}')),
    paused_at timestamp,
    updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);

INSERT INTO /*schema*/river_queue_new (name, created_at, metadata, paused_at, updated_at)
SELECT name, created_at, jsonb(metadata), paused_at, updated_at FROM /*schema*/river_queue;

DROP TABLE /*schema*/river_queue;

ALTER TABLE /*schema*/river_queue_new RENAME TO river_queue;

-- The never-used client registry goes.
DROP TABLE /*schema*/river_client_queue;
DROP TABLE /*schema*/river_client;
