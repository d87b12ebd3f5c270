-- River's first migration table, keyed by version alone. Version 5 rebuilds it
-- around (line, version).
CREATE TABLE /*schema*/river_migration (
    id integer PRIMARY KEY,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    version integer NOT NULL,
    CONSTRAINT version CHECK (version >= 1)
);

-- SQLite puts an index in the schema named before it, on a table of that same
-- schema, which is why the table stays unqualified.
CREATE UNIQUE INDEX /*schema*/river_migration_version_idx
    ON river_migration (version);
