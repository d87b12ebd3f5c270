#!/usr/bin/env bash
# The project's test command, run by CI (.ci/run) and before handing in work:
#   bash scripts/test.sh
#
# Formatting, lints, the whole test suite against a real PostgreSQL, doctests and docs, in that
# order. When no PostgreSQL answers on 127.0.0.1:5432 it starts one: the distribution's
# cluster, or else a private cluster in target/pg (initdb and pg_ctl refuse to run as root, so
# they run as the postgres user). TEST_DATABASE_URL, when set, names the database to use.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

step() {
    printf '\n==> %s\n' "$*"
}

# Runs a command as the postgres user when we are root, as ourselves otherwise.
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

wait_ready() {
    local port=$1
    for _ in $(seq 1 50); do
        pg_isready -q -h 127.0.0.1 -p "$port" && return 0
        sleep 0.2
    done
    return 1
}

pg_bindir() {
    if command -v pg_config >/dev/null 2>&1; then
        pg_config --bindir
    else
        ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
    fi
}

# Starts a private cluster in target/pg (or under /tmp when the postgres user cannot reach the
# checkout), listening on 127.0.0.1:$1 with trust authentication and a `postgres` superuser.
start_private_cluster() {
    local port=$1 bin dir
    bin=$(pg_bindir)
    [ -x "$bin/initdb" ] || bin=$(dirname "$(command -v initdb)")
    dir=$root/target/pg
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        mkdir -p "$root/target"
        if ! runuser -u postgres -- test -x "$root/target"; then
            dir=${TMPDIR:-/tmp}/millrace-pg
        fi
        mkdir -p "$dir"
        chown postgres "$dir"
        chmod 700 "$dir"
    else
        mkdir -p "$dir"
    fi
    if [ ! -f "$dir/PG_VERSION" ]; then
        as_postgres "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 >"$dir.initdb.log"
    fi
    as_postgres "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c max_connections=200 -c fsync=off" \
        start >/dev/null
    wait_ready "$port"
}

ensure_postgres() {
    if [ -n "${TEST_DATABASE_URL:-}" ]; then
        pg_isready -q -d "$TEST_DATABASE_URL" ||
            echo "warning: TEST_DATABASE_URL does not answer pg_isready" >&2
        return 0
    fi

    local port=5432
    if ! pg_isready -q -h 127.0.0.1 -p "$port"; then
        local version
        version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
        if [ -n "$version" ] && command -v pg_ctlcluster >/dev/null 2>&1 &&
            pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null &&
            wait_ready "$port"; then
            echo "started PostgreSQL cluster $version/main"
        elif start_private_cluster "$port"; then
            echo "started a private PostgreSQL cluster on port $port"
        else
            # Something else holds 5432 without answering: use a port of our own.
            port=55432
            start_private_cluster "$port"
            echo "started a private PostgreSQL cluster on port $port"
        fi
    fi

    # The first role that can log in, and a `test` database for the suite.
    local role
    for role in postgres root "$(id -un)"; do
        if psql -h 127.0.0.1 -p "$port" -U "$role" -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; then
            if [ -z "$(psql -h 127.0.0.1 -p "$port" -U "$role" -d postgres -Atqc \
                "SELECT 1 FROM pg_database WHERE datname = 'test'")" ]; then
                psql -h 127.0.0.1 -p "$port" -U "$role" -d postgres -qc 'CREATE DATABASE test'
            fi
            export TEST_DATABASE_URL="postgres://$role@127.0.0.1:$port/test"
            echo "TEST_DATABASE_URL=$TEST_DATABASE_URL"
            return 0
        fi
    done
    echo "error: PostgreSQL answers on port $port but no role (postgres, root) can log in" >&2
    return 1
}

# River's own tools, which the interoperability tests run: its CLI from crates.io and its
# Python client from PyPI. Installed once; later runs find them.
ensure_river_tools() {
    if ! command -v riverqueue >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/riverqueue" ]; then
        cargo install --quiet --locked riverqueue-cli --version 0.5.0
    fi
    # River's Python driver runs on SQLAlchemy's asyncio extra (greenlet).
    if ! python3 -c 'import psycopg, greenlet; from riverqueue.driver import riversqlalchemy' >/dev/null 2>&1; then
        python3 -m pip install --quiet riverqueue 'sqlalchemy[asyncio]' 'psycopg[binary]'
    fi
}

# `--all-features` turns on the native-tls feature, which builds against OpenSSL's headers.
ensure_openssl_headers() {
    if pkg-config --exists openssl 2>/dev/null; then
        return 0
    fi
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev pkg-config >/dev/null
    else
        echo "error: the native-tls feature needs OpenSSL's headers: install libssl-dev and pkg-config" >&2
        return 1
    fi
}

step "OpenSSL headers (native-tls)"
ensure_openssl_headers

# PgBouncer, which the transaction-pooling tests start in front of PostgreSQL
# (crates/millrace/tests/it/pgbouncer.rs). Debian puts it in /usr/sbin; as root with apt, it is
# installed when missing. Under CI those tests fail, rather than skip, when it is still missing.
ensure_pgbouncer() {
    if command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; then
        return 0
    fi
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        # The package's service is not wanted: the tests run PgBouncers of their own.
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null; then
            apt-get update -q >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null
        fi
    else
        echo "warning: pgbouncer is missing and cannot be installed here (not root, or no apt-get);" \
            "its tests will fail under CI and be skipped otherwise" >&2
    fi
}

# Chromium and its WebDriver, which the dashboard's browser tests drive headless
# (crates/millrace-web/tests/it/browser.rs). Debian's packages; as root with apt, installed when
# missing. Under CI those tests fail, rather than skip, when they are still missing.
ensure_chromium() {
    if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
        return 0
    fi
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; then
            apt-get update -q >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null
        fi
    else
        echo "warning: chromium or chromedriver is missing and cannot be installed here (not root," \
            "or no apt-get); the dashboard's browser tests will fail under CI and be skipped otherwise" >&2
    fi
}

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets --all-features -- -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "PostgreSQL"
ensure_postgres

step "River's CLI and Python client"
ensure_river_tools

step "PgBouncer"
ensure_pgbouncer

step "Chromium and chromedriver"
ensure_chromium

step "cargo nextest run --workspace --all-features"
cargo nextest run --workspace --all-features

step "cargo test --doc --workspace"
cargo test --doc --workspace

step "cargo doc --no-deps --workspace"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace

step "all checks passed"
