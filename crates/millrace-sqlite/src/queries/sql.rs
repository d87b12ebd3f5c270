//! The SQL expression builders the statements share: PostgreSQL's operators as SQLite
//! spells them (`jsonb ||`, `@>`), River's unique-index predicate, and the capped
//! `attempted_by` append. A leaf: it imports no statement module.

use millrace_driver::REPLACED_METADATA_KEY;

/// The JSON path of [`millrace_driver::PERSISTENT_FENCE_KEY`] as a SQL string literal: the one
/// place this driver spells the persistent fence's metadata key (a test checks the two agree).
pub(super) const FENCE_PATH: &str = r#"'$."millrace:fence"'"#;

/// Whether the unique mask `mask` holds the state `state`, in the form of River's
/// `river_job_unique_idx` predicate: bit n of the mask for the n-th state in enum order.
pub(super) fn mask_holds(mask: &str, state: &str) -> String {
    format!(
        "CASE {state} \
            WHEN 'available' THEN {mask} & (1 << 0) \
            WHEN 'cancelled' THEN {mask} & (1 << 1) \
            WHEN 'completed' THEN {mask} & (1 << 2) \
            WHEN 'discarded' THEN {mask} & (1 << 3) \
            WHEN 'pending' THEN {mask} & (1 << 4) \
            WHEN 'retryable' THEN {mask} & (1 << 5) \
            WHEN 'running' THEN {mask} & (1 << 6) \
            WHEN 'scheduled' THEN {mask} & (1 << 7) \
            ELSE 0 END >= 1"
    )
}

/// Whether a row's unique key is live, with `prefix` before each column (`""` or `"o."`).
/// Unprefixed, it is the partial unique index's predicate, which an `ON CONFLICT` target must
/// repeat expression for expression for SQLite to match it with the index.
pub(super) fn unique_live(prefix: &str) -> String {
    format!(
        "{prefix}unique_key IS NOT NULL AND {prefix}unique_states IS NOT NULL AND {}",
        mask_holds(&format!("{prefix}unique_states"), &format!("{prefix}state"))
    )
}

/// `attempted_by` with `client` appended, keeping the last 100 entries.
pub(super) fn attempted_by_appended(job: &str, client: &str) -> String {
    format!(
        "jsonb_insert(\
            CASE WHEN json_array_length({job}.attempted_by) >= 100 \
                THEN (SELECT jsonb_group_array(e.value ORDER BY e.key) \
                      FROM json_each({job}.attempted_by) AS e \
                      WHERE e.key >= json_array_length({job}.attempted_by) - 99) \
                ELSE coalesce({job}.attempted_by, jsonb('[]')) END, \
            '$[#]', {client})"
    )
}

/// `metadata` (a JSON expression) as an object to merge keys into, as on PostgreSQL: an
/// array, a string, a number or `null` is kept whole under [`REPLACED_METADATA_KEY`].
/// SQLite's `jsonb_set` would silently leave such a value as it is (so a snooze would never
/// be counted), and a merge through `json_each` would turn an array's indexes into keys.
pub(crate) fn metadata_object(metadata: &str) -> String {
    format!(
        "(CASE WHEN json_type({metadata}) = 'object' THEN {metadata} \
         ELSE jsonb_object('{REPLACED_METADATA_KEY}', json({metadata})) END)"
    )
}

/// PostgreSQL's `jsonb || jsonb` of two JSON objects: `merge`'s top-level keys replace
/// `base`'s whole values, nulls included (SQLite's `json_patch` would merge nested objects and
/// drop keys set to null instead). Each value is read back as JSON through its full path.
pub(super) fn shallow_merge(base: &str, merge: &str) -> String {
    format!(
        "(SELECT jsonb_group_object(m.key, json(m.src -> m.fullkey)) FROM ( \
            SELECT b.key, b.fullkey, {base} AS src FROM json_each({base}) AS b \
            WHERE b.key NOT IN (SELECT key FROM json_each({merge})) \
            UNION ALL \
            SELECT u.key, u.fullkey, {merge} AS src FROM json_each({merge}) AS u \
        ) AS m)"
    )
}

