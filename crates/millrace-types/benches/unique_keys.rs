//! The CPU cost of River-compatible unique keys, paid on every unique insert:
//! `cargo bench -p millrace-types --bench unique_keys`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use millrace_types::UniqueKeyParts;
use millrace_types::unique::{canonical_args, period_start};

const ARGS: &str = r#"{"customer":{"id":7123,"region":"eu-west"},"amount":1999,"currency":"EUR","note":"renewal <monthly> & tax"}"#;

fn unique_keys(c: &mut Criterion) {
    c.bench_function("canonical_args/all", |b| {
        b.iter(|| canonical_args(black_box(ARGS), None).unwrap())
    });
    c.bench_function("canonical_args/fields", |b| {
        b.iter(|| canonical_args(black_box(ARGS), Some(&["customer.id", "amount"])).unwrap())
    });
    let canonical = canonical_args(ARGS, None).unwrap();
    let at: jiff::Timestamp = "2024-05-06T07:08:09Z".parse().unwrap();
    c.bench_function("key/kind_args_period_queue", |b| {
        b.iter(|| {
            UniqueKeyParts {
                kind: Some("charge_customer"),
                args: Some(black_box(&canonical)),
                period_start: Some(period_start(at, Duration::from_secs(3600))),
                queue: Some("billing"),
            }
            .key()
        })
    });
}

criterion_group!(benches, unique_keys);
criterion_main!(benches);
