//! TLS and connection settings against real servers (issue 14, items 2 and 3): a private
//! cluster with `ssl = on` and a certificate authority the test generates, and the shared
//! test server for `application_name` and `statement_timeout`.

use std::time::{Duration, Instant};

use millrace_postgres::{ConnectError, ConnectOptions, SslMode};
use millrace_test::cluster::{CERT_USER, TlsCluster};

/// The error's message with its causes, as the CLI prints it.
fn chain(err: &ConnectError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
}

async fn ssl_in_use(options: ConnectOptions) -> Result<bool, ConnectError> {
    let pool = options.connect().await?;
    let on: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .expect("read pg_stat_ssl");
    pool.close().await;
    Ok(on)
}

fn url(base: String, params: &str) -> ConnectOptions {
    ConnectOptions::from_url(&format!("{base}?{params}")).expect("valid settings")
}

#[tokio::test]
async fn tls_modes_verify_as_libpq_does_against_a_private_cluster() {
    let started = Instant::now();
    let cluster = TlsCluster::start().await;
    let ca = cluster.ca().display().to_string();
    let wrong_ca = cluster.wrong_ca().display().to_string();
    let localhost = cluster.url("localhost");
    let ip = cluster.url("127.0.0.1");

    // verify-full with the right authority and the name on the certificate.
    let full = format!("sslmode=verify-full&sslrootcert={ca}");
    assert!(ssl_in_use(url(localhost.clone(), &full)).await.unwrap());

    // The wrong authority fails, and says what to check.
    let err = ssl_in_use(url(
        localhost.clone(),
        &format!("sslmode=verify-full&sslrootcert={wrong_ca}"),
    ))
    .await
    .unwrap_err();
    let text = chain(&err);
    assert!(matches!(err, ConnectError::Connect { .. }), "{text}");
    assert!(text.contains("not signed by a trusted root"), "{text}");
    assert!(text.contains("sslrootcert"), "{text}");

    // A name the certificate does not hold fails verify-full, but passes verify-ca.
    let err = ssl_in_use(url(ip.clone(), &full)).await.unwrap_err();
    let text = chain(&err);
    assert!(text.contains("does not name this host"), "{text}");
    assert!(
        ssl_in_use(url(
            ip.clone(),
            &format!("sslmode=verify-ca&sslrootcert={ca}")
        ))
        .await
        .unwrap()
    );

    // libpq's rule, which sqlx alone does not follow: require with a root certificate
    // verifies against it.
    let options = url(
        localhost.clone(),
        &format!("sslmode=require&sslrootcert={wrong_ca}"),
    );
    assert_eq!(options.get_ssl_mode(), SslMode::VerifyCa);
    let text = chain(&ssl_in_use(options).await.unwrap_err());
    assert!(text.contains("not signed by a trusted root"), "{text}");
    // Without one, require encrypts without verifying, as in libpq.
    assert!(
        ssl_in_use(url(localhost.clone(), "sslmode=require"))
            .await
            .unwrap()
    );

    // A client certificate logs in the role it names, where a password-less login is refused.
    let (cert, key) = cluster.client_cert();
    let cert_url = format!(
        "postgres://{CERT_USER}@localhost:{}/postgres",
        cluster.port()
    );
    let with_cert = url(cert_url.clone(), &full)
        .ssl_client_cert(cert.display().to_string(), key.display().to_string());
    assert!(ssl_in_use(with_cert).await.unwrap());
    assert!(ssl_in_use(url(cert_url, &full)).await.is_err());

    // With TLS off in the server, require fails clearly and prefer connects in plaintext.
    cluster.set_ssl(false);
    let err = ssl_in_use(url(localhost.clone(), "sslmode=require"))
        .await
        .unwrap_err();
    let text = chain(&err);
    assert!(text.contains("does not offer TLS"), "{text}");
    assert!(
        !ssl_in_use(url(localhost.clone(), "sslmode=prefer"))
            .await
            .unwrap()
    );

    drop(cluster);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[tokio::test]
async fn every_connection_reports_application_name_and_statement_timeout() {
    let base = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let pool = ConnectOptions::from_url(&base)
        .unwrap()
        .max_connections(2)
        .statement_timeout(Duration::from_millis(1500))
        .connect()
        .await
        .unwrap();
    let (name, timeout): (String, String) = sqlx::query_as(
        "SELECT application_name, current_setting('statement_timeout') \
         FROM pg_stat_activity WHERE pid = pg_backend_pid()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(name, "millrace");
    assert_eq!(timeout, "1500ms");
    let err = sqlx::query("SELECT pg_sleep(3)")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("statement timeout"), "{err}");

    let separator = if base.contains('?') { '&' } else { '?' };
    let pool = ConnectOptions::from_url(&format!("{base}{separator}application_name=mailer"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let name: String = sqlx::query_scalar("SELECT current_setting('application_name')")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(name, "mailer");
}

#[tokio::test]
async fn bad_settings_fail_before_connecting_and_name_the_setting() {
    let cases = [
        (
            "postgres://db.invalid/app?sslmode=requre",
            "unknown sslmode \"requre\"",
        ),
        (
            "postgres://db.invalid/app?sslmode=allow",
            "expected disable, prefer",
        ),
        (
            "postgres://db.invalid/app?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "cannot read the sslrootcert file /nonexistent/ca.pem",
        ),
        (
            "postgres://db.invalid/app?sslcert=/nonexistent/client.crt",
            "sslcert is given without sslkey",
        ),
        (
            "postgres://db.invalid/app?sslmode=require&sslrootcert=system",
            "use verify-full",
        ),
        (
            "postgres://db.invalid/app?connect_timeout=soon",
            "connect_timeout",
        ),
    ];
    for (url, expected) in cases {
        let err = match ConnectOptions::from_url(url) {
            Err(err) => err,
            Ok(options) => options.connect().await.unwrap_err(),
        };
        let text = chain(&err);
        assert!(text.contains(expected), "{url}: {text}");
        assert!(
            !matches!(
                err,
                ConnectError::Connect { .. } | ConnectError::Timeout { .. }
            ),
            "{url}: {text}"
        );
    }
}
