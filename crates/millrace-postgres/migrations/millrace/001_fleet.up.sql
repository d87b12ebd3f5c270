-- Millrace's own tables, kept apart from River's: client heartbeats (liveness in seconds rather
-- than RescueStuckJobsAfter), the lease that elects one Millrace client for Millrace-only fleet
-- work (a River client may hold river_leader), and the next run of each named periodic job.

CREATE TABLE /*schema*/millrace_client (
    id text PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    lease_expires_at timestamptz NOT NULL,
    CONSTRAINT id_length CHECK (char_length(id) > 0 AND char_length(id) < 128)
);

CREATE INDEX millrace_client_lease_expires_at_index
    ON /*schema*/millrace_client (lease_expires_at);

CREATE TABLE /*schema*/millrace_leader (
    name text PRIMARY KEY DEFAULT 'default',
    leader_id text NOT NULL,
    elected_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    CONSTRAINT name_length CHECK (name = 'default'),
    CONSTRAINT leader_id_length CHECK (char_length(leader_id) > 0 AND char_length(leader_id) < 128)
);

CREATE TABLE /*schema*/millrace_periodic_job (
    id text PRIMARY KEY,
    next_run_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT id_length CHECK (char_length(id) > 0 AND char_length(id) < 128)
);
