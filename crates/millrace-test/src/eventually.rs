//! Waiting on a condition that no event announces, with a deadline.

use std::future::Future;
use std::time::Duration;

/// How often [`eventually`] checks again: often enough that a test waits little past the
/// moment the condition holds, rarely enough not to load the database it polls.
const POLL: Duration = Duration::from_millis(20);

/// Checks `check` every 20 ms until it holds, and panics saying `what` did not happen once
/// `deadline` has passed.
///
/// For conditions no event tells (a row another client changed, a service's pass); where an
/// event does, wait on the event. Give a deadline of about three times the bound the code
/// under test promises, so a slow machine does not fail the test but a broken bound does.
///
/// # Panics
///
/// When `check` has not held within `deadline`: this is a test assertion.
///
/// # Examples
///
/// ```no_run
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::time::Duration;
///
/// # async fn example() {
/// let done = AtomicBool::new(true);
/// millrace_test::eventually("the flag is set", Duration::from_secs(5), || async {
///     done.load(Ordering::SeqCst)
/// })
/// .await;
/// # }
/// ```
#[track_caller]
pub fn eventually<F, Fut>(
    what: &str,
    deadline: Duration,
    mut check: F,
) -> impl Future<Output = ()> + use<'_, F, Fut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let caller = std::panic::Location::caller();
    async move {
        let wait = async {
            while !check().await {
                tokio::time::sleep(POLL).await;
            }
        };
        if tokio::time::timeout(deadline, wait).await.is_err() {
            panic!("{what} did not happen within {deadline:?} (waited at {caller})");
        }
    }
}
