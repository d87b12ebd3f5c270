ALTER TABLE /*schema*/millrace_client DROP COLUMN queues;
DROP TABLE /*schema*/millrace_rate_limit_fetch;
