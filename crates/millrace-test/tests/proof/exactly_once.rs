//! Exactly once under load: 10,000 jobs worked by the fleet of three clients, also while
//! their connections are killed and while PostgreSQL restarts.

use millrace::{MigrateOpts, Migrator, Schema};
use millrace_postgres::PgDriver;
use millrace_test::TestDb;
use millrace_test::pg_cluster::Cluster;
use sqlx::AssertSqlSafe;
use tokio::time::Instant;

use super::fleet::{Fleet, kill_connections};
use super::jobs::{
    Progress, assert_exactly_once, completed, count_running, create_runs_table, insert_load_jobs,
    states, wait_until,
};
use super::load_worker::{ACQUIRE_TIMEOUT, load_pool};
use super::logs::{assert_warnings_bounded, print_warnings, run_logged};
use super::{CHURN_ACQUIRE_TIMEOUT, JOBS, KILL_EVERY, LOAD_DEADLINE, OUTAGE, POLL};

/// Exactly once, at 10,000 jobs, with three clients: two in this process, one in another.
#[test]
fn ten_thousand_jobs_are_worked_exactly_once_by_three_clients() {
    run_logged(|_logs| async {
        let db = TestDb::new().await;
        create_runs_table(db.pool(), db.schema()).await;
        let fleet = Fleet::start(db.url(), db.schema(), ACQUIRE_TIMEOUT).await;

        let started = Instant::now();
        insert_load_jobs(&fleet.clients[0], JOBS).await;
        wait_until(db.pool(), db.schema(), LOAD_DEADLINE, |done| done == JOBS).await;
        let elapsed = started.elapsed();
        fleet.stop().await;

        let runs = assert_exactly_once(db.pool(), db.schema(), JOBS).await;
        for client in Fleet::CLIENT_IDS {
            assert!(
                runs.get(client).is_some_and(|&n| n > 0),
                "every client should have worked some of the jobs, got {runs:?}"
            );
        }
        eprintln!("{JOBS} jobs in {elapsed:.2?}, runs per client: {runs:?}");
    });
}

/// Exactly once while every connection of the fleet (pools and LISTEN, in this process and the
/// other) is terminated by the server every 500 ms. A fetch or a completion whose reply dies
/// with its connection must neither lose nor repeat a job.
#[test]
fn jobs_are_worked_exactly_once_while_connections_are_killed() {
    run_logged(|logs| async move {
        let db = TestDb::new().await;
        create_runs_table(db.pool(), db.schema()).await;
        let fleet = Fleet::start(db.url(), db.schema(), CHURN_ACQUIRE_TIMEOUT).await;

        let started = Instant::now();
        insert_load_jobs(&fleet.clients[0], JOBS).await;
        let mut progress = Progress::new(LOAD_DEADLINE);
        let mut next_kill = Instant::now();
        let mut rounds = 0;
        let mut killed = 0;
        loop {
            // The test's own pool is not the fleet's: its connections are never killed.
            let done = completed(db.pool(), db.schema())
                .await
                .expect("count completed jobs");
            if done == JOBS {
                break;
            }
            if let Err(why) = progress.check(Some(done)) {
                panic!(
                    "{why}: {done} of {JOBS} jobs completed ({rounds} kill rounds); states: \
                     {}\n{}",
                    states(db.pool(), db.schema()).await,
                    fleet.report(db.pool()).await
                );
            }
            if Instant::now() >= next_kill {
                let n = kill_connections(db.pool(), &fleet.application_names).await;
                if n > 0 {
                    rounds += 1;
                    killed += n;
                }
                next_kill = Instant::now() + KILL_EVERY;
            }
            tokio::time::sleep(POLL).await;
        }
        let elapsed = started.elapsed();
        let process_log = fleet.stop().await;

        assert!(
            rounds >= 3,
            "the run should have lost its connections several times while jobs remained, got \
             {rounds} kill rounds"
        );
        let runs = assert_exactly_once(db.pool(), db.schema(), JOBS).await;
        eprintln!(
            "{JOBS} jobs in {elapsed:.2?} through {rounds} kill rounds ({killed} connections \
             terminated), runs per client: {runs:?}"
        );
        print_warnings(&logs.lines(), &process_log);
    });
}

/// Exactly once while PostgreSQL goes down hard (`pg_ctl stop -m immediate`, a crash as far
/// as clients and recovery are concerned) and comes back, twice. Clients reconnect by
/// themselves, keep the outcomes they could not store, and give back rows whose fetch reply
/// was lost. Each part of each client logs each outage about once, not at every retry.
#[test]
fn jobs_are_worked_exactly_once_across_postgres_restarts() {
    run_logged(|logs| async move {
        let cluster = tokio::task::block_in_place(Cluster::start);
        let url = cluster.url();
        let schema = Schema::new("millrace_proof").expect("valid schema");
        let pool = load_pool(&url, "mrproof_checker", 3).expect("checker pool");
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {}", schema.name())))
            .execute(&pool)
            .await
            .expect("create the schema");
        Migrator::new(PgDriver::new(pool.clone()).with_schema(schema.clone()))
            .migrate_up(MigrateOpts::default())
            .await
            .expect("migrate the private cluster");
        create_runs_table(&pool, &schema).await;
        let fleet = Fleet::start(&url, &schema, ACQUIRE_TIMEOUT).await;

        let started = Instant::now();
        insert_load_jobs(&fleet.clients[0], JOBS).await;
        let mut restarts = Vec::new();
        for thirds in [1, 2] {
            // Restart when a third, then two thirds, of the jobs are done.
            let done = wait_until(&pool, &schema, LOAD_DEADLINE, |done| {
                done >= JOBS * thirds / 3
            })
            .await;
            assert!(
                done < JOBS,
                "the run ended before PostgreSQL restarted: it proves nothing"
            );
            let running = count_running(&pool, &schema).await;
            tokio::task::block_in_place(|| cluster.restart(OUTAGE));
            restarts.push((done, running));
        }
        wait_until(&pool, &schema, LOAD_DEADLINE, |done| done == JOBS).await;
        let elapsed = started.elapsed();
        let process_log = fleet.stop().await;

        let runs = assert_exactly_once(&pool, &schema, JOBS).await;
        eprintln!(
            "{JOBS} jobs in {elapsed:.2?} through {} restarts (completed, running at each: \
             {restarts:?}), runs per client: {runs:?}",
            restarts.len()
        );
        let in_process = logs.lines();
        print_warnings(&in_process, &process_log);
        assert_warnings_bounded(&in_process, 2, restarts.len());
        assert_warnings_bounded(&process_log, 1, restarts.len());
        pool.close().await;
    });
}
