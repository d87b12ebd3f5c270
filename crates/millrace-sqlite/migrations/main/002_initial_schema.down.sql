DROP TABLE /*schema*/river_leader;
DROP TABLE /*schema*/river_job;
