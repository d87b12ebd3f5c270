#!/usr/bin/env python3
"""The floor's loop (../shared/bench/raw_limit.py) with a choice of statements, to tell the cost
of Millrace's SQL apart from the cost of its client: COPY-insert N jobs, then W connections each
loop {fetch B jobs; complete them}.

  mode floor: the floor's own fetch and completion
  mode fetch: Millrace's fetch (every column a worker needs, binary), the floor's completion
  mode ours:  Millrace's fetch and its fenced completion

Needs psycopg 3 and a disposable database migrated to River's schema (it truncates river_job).
Usage: floor_millrace_sql.py DSN N W B MODE
Prints the work rate, in the floor's format."""
import sys, threading, time

import psycopg

dsn, N, W, B, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]

FETCH_FLOOR = """
UPDATE river_job SET state = 'running', attempt = river_job.attempt + 1, attempted_at = now(),
       attempted_by = array_append(river_job.attempted_by, %s)
FROM (SELECT id FROM river_job WHERE state = 'available' AND queue = 'default' AND scheduled_at <= now()
      ORDER BY priority, scheduled_at, id LIMIT %s FOR UPDATE SKIP LOCKED) AS locked
WHERE river_job.id = locked.id RETURNING river_job.id"""
# As crates/millrace-postgres/src/queries.rs writes it (job_get_available).
FETCH_MILLRACE = """
WITH locked AS (
    SELECT id FROM river_job
    WHERE state = 'available' AND queue = 'default' AND scheduled_at <= coalesce(NULL::timestamptz, now())
    ORDER BY priority ASC, scheduled_at ASC, id ASC
    LIMIT %s
    FOR UPDATE SKIP LOCKED
)
UPDATE river_job AS j SET
    state = 'running',
    attempt = least(j.attempt, 32766) + 1,
    attempted_at = coalesce(NULL::timestamptz, now()),
    attempted_by = array_append(j.attempted_by[greatest(cardinality(j.attempted_by) - 98, 1):], %s::text)
FROM locked
WHERE j.id = locked.id
RETURNING j.id, j.args, j.attempt, j.attempted_at, j.attempted_by, j.created_at, j.errors, j.kind,
          j.max_attempts, j.metadata, j.priority, j.queue, j.scheduled_at, j.tags, j.unique_key,
          j.unique_states"""
COMPLETE_FLOOR = "UPDATE river_job SET state = 'completed', finalized_at = now() WHERE id = ANY(%s) AND state = 'running'"
# As queries.rs writes it (job_complete_completed), for jobs at attempt 1.
COMPLETE_MILLRACE = """
UPDATE river_job AS j SET state = 'completed', finalized_at = now()
WHERE j.id = ANY(%s::bigint[]) AND j.state = 'running' AND j.attempt = %s::smallint
RETURNING j.id"""

with psycopg.connect(dsn, autocommit=True) as c:
    c.execute("TRUNCATE river_job")
    c.execute("VACUUM ANALYZE river_job")
    with c.cursor() as cur:
        with cur.copy("COPY river_job (args, kind, max_attempts, priority, queue, state, scheduled_at) FROM STDIN") as cp:
            for _ in range(N):
                cp.write_row(('{}', 'noop', 25, 1, 'default', 'available', '2000-01-01T00:00:00Z'))

done = [0] * W


def worker(k):
    with psycopg.connect(dsn, autocommit=True) as c:
        while True:
            if mode in ("ours", "fetch"):
                rows = c.execute(FETCH_MILLRACE, (B, f"raw-{k}"), binary=True).fetchall()
            else:
                rows = c.execute(FETCH_FLOOR, (f"raw-{k}", B)).fetchall()
            ids = [r[0] for r in rows]
            if not ids:
                return
            if mode == "ours":
                c.execute(COMPLETE_MILLRACE, (ids, 1)).fetchall()
            else:
                c.execute(COMPLETE_FLOOR, (ids,))
            done[k] += len(ids)


t1 = time.perf_counter()
threads = [threading.Thread(target=worker, args=(k,)) for k in range(W)]
[t.start() for t in threads]
[t.join() for t in threads]
print(f"work {sum(done) / (time.perf_counter() - t1):,.0f} jobs/s ({mode}, N={N} W={W} B={B})")
