-- Rate limits (issue 19): one row per rate partition a rate-limited fetch took jobs of,
-- with how many it took. A fetch sums a partition's rows younger than the queue's
-- period and prunes the older ones, so the table holds at most the limit's number of
-- rows per partition (plus those of queues no longer limited). A row per fetch rather
-- than per job: the jobs of one fetch start at one time, so the window is as exact.
-- Times are Unix microseconds, so a window's start is plain arithmetic.

CREATE TABLE /*schema*/millrace_rate_limit_fetch (
    queue text NOT NULL,
    partition_key text NOT NULL,
    fetched_at integer NOT NULL,
    fetched integer NOT NULL CHECK (fetched > 0)
);

CREATE INDEX /*schema*/millrace_rate_limit_fetch_queue_fetched_at_index
    ON millrace_rate_limit_fetch (queue, fetched_at);

-- Each client's declared limits (issue 19): the concurrency and rate limits it was built with,
-- by queue, written by the client at start and again every half minute. Clients compare their
-- own with those of the other live clients and report any that differ. '{}' for a client
-- that declared nothing or predates this column.

ALTER TABLE /*schema*/millrace_client ADD COLUMN queues text NOT NULL DEFAULT '{}';
