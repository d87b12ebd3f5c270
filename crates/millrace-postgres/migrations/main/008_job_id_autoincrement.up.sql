-- Version 8 comes with River's Rust crate and CLI: on SQLite it rebuilds
-- river_job so that job ids are never reused. A PostgreSQL sequence never
-- reuses ids already, so this version only records itself.
SELECT 1;
