//! Property tests (issue 20) of what the core checks and computes without a database: insert
//! option validation against River's rules (written here from River's regular expressions, not
//! from Millrace's code), cron and interval schedules, and the default retry backoff.
//!
//! A failure prints the seed and the shrunk input; `PROPTEST_CASES` runs more cases.

use std::sync::LazyLock;
use std::time::Duration;

use jiff::Timestamp;
use millrace::{
    Client, DefaultRetryPolicy, Error, InsertOpts, JobArgs, JobId, JobRow, JobState, PeriodicJob,
    RetryPolicy, Schedule,
};
use millrace_postgres::PgDriver;
use proptest::prelude::*;
use serde::Serialize;

#[derive(Serialize)]
struct Probe {}

impl JobArgs for Probe {
    const KIND: &'static str = "probe";
}

/// A runtime for the lazy pool; no connection is ever opened.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
});

/// Whether a client would insert a job with these options: building a client with a periodic
/// job checks its job as an insert does, without a database.
fn accepted(opts: InsertOpts) -> Result<(), Error> {
    let _guard = RUNTIME.enter();
    let pool =
        sqlx::PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").expect("a lazy pool");
    let job = PeriodicJob::new(Schedule::interval(Duration::from_secs(60)), move || {
        (Probe {}, Some(opts.clone()))
    });
    Client::builder(PgDriver::new(pool))
        .periodic_job(job)
        .build()
        .map(drop)
}

