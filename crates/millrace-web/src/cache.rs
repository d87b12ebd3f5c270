//! The per-queue live counts, shared across requests for a moment.
//!
//! Counting every live job by queue and state is the overview's and the queues page's one
//! read that grows with the backlog (about 110 ms for 100,000 live jobs on PostgreSQL). Each
//! page polls every few seconds, and several people may watch at once, so the count is kept
//! and served to every request: fresh for [`FRESH_FOR`]; after that, up to [`STALE_FOR`], the
//! kept count is served at once while one background task counts again, so no request waits
//! for the count but the first one (or the first after a long idle spell). The pages say how
//! old a count is once it is older than a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use millrace::{Client, Driver, JobCounts};
use tokio::sync::Mutex;

/// How long a count is served without counting again.
pub(crate) const FRESH_FOR: Duration = Duration::from_secs(1);
/// How long a count may be served while a newer one is counted; older, a request waits.
pub(crate) const STALE_FOR: Duration = Duration::from_secs(30);

/// The kept count and whether a recount is under way.
#[derive(Default)]
pub(crate) struct CountsCache {
    /// The count, when it was counted, and the generation it was counted in.
    kept: Mutex<Option<(JobCounts, Instant, u64)>>,
    refreshing: AtomicBool,
    /// Bumped by [`CountsCache::forget`]: a count of an older generation is never served, so
    /// neither a kept count nor a recount begun before an action hides the action's effect.
    generation: AtomicU64,
}

impl CountsCache {
    /// The live counts by queue and state and when they were counted.
    ///
    /// A request that finds no count young enough to serve counts while holding the lock, so
    /// concurrent requests wait for that one count instead of each running their own.
    pub(crate) async fn get<D: Driver>(
        self: &Arc<Self>,
        client: &Client<D>,
    ) -> millrace::Result<(JobCounts, Instant)> {
        let mut kept = self.kept.lock().await;
        let generation = self.generation.load(Ordering::Acquire);
        if let Some((counts, at, _)) = kept.as_ref().filter(|k| k.2 == generation) {
            let age = at.elapsed();
            if age < FRESH_FOR {
                return Ok((counts.clone(), *at));
            }
            if age < STALE_FOR {
                if !self.refreshing.swap(true, Ordering::AcqRel) {
                    let (cache, client) = (Arc::clone(self), client.clone());
                    tokio::spawn(async move {
                        // A failed recount leaves the kept count to age out; the next request
                        // past STALE_FOR then counts itself and shows the error.
                        if let Ok(counts) = client.job_counts().await {
                            *cache.kept.lock().await = Some((counts, Instant::now(), generation));
                        }
                        cache.refreshing.store(false, Ordering::Release);
                    });
                }
                return Ok((counts.clone(), *at));
            }
        }
        let counts = client.job_counts().await?;
        let at = Instant::now();
        *kept = Some((counts.clone(), at, generation));
        Ok((counts, at))
    }

    /// Drops the kept count, so the next page counts afresh: every action calls it (through
    /// the audit record), and the page it redirects to shows the change.
    pub(crate) fn forget(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}
