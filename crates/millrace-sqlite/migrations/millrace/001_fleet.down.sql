DROP TABLE /*schema*/millrace_periodic_job;
DROP TABLE /*schema*/millrace_leader;
DROP TABLE /*schema*/millrace_client;
