-- Millrace's own tables, kept apart from River's: client heartbeats (liveness
-- in seconds rather than RescueStuckJobsAfter), the lease that elects one
-- Millrace client for Millrace-only fleet work (a River client may hold
-- river_leader), and the next run of each named periodic job. Times are UTC
-- text in the form River's SQLite schema uses.

CREATE TABLE /*schema*/millrace_client (
    id text PRIMARY KEY NOT NULL,
    started_at timestamp NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    heartbeat_at timestamp NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    lease_expires_at timestamp NOT NULL,
    CONSTRAINT id_length CHECK (length(id) BETWEEN 1 AND 127)
);

CREATE INDEX /*schema*/millrace_client_lease_expires_at_index
    ON millrace_client (lease_expires_at);

CREATE TABLE /*schema*/millrace_leader (
    name text PRIMARY KEY NOT NULL DEFAULT 'default',
    leader_id text NOT NULL,
    elected_at timestamp NOT NULL,
    expires_at timestamp NOT NULL,
    CONSTRAINT name_length CHECK (name = 'default'),
    CONSTRAINT leader_id_length CHECK (length(leader_id) BETWEEN 1 AND 127)
);

CREATE TABLE /*schema*/millrace_periodic_job (
    id text PRIMARY KEY NOT NULL,
    next_run_at timestamp NOT NULL,
    updated_at timestamp NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    CONSTRAINT id_length CHECK (length(id) BETWEEN 1 AND 127)
);
