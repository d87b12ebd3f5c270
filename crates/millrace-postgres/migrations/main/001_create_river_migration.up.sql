-- River's first migration table, keyed by version alone. Version 5 rebuilds it
-- around (line, version).
CREATE TABLE /*schema*/river_migration (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    version bigint NOT NULL,
    CONSTRAINT version CHECK (version >= 1)
);

-- Left unnamed on purpose: PostgreSQL calls it river_migration_version_idx, as
-- in a database River migrated.
CREATE UNIQUE INDEX ON /*schema*/river_migration USING btree (version);