/// How deep arrays may nest inside each other in a metadata filter and still match by
/// containment; deeper, their elements must be equal.
pub(super) const CONTAINS_ARRAY_DEPTH: u32 = 3;

/// PostgreSQL's `a @> b` for JSON values `a` and `b` (SQL expressions) where `b` is an object
/// or array: every object key of `b` is in `a`, recursively; every element of an array of
/// `b` is contained in some element of `a`'s array at the same place; scalars are equal,
/// numbers by value (`1` matches `1.0`). `depth` is how many more array levels match by
/// containment (see [`CONTAINS_ARRAY_DEPTH`]).
///
/// `b`'s nodes are walked with `json_tree`, leaving out those inside an array of `b` (their
/// place in `a` is not positional); each array is matched element by element instead.
pub(super) fn json_contains(a: &str, b: &str, depth: u32) -> String {
    let d = depth;
    let elem = json_element_contains(&format!("ae{d}"), &format!("be{d}"), depth);
    format!(
        "NOT EXISTS (SELECT 1 FROM json_tree({b}) AS f{d} \
            WHERE NOT EXISTS (SELECT 1 FROM json_tree({b}) AS anc{d} \
                WHERE anc{d}.type = 'array' AND length(f{d}.fullkey) > length(anc{d}.fullkey) \
                  AND substr(f{d}.fullkey, 1, length(anc{d}.fullkey)) = anc{d}.fullkey \
                  AND substr(f{d}.fullkey, length(anc{d}.fullkey) + 1, 1) IN ('.', '[')) \
              AND CASE \
                WHEN f{d}.type = 'object' THEN json_type({a}, f{d}.fullkey) IS NOT 'object' \
                WHEN f{d}.type = 'array' THEN json_type({a}, f{d}.fullkey) IS NOT 'array' \
                    OR EXISTS (SELECT 1 FROM json_each({b}, f{d}.fullkey) AS be{d} \
                        WHERE NOT EXISTS (SELECT 1 FROM json_each({a}, f{d}.fullkey) AS ae{d} \
                            WHERE {elem})) \
                WHEN f{d}.type IN ('integer', 'real') \
                    THEN coalesce(json_type({a}, f{d}.fullkey) NOT IN ('integer', 'real') \
                        OR json_extract({a}, f{d}.fullkey) <> f{d}.atom, true) \
                ELSE json_type({a}, f{d}.fullkey) IS NOT f{d}.type \
                    OR json_extract({a}, f{d}.fullkey) IS NOT f{d}.atom \
              END)"
    )
}

