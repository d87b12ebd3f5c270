-- Fills a migrated schema's river_job with 5,000,000 jobs shaped like a busy production table:
-- mostly completed history (about 15,000 finalized in the last hour), a discarded and
-- cancelled tail, and a live backlog across 10 queues and 20 kinds. Used by the dashboard's
-- load proof (crates/millrace-web/README.md):
--
--   psql -h 127.0.0.1 -U postgres -d postgres -c 'CREATE SCHEMA millrace_web_bench'
--   millrace migrate-up --database-url postgres://postgres@127.0.0.1:5432/postgres --schema millrace_web_bench
--   psql -h 127.0.0.1 -U postgres -d postgres -v schema=millrace_web_bench -f crates/millrace-web/bench/seed.sql
--
-- psql's :"schema" quotes the name as an identifier.
\set ON_ERROR_STOP on
SET search_path = :"schema";
TRUNCATE river_job;

-- Ids grow with creation time, about 0.12 s apart, so the 5,000,000 jobs span a week. The
-- newest 200,000 hold the live backlog (80,000 available, 10,000 scheduled, 5,000 retryable,
-- 4,800 pending, 200 running) among recent completions; older jobs are finalized: about 3 %
-- discarded, 1 % cancelled, the rest completed, each finalized a second after it was created.
INSERT INTO river_job (state, attempt, max_attempts, attempted_at, created_at, finalized_at,
                       scheduled_at, priority, args, kind, metadata, queue, errors, attempted_by)
SELECT s.state,
       CASE WHEN s.state IN ('available', 'pending', 'scheduled') THEN 0 ELSE 1 END,
       25,
       CASE WHEN s.state IN ('available', 'pending', 'scheduled') THEN NULL ELSE t.created + interval '1 second' END,
       t.created,
       CASE WHEN s.state IN ('completed', 'discarded', 'cancelled') THEN t.created + interval '1 second' END,
       CASE WHEN s.state IN ('scheduled', 'retryable') THEN now() + (g % 3600) * interval '1 second'
            ELSE t.created END,
       1 + g % 4,
       jsonb_build_object('customer_id', g % 100000, 'n', g),
       'kind_' || (g % 20),
       jsonb_build_object('tenant', 'tenant_' || (g % 50)),
       'queue_' || (g % 10),
       CASE WHEN s.state IN ('discarded', 'retryable') THEN
           ARRAY[jsonb_build_object('at', t.created, 'attempt', 1, 'error', 'boom ' || g, 'trace', '')] END,
       CASE WHEN s.state IN ('available', 'pending', 'scheduled') THEN NULL ELSE ARRAY['bench_client'] END
FROM generate_series(1, 5000000) AS g
CROSS JOIN LATERAL (SELECT now() - (5000000 - g) * interval '121 milliseconds' AS created) AS t
CROSS JOIN LATERAL (
    SELECT (CASE
        WHEN g > 4800000 AND g % 1000 < 400 THEN 'available'
        WHEN g > 4800000 AND g % 1000 < 450 THEN 'scheduled'
        WHEN g > 4800000 AND g % 1000 < 475 THEN 'retryable'
        WHEN g > 4800000 AND g % 1000 < 499 THEN 'pending'
        WHEN g > 4800000 AND g % 1000 = 499 THEN 'running'
        WHEN g % 100 < 3 THEN 'discarded'
        WHEN g % 100 < 4 THEN 'cancelled'
        ELSE 'completed'
    END)::river_job_state AS state
) AS s;

VACUUM ANALYZE river_job;
SELECT state, count(*) FROM river_job GROUP BY state ORDER BY state;
