-- Millrace's migrator reverts every other line before this version (River's
-- refuses to run it while river_migration holds any), so only line `main` is
-- left to copy back into the version-keyed table.
DROP TABLE /*schema*/river_client_queue;
DROP TABLE /*schema*/river_client;

CREATE TABLE /*schema*/river_migration_old (
    id integer PRIMARY KEY,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    version integer NOT NULL,
    CONSTRAINT version CHECK (version >= 1)
);

INSERT INTO /*schema*/river_migration_old (created_at, version)
SELECT created_at, version FROM /*schema*/river_migration
WHERE line = 'main'
ORDER BY version;

DROP TABLE /*schema*/river_migration;

ALTER TABLE /*schema*/river_migration_old RENAME TO river_migration;

CREATE UNIQUE INDEX /*schema*/river_migration_version_idx
    ON river_migration (version);
