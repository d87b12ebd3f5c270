//! Property tests (issue 20) of what the types crate parses and builds: unique keys against
//! River's stored vectors under every rewriting River ignores, the key string's shape, the
//! period floor, state masks, and attempt errors decoded from any JSON.
//!
//! A failure prints the seed and the shrunk input; `PROPTEST_CASES` runs more cases.

use std::time::Duration;

use jiff::Timestamp;
use millrace_types::unique::{
    UniqueKeyParts, UniqueStates, canonical_args, canonical_args_paths, period_start,
};
use millrace_types::{AttemptError, JobState};
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

#[derive(Deserialize)]
struct Vectors {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    kind: String,
    args: String,
    unique_fields: Option<Vec<Vec<String>>>,
    by_args: bool,
    by_queue: bool,
    by_period_nanos: Option<u64>,
    exclude_kind: bool,
    queue: String,
    key: Option<String>,
}

/// River's vectors whose key hashes the whole args, by args alone (no period, which would
/// need the insert time), and whose args are an object with distinct keys.
fn whole_args_vectors() -> Vec<(Case, Vec<(String, String)>)> {
    let vectors: Vectors = serde_json::from_str(include_str!("river_unique_vectors.json"))
        .expect("river_unique_vectors.json parses");
    vectors
        .cases
        .into_iter()
        .filter(|case| {
            case.key.is_some()
                && case.by_args
                && case.by_period_nanos.is_none()
                && case.unique_fields.as_ref().is_none_or(Vec::is_empty)
        })
        .filter_map(|case| {
            let entries = top_level_entries(&case.args)?;
            Some((case, entries))
        })
        .collect()
}

/// The top-level members of a JSON object, in order, each value exactly as encoded; `None`
/// for anything else, or an object with a repeated key (whose meaning depends on order).
fn top_level_entries(json: &str) -> Option<Vec<(String, String)>> {
    let Members(entries) = serde_json::from_str(json).ok()?;
    let mut keys: Vec<&String> = entries.iter().map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    (keys.len() == entries.len()).then_some(entries)
}

