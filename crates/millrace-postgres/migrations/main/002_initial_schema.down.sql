DROP TABLE /*schema*/river_job;
DROP FUNCTION /*schema*/river_job_notify();
DROP TYPE /*schema*/river_job_state;
DROP TABLE /*schema*/river_leader;