/// River's queue rule, `^(?:[a-z0-9])+(?:[_|\-]?[a-z0-9]+)*$` and at most 64 characters, read
/// as: runs of lowercase letters and digits joined by single separators.
fn river_accepts_queue(queue: &str) -> bool {
    queue.len() <= 64
        && queue.split(['_', '|', '-']).all(|run| {
            !run.is_empty()
                && run
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// River's tag rule, `\A[\w][\w\-]+[\w]\z` (RE2's `\w` is ASCII) and at most 255 characters.
fn river_accepts_tag(tag: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let chars: Vec<char> = tag.chars().collect();
    chars.len() >= 3
        && tag.len() <= 255
        && word(chars[0])
        && word(*chars.last().unwrap())
        && chars[1..chars.len() - 1]
            .iter()
            .all(|&c| word(c) || c == '-')
}

fn is_invalid_insert(result: &Result<(), Error>) -> bool {
    matches!(result, Err(Error::InvalidInsert(_)))
}

fn row_with_errors(errors: usize) -> JobRow {
    let now = Timestamp::now();
    JobRow {
        id: JobId(1),
        args: serde_json::json!({}),
        attempt: 1,
        attempted_at: Some(now),
        attempted_by: Vec::new(),
        created_at: now,
        errors: (0..errors)
            .map(|n| millrace::AttemptError {
                at: now,
                attempt: n as i32 + 1,
                error: "e".to_owned(),
                trace: String::new(),
            })
            .collect(),
        finalized_at: None,
        kind: "probe".to_owned(),
        max_attempts: 25,
        metadata: serde_json::json!({}),
        priority: 1,
        queue: "default".to_owned(),
        scheduled_at: now,
        state: JobState::Running,
        tags: Vec::new(),
        unique_key: None,
        unique_states: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Priorities 1 to 4 are accepted, every other one refused with a typed error.
    #[test]
    fn priority_outside_one_to_four_is_refused(priority in any::<i16>()) {
        let result = accepted(InsertOpts::new().priority(priority));
        prop_assert_eq!(result.is_ok(), (1..=4).contains(&priority), "{:?}", result);
        prop_assert!(result.is_ok() || is_invalid_insert(&result));
    }

    /// max_attempts must fit River's smallint and be positive: never clamped.
    #[test]
    fn max_attempts_outside_smallint_is_refused(max_attempts in any::<i32>()) {
        let result = accepted(InsertOpts::new().max_attempts(max_attempts));
        prop_assert_eq!(result.is_ok(), (1..=32767).contains(&max_attempts), "{:?}", result);
        prop_assert!(result.is_ok() || is_invalid_insert(&result));
    }

    /// Queue names follow River's rule exactly, for names River's rule makes and for any text.
    #[test]
    fn queue_names_follow_rivers_rule(
        queue in prop_oneof![
            "[a-z0-9]{1,8}([_|-]?[a-z0-9]{1,8}){0,8}",
            "[a-zA-Z0-9_|. -]{0,12}",
            any::<String>(),
        ]
    ) {
        let result = accepted(InsertOpts::new().queue(queue.clone()));
        prop_assert_eq!(result.is_ok(), river_accepts_queue(&queue), "{:?} {:?}", queue, result);
        prop_assert!(result.is_ok() || is_invalid_insert(&result));
    }

    /// Tags follow River's rule exactly; a refused tag is a typed error.
    #[test]
    fn tags_follow_rivers_rule(
        tag in prop_oneof![
            "[A-Za-z0-9_][A-Za-z0-9_-]{1,40}[A-Za-z0-9_]",
            "[a-z_, é-]{0,6}",
            any::<String>(),
        ]
    ) {
        let result = accepted(InsertOpts::new().tags([tag.clone()]));
        prop_assert_eq!(result.is_ok(), river_accepts_tag(&tag), "{:?} {:?}", tag, result);
        prop_assert!(result.is_ok() || is_invalid_insert(&result));
    }

    /// Any metadata object is accepted; anything else is refused with a typed error, never a
    /// panic.
    #[test]
    fn metadata_must_be_an_object(
        key in any::<String>(),
        value in any::<String>(),
        object in any::<bool>(),
    ) {
        let metadata = if object { serde_json::json!({ key: value }) } else { serde_json::json!([key, value]) };
        let result = accepted(InsertOpts::new().metadata(metadata));
        prop_assert_eq!(result.is_ok(), object, "{:?}", result);
    }

    /// A cron expression of any text parses or fails with an error, never a panic.
    #[test]
    fn cron_parsing_never_panics(pattern in prop_oneof![".{0,40}", "[0-9*/,-]{1,6}( [0-9*/,A-Z-]{1,6}){4,5}"]) {
        if let Ok(schedule) = Schedule::cron(&pattern) {
            let at = Timestamp::from_second(1_700_000_000).unwrap();
            if let Some(next) = schedule.next_after(at) {
                prop_assert!(next > at, "{pattern:?}: {next} is not after {at}");
            }
        }
    }

    /// A valid cron schedule runs strictly later each time, on the minute and hour it names.
    #[test]
    fn cron_runs_on_its_minute_and_hour(
        minute in 0u8..60,
        hour in 0u8..24,
        start in 0i64..4_000_000_000,
    ) {
        let schedule = Schedule::cron(&format!("{minute} {hour} * * *")).unwrap();
        let at = Timestamp::from_second(start).unwrap();
        let next = schedule.next_after(at).unwrap();
        let after = schedule.next_after(next).unwrap();
        prop_assert!(at < next && next < after);
        let utc = next.to_zoned(jiff::tz::TimeZone::UTC);
        prop_assert_eq!((utc.minute() as u8, utc.hour() as u8, utc.second()), (minute, hour, 0));
        prop_assert_eq!(after.duration_since(next).as_secs(), 86_400);
    }

    /// An interval schedule runs one interval after the time it is asked about.
    #[test]
    fn interval_runs_one_interval_later(secs in 1u64..10_000_000, start in 0i64..4_000_000_000) {
        let at = Timestamp::from_second(start).unwrap();
        let next = Schedule::interval(Duration::from_secs(secs)).next_after(at).unwrap();
        prop_assert_eq!(next.duration_since(at).as_secs(), secs as i64);
    }

    /// The default backoff is River's: (errors + 1)^4 seconds, within 10 % jitter, capped at
    /// 24 days, and never earlier than now.
    #[test]
    fn default_backoff_is_the_fourth_power_with_jitter(errors in 0usize..60) {
        let row = row_with_errors(errors);
        let now = Timestamp::now();
        let next = DefaultRetryPolicy.next_retry(&row, now);
        let base = ((errors as f64 + 1.0).powi(4)).min(86_400.0 * 24.0);
        let delay = next.duration_since(now).as_secs_f64();
        prop_assert!(delay >= base * 0.9 - 0.001 && delay <= base * 1.1 + 0.001, "{errors} errors: {delay} s for base {base} s");
        prop_assert_eq!(DefaultRetryPolicy::base_delay(errors + 1).as_secs_f64(), base);
    }
}