/// Every member of a JSON object, repeats included.
struct Members(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Members, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    out.push((k, v.get().to_owned()));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// An object written from `entries` in the given order, with the given whitespace around
/// each token, as any JSON encoder might.
fn write_object(entries: &[(String, String)], order: &[usize], spaces: &[&str]) -> String {
    let space = |i: usize| spaces[i % spaces.len()];
    let mut out = String::from("{");
    for (n, &i) in order.iter().enumerate() {
        if n > 0 {
            out.push_str(space(n));
            out.push(',');
        }
        let (key, value) = &entries[i];
        out.push_str(space(n + 1));
        out.push_str(&serde_json::to_string(key).unwrap());
        out.push_str(space(n + 2));
        out.push(':');
        out.push_str(space(n + 3));
        out.push_str(value);
    }
    out.push_str(space(0));
    out.push('}');
    out
}

fn key_of(case: &Case, args: &str) -> String {
    let canonical = canonical_args(args, None).expect("canonical args");
    let parts = UniqueKeyParts {
        kind: (!case.exclude_kind).then_some(case.kind.as_str()),
        args: Some(&canonical),
        period_start: None,
        queue: case.by_queue.then_some(case.queue.as_str()),
    };
    hex::encode(parts.key())
}

proptest! {
    /// River sorts the args' top-level members and drops the whitespace between them, so an
    /// encoder that orders or spaces them otherwise must get River's key all the same.
    #[test]
    fn river_vectors_keep_their_key_whatever_the_member_order_and_spacing(
        pick in any::<prop::sample::Index>(),
        shuffle in any::<u64>(),
        spaces in prop::collection::vec(prop::sample::select(vec!["", " ", "\n", "\t", "  \r\n"]), 1..6),
    ) {
        let vectors = whole_args_vectors();
        prop_assume!(!vectors.is_empty());
        let (case, entries) = &vectors[pick.index(vectors.len())];
        let mut order: Vec<usize> = (0..entries.len()).collect();
        // A Fisher-Yates shuffle driven by the generated seed, so proptest can shrink it.
        let mut state = shuffle;
        for i in (1..order.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (state >> 33) as usize % (i + 1));
        }
        let rewritten = write_object(entries, &order, &spaces);
        prop_assert_eq!(
            Some(key_of(case, &rewritten)),
            case.key.clone(),
            "vector {} rewritten as {}", case.name, rewritten
        );
    }

    /// The hashed string is River's: the enabled parts in the order kind, args, period, queue,
    /// and the key is its SHA-256.
    #[test]
    fn key_is_the_sha256_of_rivers_string(
        kind in proptest::option::of("[a-z_]{1,20}"),
        args in proptest::option::of(prop::collection::btree_map("[a-z]{1,6}", any::<i32>(), 0..5)),
        period in proptest::option::of(0i64..4_000_000_000),
        queue in proptest::option::of("[a-z0-9_]{1,20}"),
    ) {
        let args_json = args.map(|a| serde_json::to_string(&a).unwrap());
        let canonical = args_json.as_deref().map(|a| canonical_args(a, None).unwrap());
        let start = period.map(|s| Timestamp::from_second(s).unwrap());
        let parts = UniqueKeyParts {
            kind: kind.as_deref(),
            args: canonical.as_deref(),
            period_start: start,
            queue: queue.as_deref(),
        };
        let mut expected = String::new();
        if let Some(kind) = &kind { expected += &format!("&kind={kind}"); }
        if let Some(args) = &canonical { expected += &format!("&args={args}"); }
        if let Some(start) = start { expected += &format!("&period={}", start.strftime("%Y-%m-%dT%H:%M:%SZ")); }
        if let Some(queue) = &queue { expected += &format!("&queue={queue}"); }
        prop_assert_eq!(parts.to_key_string(), expected.clone());
        prop_assert_eq!(parts.key(), Sha256::digest(expected.as_bytes()).to_vec());
    }

    /// The period's lower bound is at or before the time, less than a period before it, and a
    /// whole number of periods from 0001-01-01T00:00:00Z (Go's `Time.Truncate`).
    #[test]
    fn period_start_floors_to_a_multiple_from_year_one(
        secs in -60_000_000_000i64..200_000_000_000,
        nanos in 0i32..1_000_000_000,
        period_secs in 1u64..10_000_000,
    ) {
        let Ok(at) = Timestamp::new(secs, nanos) else { return Ok(()) };
        let period = Duration::from_secs(period_secs);
        let start = period_start(at, period);
        prop_assert!(start <= at);
        let gap = at.as_nanosecond() - start.as_nanosecond();
        prop_assert!(gap < period.as_nanos() as i128);
        let from_year_one = start.as_nanosecond() + 62_135_596_800i128 * 1_000_000_000;
        prop_assert_eq!(from_year_one.rem_euclid(period.as_nanos() as i128), 0);
    }

    /// A state mask holds exactly the states it was made from.
    #[test]
    fn unique_states_round_trip(states in prop::collection::btree_set(0usize..8, 0..8)) {
        let all = [
            JobState::Available, JobState::Cancelled, JobState::Completed, JobState::Discarded,
            JobState::Pending, JobState::Retryable, JobState::Running, JobState::Scheduled,
        ];
        let chosen: Vec<JobState> = states.iter().map(|&i| all[i]).collect();
        let mask = UniqueStates::from_states(chosen.iter().copied());
        let mut back = mask.states();
        back.sort_by_key(|s| all.iter().position(|a| a == s));
        prop_assert_eq!(back, chosen);
    }

    /// Canonical args of any JSON text either fail with an error or give JSON again; never a
    /// panic. Unique field paths of any text likewise.
    #[test]
    fn canonical_args_never_panic(text in ".{0,64}", field in ".{0,16}") {
        if let Ok(out) = canonical_args(&text, None) {
            prop_assert!(out.is_empty() || serde_json::from_str::<serde_json::Value>(&out).is_ok());
        }
        let _ = canonical_args(&text, Some(&[field.as_str()]));
        let _ = canonical_args_paths(&text, &[&[field.as_str()]]);
    }

    /// An attempt error decodes from any JSON object without panicking, and what it encodes
    /// decodes back to itself.
    #[test]
    fn attempt_errors_decode_from_any_json(value in json_value(3)) {
        if let Ok(err) = serde_json::from_value::<AttemptError>(value) {
            let again: AttemptError = serde_json::from_str(&serde_json::to_string(&err).unwrap()).unwrap();
            prop_assert_eq!(again, err);
        }
    }

    /// An attempt error with any message, attempt and time survives the trip through JSON.
    #[test]
    fn attempt_errors_round_trip(
        secs in -62_135_596_800i64..253_402_300_799,
        attempt in any::<i32>(),
        error in any::<String>(),
        trace in any::<String>(),
    ) {
        let err = AttemptError { at: Timestamp::from_second(secs).unwrap(), attempt, error, trace };
        let again: AttemptError = serde_json::from_str(&serde_json::to_string(&err).unwrap()).unwrap();
        prop_assert_eq!(again, err);
    }
}

/// Any JSON value, nested up to `depth`, with the fields an attempt error has among its keys.
fn json_value(depth: u32) -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("2024-01-01T00:00:00Z")),
    ];
    leaf.prop_recursive(depth, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop::sample::select(vec!["at", "attempt", "error", "trace", "other"])
                    .prop_map(str::to_owned),
                inner,
                0..5
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
