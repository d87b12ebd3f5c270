-- river_migration is keyed by (line, version) from here on, so that lines
-- other than `main` can record their versions. SQLite cannot change a primary
-- key in place: the table is copied into its new shape, then takes the old
-- one's name (the version index goes with the old table).
CREATE TABLE /*schema*/river_migration_new (
    line text NOT NULL,
    version integer NOT NULL,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT line_length CHECK (length(line) BETWEEN 1 AND 127),
    CONSTRAINT version_gte_1 CHECK (version >= 1),
    PRIMARY KEY (line, version)
);

INSERT INTO /*schema*/river_migration_new (line, version, created_at)
SELECT 'main', version, created_at FROM /*schema*/river_migration;

DROP TABLE /*schema*/river_migration;

ALTER TABLE /*schema*/river_migration_new RENAME TO river_migration;

-- River added these for a client registry it never shipped; version 7 drops
-- them again.
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
