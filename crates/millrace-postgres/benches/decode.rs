//! Criterion benchmark of decoding fetched `river_job` rows into `JobRow`s: the client-side
//! CPU cost of a fetch, apart from the round trip.
//!
//! The rows come from PostgreSQL once (`DATABASE_URL`, default the local server): a
//! `generate_series` shaped like `river_job`, so no table is needed. Only the decoding is timed.
//!
//! ```sh
//! cargo bench -p millrace-postgres --bench decode
//! ```

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use millrace_postgres::{decode_job_row, job_columns};
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgRow;

/// Rows shaped like a fetch's: `args` of the given JSON, one client in `attempted_by`.
fn job_rows(args: &str, count: i64) -> Option<Vec<PgRow>> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let pool = match sqlx::PgPool::connect(&url).await {
            Ok(pool) => pool,
            Err(err) => {
                eprintln!("decode benchmark skipped: no database at {url}: {err}");
                return None;
            }
        };
        // The same column list and casts as a fetch, over values instead of a table.
        let sql = format!(
            "SELECT {} FROM (SELECT g AS id, '{args}'::jsonb AS args, 1::smallint AS attempt, \
             now() AS attempted_at, ARRAY['bench_client']::text[] AS attempted_by, \
             now() AS created_at, NULL::jsonb[] AS errors, NULL::timestamptz AS finalized_at, \
             'bench_kind'::text AS kind, 25::smallint AS max_attempts, '{{}}'::jsonb AS metadata, \
             1::smallint AS priority, 'default'::text AS queue, now() AS scheduled_at, \
             '{{}}'::varchar(255)[] AS tags, NULL::bytea AS unique_key, 'running'::text AS state, \
             NULL::bit(8) AS unique_states FROM generate_series(1::bigint, {count}) AS g) AS j",
            job_columns("j.")
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&pool)
            .await
            .expect("rows");
        pool.close().await;
        Some(rows)
    })
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_job_row");
    for (name, args) in [
        ("empty_args", "{}"),
        (
            "small_args",
            r#"{"customer_id": 12345, "email": "a@example.com"}"#,
        ),
    ] {
        let Some(rows) = job_rows(args, 2_000) else {
            return;
        };
        group.throughput(Throughput::Elements(rows.len() as u64));
        group.bench_with_input(BenchmarkId::new("2000_rows", name), &rows, |b, rows| {
            b.iter(|| {
                rows.iter()
                    .map(|r| decode_job_row(r).expect("decodes"))
                    .collect::<Vec<_>>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
