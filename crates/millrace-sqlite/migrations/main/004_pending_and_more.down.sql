DROP TABLE /*schema*/river_queue;

-- Back to version 2's leader table, without a default name.
DROP TABLE /*schema*/river_leader;

CREATE TABLE /*schema*/river_leader (
    elected_at timestamp NOT NULL,
    expires_at timestamp NOT NULL,
    leader_id text NOT NULL,
    name text PRIMARY KEY NOT NULL,
    CONSTRAINT name_length CHECK (length(name) BETWEEN 1 AND 127),
    CONSTRAINT leader_id_length CHECK (length(leader_id) BETWEEN 1 AND 127)
);
