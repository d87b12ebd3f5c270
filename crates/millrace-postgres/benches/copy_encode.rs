//! Criterion benchmark of encoding a batch of jobs as COPY text, the client-side CPU cost of
//! the fast insert apart from the round trips.
//!
//! ```sh
//! cargo bench -p millrace-postgres --bench copy_encode
//! ```

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use millrace_driver::JobInsertParams;
use millrace_types::JobState;

fn jobs(count: usize, args: &str, tags: &[&str]) -> Vec<JobInsertParams> {
    (0..count)
        .map(|_| JobInsertParams {
            args: args.to_owned(),
            created_at: None,
            kind: "bench_kind".to_owned(),
            max_attempts: 25,
            metadata: "{}".to_owned(),
            priority: 1,
            queue: "default".to_owned(),
            scheduled_at: None,
            state: JobState::Available,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            unique_key: None,
            unique_states: None,
        })
        .collect()
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_copy_text");
    for (name, batch) in [
        ("empty_args", jobs(10_000, "{}", &[])),
        (
            "args_and_tags",
            jobs(
                10_000,
                r#"{"customer_id": 12345, "email": "a@example.com"}"#,
                &["billing", "eu"],
            ),
        ),
    ] {
        group.throughput(Throughput::Elements(batch.len() as u64));
        group.bench_with_input(BenchmarkId::new("10000_jobs", name), &batch, |b, batch| {
            b.iter(|| millrace_postgres::encode_copy_text(batch))
        });
    }
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
