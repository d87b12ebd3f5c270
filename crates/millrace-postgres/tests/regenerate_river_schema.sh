#!/usr/bin/env bash
# Regenerates river_schema_v8.sql: River's PostgreSQL schema at version 8, as River's own CLI
# (the `riverqueue` binary of the crate riverqueue-cli 0.5.0) creates it, dumped with
# `pg_dump --schema-only`. The test `migrate::schema_matches_rivers_dump` in
# crates/millrace/tests/it/migrate/ migrates a fresh schema with Millrace and compares its
# dump with this file.
#
# The only changes made to pg_dump's output are the ones the test makes to its own dump: the
# schema's name becomes SCHEMA_NAME, and pg_dump's version comments and its per-run
# \restrict keys are dropped. Everything else, owners included, is compared as dumped, so run
# this as the role the tests use (TEST_DATABASE_URL) with the pg_dump they use.
#
# Needs: psql and pg_dump; riverqueue (cargo install riverqueue-cli --version 0.5.0), found
# through RIVERQUEUE_BIN, then PATH, then ~/.cargo/bin.
set -euo pipefail

url=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
riverqueue=${RIVERQUEUE_BIN:-$(command -v riverqueue || echo "${CARGO_HOME:-$HOME/.cargo}/bin/riverqueue")}
pg_dump=${PG_DUMP:-pg_dump}
out=$(dirname "$0")/river_schema_v8.sql
schema=river_schema_gen_$$

"$riverqueue" --version | grep -qx 'riverqueue 0.5.0' || {
    echo "need riverqueue 0.5.0 at $riverqueue: cargo install riverqueue-cli --version 0.5.0" >&2
    exit 1
}

psql "$url" -q -v ON_ERROR_STOP=1 -c "CREATE SCHEMA $schema"
trap 'psql "$url" -q -c "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $schema CASCADE"' EXIT
"$riverqueue" migrate-up --database-url "$url" --schema "$schema" >/dev/null
"$pg_dump" --schema-only --schema="$schema" "$url" |
    sed -E "s/\b$schema\b/SCHEMA_NAME/g" |
    grep -vE '^-- Dumped (from database|by pg_dump) version |^\\(un)?restrict ' >"$out"
echo "wrote $out"
