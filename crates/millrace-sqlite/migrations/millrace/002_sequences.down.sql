-- IF EXISTS: line main's version 8 rebuilds river_job on SQLite, which drops the index with
-- the old table, so a step-by-step round trip that took main below 8 first finds it gone.
DROP INDEX IF EXISTS /*schema*/millrace_job_sequence_index;