/// Whether the `json_each` row `ae` contains the `json_each` row `be`, for array elements.
pub(super) fn json_element_contains(ae: &str, be: &str, depth: u32) -> String {
    let containers = if depth == 0 {
        format!("{ae}.type = {be}.type AND json({ae}.value) = json({be}.value)")
    } else {
        format!(
            "{ae}.type = {be}.type AND {}",
            json_contains(&format!("{ae}.value"), &format!("{be}.value"), depth - 1)
        )
    };
    format!(
        "(CASE WHEN {be}.type IN ('object', 'array') THEN {containers} \
            WHEN {be}.type IN ('integer', 'real') \
                THEN {ae}.type IN ('integer', 'real') AND {ae}.atom = {be}.atom \
            ELSE {ae}.type = {be}.type AND {ae}.atom IS {be}.atom END)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_path_literal_spells_the_drivers_constant() {
        let quoted = format!("'$.\"{}\"'", millrace_driver::PERSISTENT_FENCE_KEY);
        assert_eq!(super::FENCE_PATH, quoted);
    }

    /// `a @> b` as PostgreSQL answers it, for each case.
    const CASES: &[(&str, &str, bool)] = &[
        (r#"{"a":1,"b":2}"#, r#"{}"#, true),
        (r#"{"a":1,"b":2}"#, r#"{"a":1}"#, true),
        (r#"{"a":1}"#, r#"{"a":1.0}"#, true),
        (r#"{"a":1}"#, r#"{"a":2}"#, false),
        (r#"{"a":1}"#, r#"{"a":"1"}"#, false),
        (r#"{"a":"x"}"#, r#"{"a":"x"}"#, true),
        (r#"{"a":null}"#, r#"{"a":null}"#, true),
        (r#"{}"#, r#"{"a":null}"#, false),
        (r#"{"a":true}"#, r#"{"a":true}"#, true),
        (r#"{"a":true}"#, r#"{"a":1}"#, false),
        (r#"{"a":false}"#, r#"{"a":0}"#, false),
        (r#"{"a":1}"#, r#"{"b":1}"#, false),
        (r#"{"a":{"b":1,"c":2}}"#, r#"{"a":{"b":1}}"#, true),
        (r#"{"a":{"b":1}}"#, r#"{"a":{}}"#, true),
        (r#"{"a":[]}"#, r#"{"a":{}}"#, false),
        (r#"{"a":{"b":1}}"#, r#"{"a":{"b":2}}"#, false),
        (
            r#"{"a":{"b":{"c":[1,2]}}}"#,
            r#"{"a":{"b":{"c":[2]}}}"#,
            true,
        ),
        (r#"{"a":[1,2,3]}"#, r#"{"a":[3,1]}"#, true),
        (r#"{"a":[1,2,3]}"#, r#"{"a":[4]}"#, false),
        (r#"{"a":[1,2]}"#, r#"{"a":[]}"#, true),
        (r#"{"a":1}"#, r#"{"a":[]}"#, false),
        (r#"{"a":["x"]}"#, r#"{"a":"x"}"#, false),
        (
            r#"{"a":[{"k":1,"v":2},{"k":3}]}"#,
            r#"{"a":[{"k":1}]}"#,
            true,
        ),
        (
            r#"{"a":[{"k":1,"v":2},{"k":3}]}"#,
            r#"{"a":[{"k":1,"v":3}]}"#,
            false,
        ),
        (r#"{"a":[[1,2],[3]]}"#, r#"{"a":[[2]]}"#, true),
        (r#"{"a":[[1,2],[3]]}"#, r#"{"a":[[2,3]]}"#, false),
        (r#"{"a":[{"b":[1,2]}]}"#, r#"{"a":[{"b":[2]}]}"#, true),
        (r#"{"a.b":1,"a":{"b":2}}"#, r#"{"a.b":1}"#, true),
        (r#"{"a.b":1,"a":{"b":2}}"#, r#"{"a":{"b":1}}"#, false),
        (r#"{"x[0]":1}"#, r#"{"x[0]":1}"#, true),
        (r#"{"x[0]":{"y":1}}"#, r#"{"x[0]":{"y":2}}"#, false),
        (r#"{"q\"k":1}"#, r#"{"q\"k":1}"#, true),
        (
            r#"{"n":9007199254740993}"#,
            r#"{"n":9007199254740993}"#,
            true,
        ),
        (
            r#"{"n":9007199254740993}"#,
            r#"{"n":9007199254740992}"#,
            false,
        ),
    ];

    #[tokio::test]
    async fn metadata_containment_matches_postgres() {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
        let sql = format!(
            "SELECT {} AS matched FROM (SELECT jsonb(?1) AS m)",
            json_contains("m", "?2", CONTAINS_ARRAY_DEPTH)
        );
        for (stored, filter, expected) in CASES {
            let matched: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                .bind(*stored)
                .bind(*filter)
                .fetch_one(&pool)
                .await
                .unwrap_or_else(|err| panic!("{stored} @> {filter}: {err}"));
            assert_eq!(matched, *expected, "{stored} @> {filter}");
        }
    }
}
