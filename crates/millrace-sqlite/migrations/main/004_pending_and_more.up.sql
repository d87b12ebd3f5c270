-- The river_job changes of this version (the pending state, NOT NULL args and
-- metadata, the finalized_at check) are part of version 6 on SQLite.

CREATE TABLE /*schema*/river_queue (
    name text PRIMARY KEY NOT NULL,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    metadata blob NOT NULL DEFAULT (json('{}')),
    paused_at timestamp,
    updated_at timestamp NOT NULL
);

-- The leader row gets its default name. SQLite cannot change a column's
-- default in place, and the row is ephemeral (a lease of seconds), so the
-- table is made anew rather than copied.
DROP TABLE /*schema*/river_leader;

CREATE TABLE /*schema*/river_leader (
    elected_at timestamp NOT NULL,
    expires_at timestamp NOT NULL,
    leader_id text NOT NULL,
    name text PRIMARY KEY NOT NULL DEFAULT 'default' CHECK (name = 'default'),
    CONSTRAINT name_length CHECK (length(name) BETWEEN 1 AND 127),
    CONSTRAINT leader_id_length CHECK (length(leader_id) BETWEEN 1 AND 127)
);
