//! Connection settings through the `millrace` binary (issue 14, items 2 and 3): the PG*
//! variables without a URL, `application_name`, TLS flags and variables against a private
//! TLS cluster, and bad settings, each one clear line and status 2.

use std::process::{Output, Stdio};
use std::time::Duration;

use millrace_test::cluster::TlsCluster;
use sqlx::postgres::PgConnectOptions;

/// The local server's test database, as `millrace_test` reads it.
fn database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// `millrace` with none of the caller's connection variables, so only `env` says where.
fn command(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_millrace"));
    command.args(args);
    for (name, _) in std::env::vars() {
        if name == "DATABASE_URL" || name.starts_with("PG") {
            command.env_remove(name);
        }
    }
    command
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn millrace(args: &[&str], env: &[(&str, &str)]) -> Output {
    tokio::time::timeout(Duration::from_secs(30), command(args, env).output())
        .await
        .unwrap_or_else(|_| panic!("millrace {args:?} did not end within 30 s"))
        .expect("run millrace")
}

/// Asserts status 2 and a single line of stderr that contains `expected`.
fn assert_one_line_error(output: &Output, expected: &str, what: &str) {
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{what}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{what}: {err}");
    assert!(err.contains(expected), "{what}: {err}");
}

/// A command line, its environment, and what its error must say.
type Case<'a> = (Vec<String>, Vec<(&'a str, &'a str)>, &'a str);

/// PGHOST, PGPORT, PGUSER and PGDATABASE for the test database.
fn pg_env() -> Vec<(&'static str, String)> {
    let opts: PgConnectOptions = database_url().parse().expect("TEST_DATABASE_URL");
    vec![
        ("PGHOST", opts.get_host().to_owned()),
        ("PGPORT", opts.get_port().to_string()),
        ("PGUSER", opts.get_username().to_owned()),
        (
            "PGDATABASE",
            opts.get_database().unwrap_or("test").to_owned(),
        ),
    ]
}

#[tokio::test]
async fn bad_connection_settings_are_one_line_and_status_2_before_any_write() {
    let url = database_url();
    let separator = if url.contains('?') { '&' } else { '?' };
    let bad_mode = format!("{url}{separator}sslmode=requre");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = format!("postgres://postgres@127.0.0.1:{port}/test");
    let schema = format!("millrace_conn_never_{}", std::process::id());
    let up = |url: &str| {
        vec![
            "migrate-up".to_owned(),
            "--database-url".to_owned(),
            url.to_owned(),
            "--schema".to_owned(),
            schema.clone(),
        ]
    };
    let cases: Vec<Case<'_>> = vec![
        (up(&bad_mode), vec![], "unknown sslmode \"requre\""),
        (
            [up(&url), vec!["--sslmode".into(), "on".into()]].concat(),
            vec![],
            "unknown sslmode \"on\"",
        ),
        (
            up(&url),
            vec![("PGSSLMODE", "verify_full")],
            "(from PGSSLMODE)",
        ),
        (
            [
                up(&url),
                vec!["--sslrootcert".into(), "/nonexistent/ca.pem".into()],
            ]
            .concat(),
            vec![],
            "cannot read the sslrootcert file /nonexistent/ca.pem",
        ),
        (
            up(&url),
            vec![
                ("PGSSLCERT", "/nonexistent/client.crt"),
                ("PGSSLKEY", "/nonexistent/client.key"),
            ],
            "cannot read the sslcert file /nonexistent/client.crt",
        ),
        (up(&refused), vec![], "refused"),
        (
            vec!["migrate-up".into()],
            vec![],
            "no database given: pass --database-url",
        ),
    ];
    for (args, env, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = millrace(&args, &env).await;
        assert_one_line_error(&output, expected, &format!("{args:?} {env:?}"));
    }
    // None of them created the schema migrate-up was given.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(&schema)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!exists, "a failed connection wrote schema {schema}");
}

#[tokio::test]
async fn pg_variables_without_a_url_reach_postgres_as_millrace_demo() {
    let schema = format!("millrace_conn_demo_{}", std::process::id());
    let env = pg_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut demo = command(
        &[
            "demo",
            "--schema",
            &schema,
            "--duration",
            "4",
            "--rate",
            "5",
        ],
        &env,
    )
    .spawn()
    .expect("start the demo");

    // The demo's connections show who they are in pg_stat_activity.
    let pool = sqlx::PgPool::connect(&database_url()).await.unwrap();
    let seen = async {
        loop {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'millrace demo'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            if n > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let seen = tokio::time::timeout(Duration::from_secs(15), seen).await;
    let status = tokio::time::timeout(Duration::from_secs(20), demo.wait())
        .await
        .expect("the demo stops after --duration")
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(&pool)
    .await
    .unwrap();
    assert!(
        seen.is_ok(),
        "no connection with application_name 'millrace demo'"
    );
    assert_eq!(status.code(), Some(0), "demo: {status}");
}

#[tokio::test]
async fn tls_flags_and_variables_verify_the_server() {
    let cluster = TlsCluster::start().await;
    let ca = cluster.ca().display().to_string();
    let wrong_ca = cluster.wrong_ca().display().to_string();
    let port = cluster.port().to_string();
    let env = [
        ("PGHOST", "localhost"),
        ("PGPORT", port.as_str()),
        ("PGUSER", "postgres"),
        ("PGDATABASE", "postgres"),
    ];

    // Flags: verify-full against the right authority lists the migrations.
    let output = millrace(
        &[
            "migrate-list",
            "--sslmode",
            "verify-full",
            "--sslrootcert",
            &ca,
        ],
        &env,
    )
    .await;
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "verify-full: {err}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("pending"));

    // Variables: the wrong authority is refused, in one line that says what to check.
    let mut with_wrong = env.to_vec();
    with_wrong.push(("PGSSLMODE", "verify-full"));
    with_wrong.push(("PGSSLROOTCERT", &wrong_ca));
    let output = millrace(&["migrate-list"], &with_wrong).await;
    assert_one_line_error(&output, "not signed by a trusted root", "wrong CA");

    // URL: a host name the certificate does not hold is refused.
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={ca}",
        cluster.url("127.0.0.1")
    );
    let output = millrace(&["migrate-list", "--database-url", &url], &[]).await;
    assert_one_line_error(&output, "does not name this host", "wrong host");
}
