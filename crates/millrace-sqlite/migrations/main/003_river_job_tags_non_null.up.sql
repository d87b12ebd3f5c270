-- On PostgreSQL this version makes river_job.tags NOT NULL. River's SQLite
-- river_job is created with that already in version 6, so here it only
-- records itself.
SELECT 1;
