use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use millrace_driver::{DriverError, Listener, Notification, Result, Topic};
use sqlx::{AssertSqlSafe, Row, SqlitePool};
use tokio::time::Instant;

use crate::SqliteDriver;
use crate::error::db_error;

/// How often the outbox is read.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The most rows read per poll; a full batch is followed by another read at once.
const BATCH: i64 = 1_000;

/// Receives notifications by polling the `river_notification` outbox for rows newer than the
/// last one seen, as River's SQLite listener does.
///
/// The cursor starts at the newest row when the listener is created, so older notifications
/// are not replayed. Ids are a safe cursor because SQLite has one writer at a time: a
/// transaction that took a lower id commits (or rolls back) before any other can take a
/// higher one.
#[derive(Debug)]
pub struct SqliteListener {
    pool: SqlitePool,
    get_after: Arc<str>,
    topics: HashSet<Topic>,
    last_id: i64,
    pending: VecDeque<Notification>,
    next_poll: Instant,
}

impl SqliteListener {
    pub(crate) async fn connect(driver: &SqliteDriver) -> Result<Self> {
        let queries = driver.queries();
        let last_id: i64 = sqlx::query_scalar(AssertSqlSafe(queries.notification.last_id.clone()))
            .fetch_one(driver.pool())
            .await
            .map_err(db_error)?;
        Ok(SqliteListener {
            pool: driver.pool().clone(),
            get_after: queries.notification.get_after.clone(),
            topics: HashSet::new(),
            last_id,
            pending: VecDeque::new(),
            next_poll: Instant::now(),
        })
    }

    /// Reads the rows after the cursor and queues those on a listened topic.
    async fn poll(&mut self) -> Result<usize> {
        let rows = sqlx::query(AssertSqlSafe(self.get_after.clone()))
            .bind(self.last_id)
            .bind(BATCH)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        // Nothing above awaits after the read, so a dropped future loses no row.
        for row in &rows {
            let id: i64 = row.try_get("id").map_err(db_error)?;
            let topic: String = row.try_get("topic").map_err(db_error)?;
            self.last_id = self.last_id.max(id);
            let topic = Topic::ALL.into_iter().find(|t| t.as_str() == topic);
            if let Some(topic) = topic.filter(|t| self.topics.contains(t)) {
                self.pending.push_back(Notification {
                    topic,
                    payload: row.try_get("payload").map_err(db_error)?,
                });
            }
        }
        Ok(rows.len())
    }
}

impl Listener for SqliteListener {
    async fn listen(&mut self, topic: Topic) -> Result<()> {
        self.topics.insert(topic);
        Ok(())
    }

    async fn recv(&mut self) -> Result<Option<Notification>> {
        loop {
            if let Some(notification) = self.pending.pop_front() {
                return Ok(Some(notification));
            }
            tokio::time::sleep_until(self.next_poll).await;
            match self.poll().await {
                Ok(read) => {
                    self.next_poll = if read as i64 == BATCH {
                        Instant::now()
                    } else {
                        Instant::now() + POLL_INTERVAL
                    };
                }
                // The cursor stays where it was, so nothing is missed; the caller polls its
                // queues meanwhile, as after a lost LISTEN connection.
                Err(err @ DriverError::Connection(_)) => {
                    tracing::debug!(%err, "polling notifications failed");
                    self.next_poll = Instant::now() + POLL_INTERVAL;
                    return Ok(None);
                }
                Err(err) => return Err(err),
            }
        }
    }
}
