DROP INDEX /*schema*/millrace_job_sequence_index;
