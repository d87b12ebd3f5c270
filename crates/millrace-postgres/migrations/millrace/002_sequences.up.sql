-- Sequences (issue 19): a job's sequence key lives in its metadata under
-- `millrace:seq`. This index finds a key's unfinished jobs (live, pending, and the
-- discarded or cancelled ones that may block it) by key and state, in id order, so
-- inserting into a sequence and promoting its next pending job cost a few index probes
-- however many jobs wait. Jobs without a key, and completed ones, stay out of it, so
-- it costs the rest of the queue nothing but the predicate's check.
-- (Numbered 3: version 2 of this line is the concurrency limits' migration.)

CREATE INDEX millrace_job_sequence_index
    ON /*schema*/river_job ((metadata ->> 'millrace:seq'), state, id)
    WHERE (metadata ->> 'millrace:seq') IS NOT NULL AND state <> 'completed';
