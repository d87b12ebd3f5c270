//! Reading sequences (issue 19): which keys have unfinished work, what heads each, how many
//! jobs wait behind it, and whether a failed job blocks it.

use millrace_driver::{Driver, Executor};

pub use millrace_driver::{SequenceListParams, SequenceRow};

use super::Client;
use crate::error::{Error, Result};

/// The most sequences one [`Client::sequence_list`] call returns.
pub const SEQUENCE_LIST_MAX_LIMIT: i64 = 10_000;

impl<D: Driver> Client<D> {
    /// Sequences with unfinished work (a live, blocking or pending job), by key: the head
    /// job and its state, how many jobs wait `pending` behind it, and whether a discarded or
    /// cancelled job blocks it. At most `params.limit` (1 to [`SEQUENCE_LIST_MAX_LIMIT`]),
    /// after `params.after` when given, for paging. A sequence whose jobs all completed has
    /// nothing to show and is not listed.
    ///
    /// A blocked sequence moves on when an operator retries its failed job (it runs again
    /// at the head) or deletes it ([`Client::job_delete`]: the next job is promoted at once).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a limit out of range; a driver error when the database
    /// fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use millrace::SequenceListParams;
    ///
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// let blocked = SequenceListParams { blocked_only: true, limit: 100, ..Default::default() };
    /// for seq in client.sequence_list(&blocked).await? {
    ///     println!("{} is held by job {} ({}); {} wait", seq.key, seq.head_id, seq.head_state, seq.pending);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn sequence_list(&self, params: &SequenceListParams) -> Result<Vec<SequenceRow>> {
        if !(1..=SEQUENCE_LIST_MAX_LIMIT).contains(&params.limit) {
            return Err(Error::InvalidArgument(format!(
                "sequence list limit must be between 1 and {SEQUENCE_LIST_MAX_LIMIT}, got {}",
                params.limit
            )));
        }
        Ok(self.inner.driver.executor().sequence_list(params).await?)
    }
}
