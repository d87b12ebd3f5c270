-- Back to version 2's stand-in (its indexes go with the table).
DROP TABLE /*schema*/river_job;

CREATE TABLE /*schema*/river_job (
    id integer PRIMARY KEY
);
