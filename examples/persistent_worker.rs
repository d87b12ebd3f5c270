//! A persistent worker: one long-running loop (here a stream consumer) that runs as exactly
//! one instance across every client that registers it, in one call on the client builder.
//!
//! Two clients register `stream_consumer`; only one runs it. The instance records its progress
//! in its row's metadata and passes its attempt number, a fencing token, to the store it writes
//! to. When its client stops gracefully, the other client takes it over at once and carries on
//! from the stored offset. When the instance fails, it is restarted after a backoff with a
//! higher token, and the store refuses the older instances' tokens from then on.
//!
//! ```text
//! cargo run -p millrace --example persistent_worker
//! ```

use std::error::Error;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use millrace::{
    BoxError, Client, Event, JobId, MigrateOpts, Migrator, PersistentContext, PersistentWorker,
    Schema,
};
use millrace_postgres::PgDriver;
use sqlx::{AssertSqlSafe, PgPool};
use tokio::sync::broadcast;

/// The database used when `DATABASE_URL` is unset.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The longest the example waits for something to happen.
const DEADLINE: Duration = Duration::from_secs(10);

/// Where the consumer keeps its offset: a stand-in for a table or a service that takes
/// fenced writes. It remembers the highest token it has seen and refuses lower ones, so a
/// stale instance (paused, cut off, not yet aware it lost its lease) can never overwrite the
/// newer one's work.
#[derive(Debug, Default)]
struct OffsetStore {
    /// The highest token seen and the offset stored.
    state: Mutex<(i16, u64)>,
}

impl OffsetStore {
    fn offset(&self) -> u64 {
        self.state.lock().expect("lock poisoned").1
    }

    /// Stores `offset` unless a newer instance (a higher token) has written already.
    fn write(&self, token: i16, offset: u64) -> Result<(), String> {
        let mut state = self.state.lock().expect("lock poisoned");
        if token < state.0 {
            return Err(format!(
                "stale write refused: token {token} is older than {}",
                state.0
            ));
        }
        *state = (token, offset);
        Ok(())
    }
}

/// Consumes a stream: one message every 50 ms, committing its offset to the store.
#[derive(Clone, Default)]
struct StreamConsumer {
    store: Arc<OffsetStore>,
    /// Set to make the next message a poison message the instance fails on.
    poison: Arc<AtomicBool>,
    /// Instances running now, in this process, and the most ever at once.
    running: Arc<AtomicUsize>,
    most_running: Arc<AtomicUsize>,
    /// The instance's row, for the example to look at.
    job: Arc<Mutex<Option<JobId>>>,
}

/// Counts an instance as running while it lives, however it ends.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PersistentWorker for StreamConsumer {
    async fn run(&self, ctx: PersistentContext) -> Result<(), BoxError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        let _running = Running(self.running.clone());
        self.most_running.fetch_max(now, Ordering::SeqCst);
        *self.job.lock().expect("lock poisoned") = Some(ctx.job_id());

        // Resume where the previous instance, on whichever client, left off.
        let mut offset = self.store.offset();
        // The example's tokens are attempts, as `Event::PersistentWorkerStarted` reports them;
        // a store of one's own should take `ctx.fencing_token()`, which has no 32,767 ceiling.
        #[allow(deprecated)]
        let token = ctx.attempt();
        println!("  consumer: instance with token {token} resumes at offset {offset}");
        loop {
            tokio::select! {
                // Fires on the client's stop and when the instance is lost: return promptly.
                _ = ctx.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            if self.poison.swap(false, Ordering::SeqCst) {
                // An error ends the instance; it is restarted after a backoff, never given up.
                return Err(format!("cannot decode the message at offset {}", offset + 1).into());
            }
            offset += 1;
            // The attempt is the fencing token: it is handed to every write.
            self.store.write(token, offset)?;
            // Fenced on the attempt too: an error means the instance is no longer ours.
            ctx.record_progress(serde_json::json!({ "offset": offset }))
                .await?;
        }
    }
}

