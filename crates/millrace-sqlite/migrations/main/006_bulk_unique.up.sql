-- River's SQLite river_job is born here, with everything versions 2 to 6 give
-- it on PostgreSQL. No job can have been stored in version 2's stand-in, so
-- it is simply replaced.
DROP TABLE /*schema*/river_job;

-- SQLite types: JSON as blobs (text until version 7 makes them JSONB),
-- timestamps as UTC text `YYYY-MM-DD HH:MM:SS.SSS`, the state as checked
-- text, and the unique states as an integer bit mask (available = bit 0 ...
-- scheduled = bit 7, the bits of PostgreSQL's bit(8) read from the right).
CREATE TABLE /*schema*/river_job (
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

CREATE INDEX /*schema*/river_job_kind ON river_job (kind);

CREATE INDEX /*schema*/river_job_state_and_finalized_at_index
    ON river_job (state, finalized_at)
    WHERE finalized_at IS NOT NULL;

CREATE INDEX /*schema*/river_job_prioritized_fetching_index
    ON river_job (state, queue, priority, scheduled_at, id);

-- SQLite has no GIN indexes, so args and metadata have none.

-- One live job per unique key. A unique insert names this index in its
-- ON CONFLICT clause, and SQLite accepts that only when the clause's WHERE is
-- this one expression for expression, so every River client's inserts (and
-- Millrace's) depend on it being spelled exactly so: bit n of unique_states
-- for the n-th state in enum order.
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
