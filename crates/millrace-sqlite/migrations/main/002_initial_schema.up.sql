-- River's SQLite schema came long after version 2, so River defers the real
-- river_job to version 6; until then a one-column stand-in keeps the set of
-- tables each version has the same as on PostgreSQL.
CREATE TABLE /*schema*/river_job (
    id integer PRIMARY KEY
);

CREATE TABLE /*schema*/river_leader (
    elected_at timestamp NOT NULL,
    expires_at timestamp NOT NULL,
    leader_id text NOT NULL,
    name text PRIMARY KEY NOT NULL,
    CONSTRAINT name_length CHECK (length(name) BETWEEN 1 AND 127),
    CONSTRAINT leader_id_length CHECK (length(leader_id) BETWEEN 1 AND 127)
);
