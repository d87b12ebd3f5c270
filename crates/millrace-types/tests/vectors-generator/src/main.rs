//! Generates unique-key test vectors from River's Rust crate, `riverqueue` 0.5.0.
//!
//! Three sources, all written to one JSON file:
//! * `protocol`: hand-written encoded args and options, hashed with the crate's public
//!   `riverqueue::protocol::unique_key` and `unique_states_bitmask`.
//! * `typed`: `#[derive(JobArgs)]` types; their args are encoded with
//!   `riverqueue::encoding::encode_args`, their unique fields and options come from the derive.
//! * `database`: jobs inserted into PostgreSQL by a real `riverqueue::Client`; the `unique_key` and
//!   `unique_states` columns are read back and must equal the `protocol` computation.
//!
//! Usage: `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo run -- OUT.json`
//! (without DATABASE_URL the database cases are skipped).

use std::time::Duration;

use riverqueue::database::{PostgresDatabase, SchemaName};
use riverqueue::jiff::Timestamp;
use riverqueue::migrate::PostgresMigrator;
use riverqueue::protocol::{UniqueKeyInput, unique_key, unique_states_bitmask};
use riverqueue::serde_json::{self, Value, json, value::RawValue};
use riverqueue::sqlx::{self, PgPool, Row};
use riverqueue::{Client, InsertBatch, InsertOpts, JobArgs, JobState, UniqueOpts};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Case description

#[derive(Clone, Default)]
struct Opts {
    by_args: bool,
    by_period_nanos: Option<u64>,
    by_queue: bool,
    by_state: Option<Vec<JobState>>,
    exclude_kind: bool,
}

impl Opts {
    fn args() -> Self {
        Opts { by_args: true, ..Opts::default() }
    }
    fn to_river(&self) -> UniqueOpts {
        let mut o = UniqueOpts::new()
            .with_by_args(self.by_args)
            .with_by_queue(self.by_queue)
            .with_exclude_kind(self.exclude_kind);
        if let Some(n) = self.by_period_nanos {
            o = o.with_by_period(Duration::from_nanos(n));
        }
        if let Some(s) = &self.by_state {
            o = o.with_by_state(s.clone());
        }
        o
    }
    fn from_river(o: &UniqueOpts) -> Self {
        Opts {
            by_args: o.by_args(),
            by_period_nanos: o.by_period().map(|d| u64::try_from(d.as_nanos()).unwrap()),
            by_queue: o.by_queue(),
            by_state: o.by_state().map(<[JobState]>::to_vec),
            exclude_kind: o.exclude_kind(),
        }
    }
}

struct Case {
    name: String,
    source: &'static str,
    kind: String,
    args: String,
    unique_fields: Vec<Vec<String>>,
    opts: Opts,
    queue: String,
    now: Timestamp,
    scheduled_at: Option<Timestamp>,
}

const NOW: &str = "2026-01-02T03:04:05.123456789Z";

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn case(name: &str, kind: &str, args: &str, opts: Opts) -> Case {
    Case {
        name: name.to_owned(),
        source: "protocol",
        kind: kind.to_owned(),
        args: args.to_owned(),
        unique_fields: Vec::new(),
        opts,
        queue: "default".to_owned(),
        now: ts(NOW),
        scheduled_at: None,
    }
}

impl Case {
    fn fields(mut self, fields: &[&[&str]]) -> Self {
        self.unique_fields = fields.iter().map(|p| p.iter().map(|s| (*s).to_owned()).collect()).collect();
        self
    }
    fn queue(mut self, q: &str) -> Self {
        self.queue = q.to_owned();
        self
    }
    fn now(mut self, t: &str) -> Self {
        self.now = ts(t);
        self
    }
    fn scheduled(mut self, t: &str) -> Self {
        self.scheduled_at = Some(ts(t));
        self
    }

