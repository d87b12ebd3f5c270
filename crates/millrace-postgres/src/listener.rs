use millrace_driver::{DriverError, Listener, Notification, Result, Schema, Topic};

use crate::{PgDriver, db_error};

/// Receives notifications on a dedicated connection, through sqlx's `PgListener`.
///
/// sqlx reconnects a lost listener by itself and listens on the same channels again;
/// [`Listener::recv`] reports each loss as `Ok(None)` so the caller can poll for what it missed.
#[derive(Debug)]
pub struct PgListener {
    inner: sqlx::postgres::PgListener,
    schema: Schema,
}

impl PgListener {
    pub(crate) async fn connect(driver: &PgDriver) -> Result<Self> {
        // LISTEN belongs to a server session: through a transaction-mode pooler it would
        // land on a shared server connection and its notifications on nobody.
        let pool = driver.session_pool().ok_or_else(|| {
            DriverError::Database(
                "no LISTEN through a transaction-mode pooler without a direct pool".into(),
            )
        })?;
        let inner = sqlx::postgres::PgListener::connect_with(pool)
            .await
            .map_err(db_error)?;
        Ok(PgListener {
            inner,
            schema: driver.queries().schema.clone(),
        })
    }
}

impl Listener for PgListener {
    async fn listen(&mut self, topic: Topic) -> Result<()> {
        self.inner
            .listen(&self.schema.channel(topic.as_str()))
            .await
            .map_err(db_error)
    }

    async fn recv(&mut self) -> Result<Option<Notification>> {
        loop {
            let Some(n) = self.inner.try_recv().await.map_err(db_error)? else {
                return Ok(None);
            };
            let topic = Topic::ALL
                .into_iter()
                .find(|t| self.schema.channel(t.as_str()) == n.channel());
            if let Some(topic) = topic {
                return Ok(Some(Notification {
                    topic,
                    payload: n.payload().to_owned(),
                }));
            }
        }
    }
}
