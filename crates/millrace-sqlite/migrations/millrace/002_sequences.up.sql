-- Sequences (issue 19): a job's sequence key lives in its metadata under
-- `millrace:seq`. This index finds a key's unfinished jobs (live, pending, and the
-- discarded or cancelled ones that may block it) by key and state, in id order. Jobs
-- without a key, and completed ones, stay out of it. Statements spell the key
-- expression exactly as here, which is how SQLite matches an expression index.
-- (Numbered 3: version 2 of this line is the concurrency limits' migration.)

CREATE INDEX /*schema*/millrace_job_sequence_index
    ON river_job (metadata ->> '$."millrace:seq"', state, id)
    WHERE metadata ->> '$."millrace:seq"' IS NOT NULL AND state <> 'completed';
