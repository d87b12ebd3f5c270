-- Goes back to a river_migration keyed by version alone. Rows of any line but
-- `main` would have nowhere to go, so their presence stops the migration:
-- migrate those lines down to nothing first.
DO $migrate$
BEGIN
    IF to_regclass('/*schema*/river_migration') IS NULL THEN
        RETURN;
    END IF;

    IF EXISTS (SELECT 1 FROM /*schema*/river_migration WHERE line <> 'main') THEN
        RAISE EXCEPTION 'river_migration holds migration lines other than main; version 005 cannot be reverted without losing them';
    END IF;

    ALTER TABLE /*schema*/river_migration RENAME TO river_migration_old;

    CREATE TABLE /*schema*/river_migration (
        id bigserial PRIMARY KEY,
        created_at timestamptz NOT NULL DEFAULT now(),
        version bigint NOT NULL,
        CONSTRAINT version CHECK (version >= 1)
    );

    CREATE UNIQUE INDEX ON /*schema*/river_migration USING btree (version);

    INSERT INTO /*schema*/river_migration (created_at, version)
    SELECT created_at, version
    FROM /*schema*/river_migration_old;

    DROP TABLE /*schema*/river_migration_old;
END;
$migrate$;

-- Dropping the column drops river_job_kind_unique_key_idx with it.
ALTER TABLE /*schema*/river_job DROP COLUMN unique_key;

DROP TABLE /*schema*/river_client_queue;
DROP TABLE /*schema*/river_client;