    /// Runs River's computation and returns the JSON record.
    fn record(&self) -> Value {
        let raw = RawValue::from_string(self.args.clone()).expect("args are valid JSON");
        let comps: Vec<Vec<&str>> = self.unique_fields.iter().map(|p| p.iter().map(String::as_str).collect()).collect();
        let refs: Vec<&[&str]> = comps.iter().map(Vec::as_slice).collect();
        let river_opts = self.opts.to_river();
        let result = unique_key(&UniqueKeyInput {
            encoded_args: &raw,
            kind: &self.kind,
            now: self.now,
            opts: &river_opts,
            queue: &self.queue,
            scheduled_at: self.scheduled_at,
            unique_fields: &refs,
        });
        let (key, error) = match result {
            Ok(Some(k)) => (Some(hex::encode(k)), None),
            Ok(None) => (None, None),
            Err(e) => (None, Some(e.to_string())),
        };
        json!({
            "name": self.name,
            "source": self.source,
            "kind": self.kind,
            "args": self.args,
            "unique_fields": if self.unique_fields.is_empty() { Value::Null } else { json!(self.unique_fields) },
            "by_args": self.opts.by_args,
            "by_period_nanos": self.opts.by_period_nanos,
            "by_queue": self.opts.by_queue,
            "by_state": self.opts.by_state.as_ref().map(|s| s.iter().map(|st| st.as_str()).collect::<Vec<_>>()),
            "exclude_kind": self.opts.exclude_kind,
            "queue": self.queue,
            "now": self.now.to_string(),
            "scheduled_at": self.scheduled_at.map(|t| t.to_string()),
            "key": key,
            "states_bits": if error.is_none() && key.is_some() { json!(unique_states_bitmask(&river_opts)) } else { Value::Null },
            "error": error,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Protocol cases: encoded args given as text.

fn protocol_cases() -> Vec<Case> {
    use JobState::*;
    let mut v = Vec::new();
    let messy = r#"{"zeta":"last","alpha":{"z":1,"y":[3,1,2],"x":{"b":null,"a":true}},"num":1.50,"exp":1E+2,"neg":-0,"big":18446744073709551615,"str":"h\u00e9llo \"q\" \\ \/ \n\t <tag> & \u2028 😀","Upper":1,"_u":2,"10":"ten","2":"two"}"#;

    // Kind only, and every combination of the four key parts.
    for (exclude_kind, by_args, by_period, by_queue) in itertools4() {
        let opts = Opts {
            by_args,
            by_period_nanos: by_period.then_some(3_600_000_000_000),
            by_queue,
            exclude_kind,
            by_state: None,
        };
        let name = format!(
            "combo_kind{}_args{}_period{}_queue{}",
            u8::from(!exclude_kind),
            u8::from(by_args),
            u8::from(by_period),
            u8::from(by_queue)
        );
        v.push(case(&name, "combo_kind", messy, opts).queue("q_combo"));
        let opts2 = Opts { by_period_nanos: by_period.then_some(900_000_000_000), ..v.last().unwrap().opts.clone() };
        v.push(
            case(&format!("{name}_scheduled"), "combo_kind", r#"{"b":2,"a":1}"#, opts2)
                .queue("high.priority-q")
                .scheduled("2026-03-04T05:06:07.891Z"),
        );
    }
    // Not unique at all, and unique by state alone (kind only).
    v.push(case("no_options_not_unique", "plain", r#"{"a":1}"#, Opts::default()));
    v.push(case(
        "by_state_only_hashes_kind",
        "plain",
        r#"{"a":1}"#,
        Opts { by_state: Some(vec![Available, Pending, Running, Scheduled]), ..Opts::default() },
    ));
    v.push(case(
        "by_state_empty_means_default",
        "plain",
        r#"{"a":1}"#,
        Opts { by_state: Some(vec![]), ..Opts::default() },
    ));

    // States.
    let state_sets: Vec<(&str, Vec<JobState>)> = vec![
        ("required_only", vec![Available, Pending, Running, Scheduled]),
        ("all", vec![Available, Cancelled, Completed, Discarded, Pending, Retryable, Running, Scheduled]),
        ("default_spelled_out", vec![Scheduled, Running, Retryable, Pending, Completed, Available]),
        ("with_cancelled_discarded", vec![Available, Pending, Running, Scheduled, Cancelled, Discarded]),
        ("with_retryable_duplicates", vec![Available, Pending, Running, Scheduled, Retryable, Retryable]),
        ("missing_pending", vec![Available, Running, Scheduled, Completed]),
        ("missing_all_required", vec![Completed, Cancelled]),
    ];
    for (n, set) in state_sets {
        v.push(case(&format!("states_{n}"), "states", r#"{"id":1}"#, Opts { by_state: Some(set), ..Opts::args() }));
    }

    // By args: encoded bytes.
    let args_cases: &[(&str, &str)] = &[
        ("empty_object", "{}"),
        ("empty_array_is_empty_object", "[]"),
        ("empty_array_spaced", " [ \n ] "),
        ("unsorted_top_level", r#"{"b":1,"a":2,"c":3,"B":4,"aa":5,"a_":6,"a-":7}"#),
        ("nested_order_kept", r#"{"outer":{"z":1,"a":{"y":2,"b":3}},"list":[{"z":1,"a":2}]}"#),
        ("numbers_as_written", r#"{"f":1.0,"e":1e2,"E":1E-7,"n":-0,"i":9007199254740993,"d":0.1000}"#),
        ("whitespace_top_level_dropped_nested_kept", " { \"b\" : [1, 2, {\"z\": 1, \"y\" : 2}] ,\n\t\"a\" : null } "),
        ("duplicate_keys_first_wins", r#"{"a":1,"b":2,"a":3}"#),
        (
            "string_escapes_kept",
            r#"{"s":"line\nbreak \"quoted\" back\\slash \/ \u003c\u0026\u003e <&> \u00e9 é \ud83d\ude00 😀 \u2028"}"#,
        ),
        ("unicode_values", r#"{"jp":"日本語","emoji":"👍🏽","rtl":"שלום","combining":"e\u0301"}"#),
        ("key_escaped_printable_written_plain", r#"{"\u003ck\u003e":1,"\u0041":2,"a\/b":3}"#),
        ("key_quote_and_backslash", r#"{"a\"b":1,"c\\d":2}"#),
        ("key_non_ascii_go_escaped", r#"{"é&":1,"é<>":2,"日本":3,"😀":4,"\u2028":5}"#),
        ("key_controls", r#"{"line\n":1,"tab\t":2,"bell\u0007":3,"bs\b":4,"ff\f":5,"cr\r":6,"del\u007f":7}"#),
        ("key_empty_and_path_syntax", r##"{"":1,"a.b":2,"@this":3,"#":4,"*":5,"?":6,"|":7}"##),
        ("key_ordering_bytewise", r#"{"é":1,"z":2,"Z":3,"~":4,"0":5,"10":6,"9":7,"😀":8,"\uE000":9}"#),
        ("booleans_null", r#"{"t":true,"f":false,"n":null}"#),
        ("deep_nesting", r#"{"a":{"b":{"c":{"d":{"e":[[[{"f":"g"}]]]}}}}}"#),
        ("array_in_object", r#"{"ids":[3,2,1],"empty":[],"obj":{}}"#),
        ("not_object_number", "1"),
        ("not_object_array", "[1,2]"),
        ("not_object_array_of_object", "[{}]"),
        ("not_object_string", r#""text""#),
        ("not_object_null", "null"),
        ("not_object_true", "true"),
    ];
    for (n, a) in args_cases {
        v.push(case(&format!("args_{n}"), "args_kind", a, Opts::args()));
    }

    // By args with selected fields (component paths as the derive produces them).
    let sel_args = r#"{"customer":{"region":"eu","id":42,"name":"Zoë"},"a-b":3,"a":{"c":null,"b":"x"},"label":"lbl","path/key":"slash","user.id":"dotted","user":{"id":"nested"},"amount":1.50,"list":[1,2],"str":"s","ignored":true}"#;
    let selections: Vec<(&str, Vec<&[&str]>)> = vec![
        ("single_top", vec![&["amount"]]),
        ("two_top_unsorted", vec![&["label"], &["amount"]]),
        ("nested_one", vec![&["customer", "id"]]),
        ("nested_siblings", vec![&["customer", "region"], &["customer", "id"]]),
        ("path_order_dash_before_dot", vec![&["a", "c"], &["a-b"], &["customer", "id"]]),
        ("explicit_null_kept", vec![&["a", "c"]]),
        ("whole_object", vec![&["customer"]]),
        ("whole_array", vec![&["list"]]),
        ("slash_key", vec![&["path/key"]]),
        ("literal_dot_name", vec![&["user.id"]]),
        ("literal_dot_and_nested", vec![&["user", "id"], &["user.id"]]),
        ("some_missing", vec![&["label"], &["nope"], &["customer", "nope"]]),
        ("all_missing_hashes_nothing", vec![&["nope"], &["customer", "missing"]]),
        ("through_non_object", vec![&["str", "x"], &["list", "x"], &["label"]]),
        ("duplicate_paths", vec![&["label"], &["label"]]),
        ("error_prefix_conflict", vec![&["customer"], &["customer", "id"]]),
        ("error_empty_segment", vec![&["customer", ""]]),
        ("error_numeric_segment", vec![&["list", "0"]]),
        ("error_minus_one_segment", vec![&["-1"]]),
        ("many_mixed", vec![&["str"], &["customer", "name"], &["a", "b"], &["a-b"], &["amount"], &["customer", "id"]]),
    ];
    for (n, fields) in &selections {
        v.push(case(&format!("fields_{n}"), "fields_kind", sel_args, Opts::args()).fields(fields));
    }
    v.push(
        case("fields_key_escapes", "fields_kind", r#"{"é&":{"\u003cx\u003e":1,"k":2},"plain":3}"#, Opts::args())
            .fields(&[&["é&", "<x>"], &["plain"]]),
    );
    v.push(
        case(
            "fields_whitespace_raw_values",
            "fields_kind",
            "{ \"a\" : { \"b\" : [1, 2] , \"c\": {\"z\" :1} } }",
            Opts::args(),
        )
        .fields(&[&["a", "b"], &["a", "c"]]),
    );
    v.push(
        case("fields_duplicate_key_first_wins", "fields_kind", r#"{"a":{"b":1,"b":2},"a":{"b":3}}"#, Opts::args())
            .fields(&[&["a", "b"]]),
    );
    v.push(case("fields_on_empty_array_error", "fields_kind", "[]", Opts::args()).fields(&[&["a"]]));
    v.push(case("fields_on_non_object_error", "fields_kind", "1", Opts::args()).fields(&[&["a"]]));
    v.push(
        case("fields_ignored_without_by_args", "fields_kind", sel_args, Opts { by_queue: true, ..Opts::default() })
            .fields(&[&["label"]]),
    );
    v.push(
        case("fields_exclude_kind_all_missing", "fields_kind", sel_args, Opts { exclude_kind: true, ..Opts::args() })
            .fields(&[&["nope"]]),
    );

    // Periods: several lengths and times, with and without scheduled_at.
    let periods: &[(&str, u64)] = &[
        ("1s", 1_000_000_000),
        ("1500ms", 1_500_000_000),
        ("7s", 7_000_000_000),
        ("1m", 60_000_000_000),
        ("15m", 900_000_000_000),
        ("37m", 2_220_000_000_000),
        ("1h", 3_600_000_000_000),
        ("1h30m", 5_400_000_000_000),
        ("24h", 86_400_000_000_000),
        ("7d", 604_800_000_000_000),
        ("30d", 2_592_000_000_000_000),
        ("365d", 31_536_000_000_000_000),
    ];
    let times = [
        "2026-01-02T03:04:05.123456789Z",
        "2024-02-29T23:59:59.999999999Z",
        "2000-01-01T00:00:00Z",
        "1970-01-01T00:00:00Z",
        "1969-12-31T23:59:59.5Z",
        "1900-06-15T12:34:56Z",
        "2262-04-11T23:47:16Z",
    ];
    for (pn, p) in periods {
        for (i, t) in times.iter().enumerate() {
            let opts = Opts { by_period_nanos: Some(*p), ..Opts::default() };
            v.push(case(&format!("period_{pn}_now{i}"), "period_kind", r#"{"x":1}"#, opts).now(t));
        }
        let opts = Opts { by_period_nanos: Some(*p), ..Opts::args() };
        v.push(
            case(&format!("period_{pn}_scheduled_future"), "period_kind", r#"{"x":1}"#, opts.clone())
                .scheduled("2026-07-08T09:10:11.5Z"),
        );
        v.push(
            case(&format!("period_{pn}_scheduled_past"), "period_kind", r#"{"x":1}"#, opts)
                .scheduled("2025-12-31T23:59:59.999Z"),
        );
    }
    v.push(case("period_zero_error", "period_kind", "{}", Opts { by_period_nanos: Some(0), ..Opts::default() }));
    v.push(case(
        "period_999ms_error",
        "period_kind",
        "{}",
        Opts { by_period_nanos: Some(999_999_999), ..Opts::default() },
    ));
    v.push(case("exclude_kind_alone_error", "k", "{}", Opts { exclude_kind: true, ..Opts::default() }));
    v.push(case(
        "exclude_kind_with_state_only_error",
        "k",
        "{}",
        Opts { exclude_kind: true, by_state: Some(vec![Available, Pending, Running, Scheduled]), ..Opts::default() },
    ));

    // Queues and kinds with unusual characters (hashed as given).
    for (n, q) in [("default", "default"), ("dotted", "a.b-c_d"), ("unicode", "очередь"), ("empty", "")] {
        v.push(case(&format!("queue_{n}"), "queue_kind", "{}", Opts { by_queue: true, ..Opts::default() }).queue(q));
    }
    for (n, k) in [("dots", "Kind.With-Dots_1"), ("colon", "ns:kind/v2"), ("amp", "a&args=b")] {
        v.push(case(&format!("kind_{n}"), k, r#"{"a":1}"#, Opts::args()));
    }

    // Everything at once.
    v.push(
        case(
            "everything",
            "everything_kind",
            sel_args,
            Opts {
                by_args: true,
                by_period_nanos: Some(86_400_000_000_000),
                by_queue: true,
                by_state: Some(vec![Available, Pending, Running, Scheduled, Retryable]),
                exclude_kind: false,
            },
        )
        .fields(&[&["customer", "id"], &["label"]])
        .queue("emails")
        .scheduled("2026-05-06T07:08:09Z"),
    );
    v.push(
        case(
            "everything_exclude_kind",
            "everything_kind",
            sel_args,
            Opts {
                by_args: true,
                by_period_nanos: Some(86_400_000_000_000),
                by_queue: true,
                by_state: Some(vec![Available, Pending, Running, Scheduled, Completed, Cancelled]),
                exclude_kind: true,
            },
        )
        .queue("emails")
        .now("2026-05-06T23:59:59.999999999Z"),
    );
    v
}

fn itertools4() -> Vec<(bool, bool, bool, bool)> {
    let mut out = Vec::new();
    for i in 0..16u8 {
        out.push((i & 8 != 0, i & 4 != 0, i & 2 != 0, i & 1 != 0));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Typed cases: the derive macro decides the unique fields and options.

#[derive(Clone, Debug, Deserialize, Serialize, riverqueue::JobArgs)]
#[river(kind = "typed_all_args", unique(by_args))]
struct TypedAll {
    zeta: String,
    alpha: String,
    nested: NestedZA,
    floats: Vec<f64>,
    big: u64,
    small: i64,
    map: std::collections::BTreeMap<String, i32>,
    none: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
struct NestedZA {
    z: i32,
    a: String,
}

#[derive(Clone, Debug, Deserialize, Serialize, riverqueue::JobArgs)]
#[serde(rename_all = "camelCase")]
#[river(kind = "typed_marked", unique(by_args, by_queue), queue = "marked_q")]
struct TypedMarked {
    #[river(unique)]
    account_id: i64,
    #[river(unique)]
    #[serde(rename = "wire-name")]
    renamed: String,
    #[river(unique)]
    #[serde(rename = "dotted.name")]
    dotted: String,
    requested_by: String,
    #[river(unique)]
    #[serde(skip_serializing_if = "Option::is_none")]
    maybe: Option<String>,
    #[river(unique)]
    nullable: Option<i32>,
}

#[derive(Clone, Debug, Deserialize, Serialize, riverqueue::JobArgs)]
#[river(
    kind = "typed_paths",
    unique(by_args("customer.id", "customer.region", "label", "user\\.id"), by_period = "1h")
)]
struct TypedPaths {
    customer: Customer,
    label: String,
    #[serde(rename = "user.id")]
    user_id: String,
    #[river(unique)]
    tagged: i32,
    ignored: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
struct Customer {
    name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    region: String,
    id: i64,
}

#[derive(Clone, Debug, Deserialize, Serialize, riverqueue::JobArgs)]
#[river(
    kind = "typed_states",
    unique(by_args, by_period = "15m", by_state(available, pending, running, scheduled, retryable))
)]
struct TypedStates {
    #[river(unique)]
    id: i64,
    note: String,
}

#[derive(Clone, Debug, Deserialize, Serialize, riverqueue::JobArgs)]
#[river(kind = "typed_exclude_a", unique(by_args, exclude_kind))]
struct ExcludeA {
    #[river(unique)]
    target: String,
    extra: i32,
}

#[derive(Clone, Debug, Deserialize, Serialize, riverqueue::JobArgs)]
#[river(kind = "typed_exclude_b", unique(by_args, exclude_kind))]
struct ExcludeB {
    #[river(unique)]
    target: String,
    extra: i32,
}

/// Raw JSON args: the crate compacts a raw fragment Go's way when it encodes it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(transparent)]
struct RawArgs(Box<RawValue>);

impl JobArgs for RawArgs {
    const KIND: &'static str = "typed_raw";
    fn default_insert_opts() -> InsertOpts {
        InsertOpts::default().with_unique(UniqueOpts::new().with_by_args(true))
    }
}

fn raw(s: &str) -> RawArgs {
    RawArgs(RawValue::from_string(s.to_owned()).unwrap())
}

fn typed_case<A: JobArgs>(name: &str, args: &A, now: Timestamp, scheduled_at: Option<Timestamp>) -> Case {
    let encoded = riverqueue::encoding::encode_args(args).unwrap();
    let defaults = A::default_insert_opts();
    Case {
        name: name.to_owned(),
        source: "typed",
        kind: A::KIND.to_owned(),
        args: encoded.get().to_owned(),
        unique_fields: A::unique_fields().iter().map(|p| p.iter().map(|s| (*s).to_owned()).collect()).collect(),
        opts: defaults.unique().map(Opts::from_river).unwrap_or_default(),
        queue: defaults.queue().unwrap_or("default").to_owned(),
        now,
        scheduled_at,
    }
}

fn typed_all() -> TypedAll {
    TypedAll {
        zeta: "<b>Tom & \"Jerry\"</b>\n\u{2028}é😀\u{1}\u{7f}".to_owned(),
        alpha: r"back\slash /slash".to_owned(),
        nested: NestedZA { z: 1, a: "a".to_owned() },
        floats: vec![1.0, 0.1, 1e21, 1e20, 1e-7, -0.0, 123_456.789, f64::MAX, 5e-324],
        big: u64::MAX,
        small: i64::MIN,
        map: [("zulu", 1), ("10", 2), ("2", 3), ("é", 4), ("<k>", 5)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        none: None,
    }
}

/// `typed_all` without the float extremes PostgreSQL's jsonb can't give back to serde.
fn typed_all_db() -> TypedAll {
    let mut a = typed_all();
    a.floats.truncate(7);
    a
}

fn typed_marked(maybe: Option<&str>) -> TypedMarked {
    TypedMarked {
        account_id: 42,
        renamed: "wire".to_owned(),
        dotted: "d".to_owned(),
        requested_by: "billing".to_owned(),
        maybe: maybe.map(str::to_owned),
        nullable: None,
    }
}

fn typed_paths(region: &str) -> TypedPaths {
    TypedPaths {
        customer: Customer { name: "Zoë".to_owned(), region: region.to_owned(), id: 7 },
        label: "lbl <x>".to_owned(),
        user_id: "u-1".to_owned(),
        tagged: 5,
        ignored: "not hashed".to_owned(),
    }
}

fn typed_cases() -> Vec<Case> {
    let now = ts(NOW);
    vec![
        typed_case("typed_all_args", &typed_all(), now, None),
        typed_case("typed_marked_with_optional", &typed_marked(Some("m")), now, None),
        typed_case("typed_marked_optional_omitted", &typed_marked(None), now, None),
        typed_case("typed_paths_nested", &typed_paths("eu"), now, None),
        typed_case("typed_paths_region_omitted", &typed_paths(""), now, None),
        typed_case("typed_paths_scheduled", &typed_paths("us"), now, Some(ts("2026-02-03T04:59:59.999Z"))),
        typed_case("typed_states", &TypedStates { id: 9, note: "n".to_owned() }, now, None),
        typed_case("typed_exclude_a", &ExcludeA { target: "t".to_owned(), extra: 1 }, now, None),
        typed_case("typed_exclude_b", &ExcludeB { target: "t".to_owned(), extra: 2 }, now, None),
        typed_case("typed_raw_compacted", &raw(" { \"b\" : [1, 2], \"a\" : \"<&>\" } "), now, None),
    ]
}

// ---------------------------------------------------------------------------------------------
// Database cases: a real client inserts, the columns are read back.

struct Db {
    pool: PgPool,
    client: Client,
    schema: String,
}

impl Db {
    async fn row(&self, id: i64) -> (String, Option<String>, Option<String>, String) {
        let sql = format!(
            "SELECT kind, encode(unique_key, 'hex') AS k, unique_states::text AS s, args::text AS a FROM \"{}\".river_job WHERE id = $1",
            self.schema
        );
        let r = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_one(&self.pool).await.unwrap();
        (r.get("kind"), r.get("k"), r.get("s"), r.get("a"))
    }
}

/// Inserts typed args, reads the row back, checks it against the protocol computation and
/// returns the record plus a note on what the database returned.
async fn db_insert<A: JobArgs + Clone>(
    db: &Db,
    name: &str,
    args: A,
    scheduled_at: Option<Timestamp>,
    notes: &mut Vec<Value>,
) -> (i64, Value) {
    let before = Timestamp::now();
    let mut req = db.client.insert(args.clone());
    if let Some(t) = scheduled_at {
        req = req.opts(InsertOpts::default().with_scheduled_at(t));
    }
    let res = req.await.unwrap();
    let after = Timestamp::now();
    let (kind, key, states, stored_args) = db.row(res.id()).await;
    let mut c = typed_case(name, &args, before, scheduled_at);
    c.source = "database";
    let rec_before = c.record();
    c.now = after;
    let rec_after = c.record();
    assert_eq!(rec_before["key"], rec_after["key"], "{name}: period boundary crossed during insert");
    let mut rec = rec_before;
    assert_eq!(rec["key"].as_str(), key.as_deref(), "{name}: stored unique_key differs from protocol");
    let bits = states.as_deref().map(|s| u8::from_str_radix(s, 2).unwrap());
    assert_eq!(rec["states_bits"].as_u64(), bits.map(u64::from), "{name}: stored unique_states");
    rec["db_unique_states_text"] = json!(states);
    notes.push(json!({
        "case": name,
        "id": res.id(),
        "kind_returned": kind,
        "unique_skipped_as_duplicate": res.unique_skipped_as_duplicate,
        "encoded_args": c.args,
        "stored_args_jsonb": stored_args,
    }));
    (res.id(), rec)
}

async fn database_cases(url: &str) -> (Vec<Value>, Vec<Value>) {
    let pool = PgPool::connect(url).await.unwrap();
    // A fixed name, dropped first, so that a run that died leaves nothing behind for long.
    let schema = "millrace_unique_vectors_gen".to_owned();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\""))).execute(&pool).await.unwrap();
    let name = SchemaName::new(schema.clone()).unwrap();
    PostgresMigrator::new(pool.clone()).with_schema(name.clone()).migrate_up().await.unwrap();
    let client = Client::builder(PostgresDatabase::new(pool.clone()).with_schema(name)).build().unwrap();
    let db = Db { pool: pool.clone(), client, schema: schema.clone() };

    let mut recs = Vec::new();
    let mut notes = Vec::new();
    let sched = Some(ts("2026-02-03T04:59:59.999Z"));

    let (id, r) = db_insert(&db, "db_typed_all_args", typed_all_db(), None, &mut notes).await;
    recs.push(r);
    let (dup, _) = db_insert(&db, "db_typed_all_args_again", typed_all_db(), None, &mut notes).await;
    assert_eq!(id, dup);
    recs.push(db_insert(&db, "db_typed_marked", typed_marked(Some("m")), None, &mut notes).await.1);
    recs.push(db_insert(&db, "db_typed_marked_omitted", typed_marked(None), None, &mut notes).await.1);
    recs.push(db_insert(&db, "db_typed_paths_scheduled", typed_paths("eu"), sched, &mut notes).await.1);
    recs.push(db_insert(&db, "db_typed_paths_region_omitted_scheduled", typed_paths(""), sched, &mut notes).await.1);
    recs.push(db_insert(&db, "db_typed_paths_now", typed_paths("us"), None, &mut notes).await.1);
    recs.push(db_insert(&db, "db_typed_states", TypedStates { id: 9, note: "n".to_owned() }, None, &mut notes).await.1);
    recs.push(
        db_insert(&db, "db_typed_states_scheduled", TypedStates { id: 10, note: "n".to_owned() }, sched, &mut notes)
            .await
            .1,
    );
    recs.push(
        db_insert(&db, "db_typed_raw_compacted", raw(" { \"b\" : [1, 2], \"a\" : \"<&>\" } "), None, &mut notes)
            .await
            .1,
    );
    // ExcludeKind: a second kind with the same args collides with the first and gets it back.
    let (a_id, r) =
        db_insert(&db, "db_exclude_kind_a", ExcludeA { target: "t".to_owned(), extra: 1 }, None, &mut notes).await;
    recs.push(r);
    let (b_id, r) =
        db_insert(&db, "db_exclude_kind_b", ExcludeB { target: "t".to_owned(), extra: 2 }, None, &mut notes).await;
    recs.push(r);
    assert_eq!(a_id, b_id, "exclude_kind: second kind must return the first job");

    // A batch holding the same unique key twice.
    let mut batch = InsertBatch::new();
    batch.push(TypedStates { id: 77, note: "a".to_owned() });
    batch.push(TypedStates { id: 77, note: "b".to_owned() });
    let batch_err = db.client.insert_batch(batch).await.err().map(|e| e.to_string());
    notes.push(json!({ "case": "batch_with_duplicate_key", "error": batch_err }));

    // A completed job no longer blocks when the states exclude completed.
    let first = db.client.insert(TypedStates { id: 88, note: "x".to_owned() }).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE \"{schema}\".river_job SET state = 'completed', finalized_at = now() WHERE id = $1"
    )))
    .bind(first.id())
    .execute(&pool)
    .await
    .unwrap();
    let second = db.client.insert(TypedStates { id: 88, note: "x".to_owned() }).await.unwrap();
    notes.push(json!({
        "case": "completed_not_in_states_lets_new_job_in",
        "first_id": first.id(),
        "second_id": second.id(),
        "second_skipped": second.unique_skipped_as_duplicate,
    }));

    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE"))).execute(&pool).await.unwrap();
    (recs, notes)
}

#[tokio::main]
async fn main() {
    let out = std::env::args().nth(1).unwrap_or_else(|| "river_unique_vectors.json".to_owned());
    let mut cases: Vec<Value> = protocol_cases().iter().map(Case::record).collect();
    cases.extend(typed_cases().iter().map(Case::record));
    let mut notes = Vec::new();
    if let Ok(url) = std::env::var("DATABASE_URL") {
        let (recs, n) = database_cases(&url).await;
        cases.extend(recs);
        notes = n;
    }
    let names: std::collections::BTreeSet<_> = cases.iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names.len(), cases.len(), "case names must be unique");
    let doc = json!({
        "generator": "crates/millrace-types/tests/vectors-generator (riverqueue =0.5.0)",
        "cases": cases,
        "database_notes": notes,
    });
    std::fs::write(&out, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
    eprintln!("wrote {} cases to {out}", doc["cases"].as_array().unwrap().len());
}