/// Runs the scenario on `schema`, which must be migrated; returns an error when an outcome is
/// not the expected one.
pub async fn run(pool: PgPool, schema: Schema) -> Result<(), Box<dyn Error>> {
    let driver = PgDriver::new(pool).with_schema(schema);
    let consumer = StreamConsumer::default();
    // Two clients, as two processes of a fleet would be; the same name makes them share one
    // instance. (They share the consumer value here only so the example can count instances.)
    let a = Client::builder(driver.clone())
        .id("node-a")
        .persistent_worker("stream_consumer", consumer.clone())
        .build()?;
    let b = Client::builder(driver)
        .id("node-b")
        .persistent_worker("stream_consumer", consumer.clone())
        .build()?;
    let mut a_events = a.subscribe();
    let mut b_events = b.subscribe();

    // 1. The first client to start runs the instance, within about a second.
    let starting = Instant::now();
    a.start().await?;
    let first = started(&mut a_events).await?;
    println!(
        "node-a started the instance in {:?}, token {first}",
        starting.elapsed()
    );
    b.start().await?;

    // 2. It makes progress, recorded in its row, while node-b only stands by.
    let until = consumer.store.offset() + 10;
    wait_until("the consumer makes progress", || {
        consumer.store.offset() >= until
    })
    .await?;
    let job = (*consumer.job.lock().expect("lock poisoned")).ok_or("no instance row")?;
    let row = a.job_get(job).await?;
    println!(
        "its row: job {} kind {} queue {} state {} attempt {} metadata {}",
        row.id, row.kind, row.queue, row.state, row.attempt, row.metadata
    );
    ensure(
        row.kind == "millrace_persistent:stream_consumer"
            && row.queue == "millrace_persistent"
            && row.state == millrace::JobState::Running
            && row.attempt == first,
        format!("the instance's row is {row:?}"),
    )?;
    let recorded = row.metadata["progress"]["offset"].as_u64().unwrap_or(0);
    ensure(recorded >= 1, format!("no progress in {}", row.metadata))?;
    ensure(
        matches!(
            b_events.try_recv(),
            Err(broadcast::error::TryRecvError::Empty)
        ),
        "node-b started an instance too",
    )?;

    // 3. A graceful stop hands the instance over: node-b starts it at once and carries on from
    // the stored offset.
    let offset_at_stop = consumer.store.offset();
    let stopping = Instant::now();
    a.stop().await?;
    let stopped_in = stopping.elapsed();
    let second = started(&mut b_events).await?;
    let handover = stopping.elapsed();
    println!(
        "node-a stopped in {stopped_in:?}; node-b started the instance {handover:?} after the \
         stop began, token {second}"
    );
    ensure(
        handover < Duration::from_secs(2),
        format!("the handover took {handover:?}"),
    )?;
    ensure(
        second > first,
        format!("the new instance's token {second} is below the old one's {first}"),
    )?;
    wait_until("the new instance makes progress", || {
        consumer.store.offset() >= offset_at_stop + 5
    })
    .await?;
    println!(
        "the new instance resumed from offset {offset_at_stop} and is at {}",
        consumer.store.offset()
    );

    // 4. A poison message fails the instance: it is restarted after the restart backoff
    // (1 s at first, doubling per consecutive failure up to a minute), with a higher token,
    // and the error is kept in its row.
    consumer.poison.store(true, Ordering::SeqCst);
    let error = stopped(&mut b_events).await?;
    println!("the instance failed: {error:?}");
    ensure(error.is_some(), "the instance stopped without an error")?;
    let third = started(&mut b_events).await?;
    println!("restarted with token {third}");
    ensure(
        third > second,
        format!("the restarted instance's token {third} is not above {second}"),
    )?;
    let row = b.job_get(job).await?;
    let last_error = row.errors.last().map(|e| e.error.as_str()).unwrap_or("");
    println!(
        "its row: state {} attempt {} last error {last_error:?}",
        row.state, row.attempt
    );
    ensure(
        row.state == millrace::JobState::Running && last_error.contains("cannot decode"),
        format!("after the restart the row is {row:?}"),
    )?;
    wait_until("the restarted instance writes", || {
        consumer.store.state.lock().expect("lock poisoned").0 == third
    })
    .await?;

    // 5. A late write from node-a's instance, with its old token, is refused.
    let stale = consumer.store.write(first, 1);
    println!("a write with node-a's token {first}: {stale:?}");
    ensure(stale.is_err(), "the store took a stale write")?;

    b.stop().await?;
    let most = consumer.most_running.load(Ordering::SeqCst);
    println!("instances running at once, at most: {most}");
    ensure(most == 1, format!("{most} instances ran at once"))?;
    Ok(())
}

/// Waits for this client to start the persistent worker; returns the instance's token.
async fn started(events: &mut broadcast::Receiver<Event>) -> Result<i16, Box<dyn Error>> {
    let wait = async {
        loop {
            if let Event::PersistentWorkerStarted { attempt, .. } = events.recv().await? {
                return Ok::<_, broadcast::error::RecvError>(attempt);
            }
        }
    };
    match tokio::time::timeout(DEADLINE, wait).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(format!("no instance started within {DEADLINE:?}").into()),
    }
}

/// Waits for this client's instance to stop; returns the error it failed with, if any.
async fn stopped(
    events: &mut broadcast::Receiver<Event>,
) -> Result<Option<String>, Box<dyn Error>> {
    let wait = async {
        loop {
            if let Event::PersistentWorkerStopped { error, .. } = events.recv().await? {
                return Ok::<_, broadcast::error::RecvError>(error);
            }
        }
    };
    match tokio::time::timeout(DEADLINE, wait).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(format!("no instance stopped within {DEADLINE:?}").into()),
    }
}

/// Polls `done` every 10 ms until it holds, up to [`DEADLINE`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> Result<(), Box<dyn Error>> {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .map_err(|_| format!("{what}: not within {DEADLINE:?}").into())
}

/// Turns an unexpected outcome into an error.
fn ensure(ok: bool, what: impl Into<String>) -> Result<(), Box<dyn Error>> {
    if ok {
        Ok(())
    } else {
        Err(format!("unexpected outcome: {}", what.into()).into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let pool = PgPool::connect(&url).await?;
    let schema = Schema::new("millrace_example_persistent_worker")?;
    sqlx::query(AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS \"{}\"",
        schema.name()
    )))
    .execute(&pool)
    .await?;
    Migrator::new(PgDriver::new(pool.clone()).with_schema(schema.clone()))
        .migrate_up(MigrateOpts::default())
        .await?;
    // Every run starts from an empty job table: the instance row of an earlier run would carry
    // its token over, while this run's store starts afresh.
    sqlx::query(AssertSqlSafe(format!(
        "TRUNCATE {}",
        schema.qualify("river_job")
    )))
    .execute(&pool)
    .await?;
    run(pool, schema).await?;
    println!("ok");
    Ok(())
}
