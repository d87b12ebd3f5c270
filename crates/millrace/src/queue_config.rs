/// How a client works one queue.
///
/// ```
/// use millrace::QueueConfig;
///
/// let config = QueueConfig::new().max_workers(50);
/// assert_eq!(config.max_workers, 50);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueConfig {
    /// The most jobs of this queue the client works at once, 1 to 10,000. Defaults to 100.
    pub max_workers: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig { max_workers: 100 }
    }
}

impl QueueConfig {
    /// The most jobs worked at once: 1 to 10,000, as in River.
    pub const MAX_WORKERS_LIMIT: usize = 10_000;

    /// 100 workers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the most jobs worked at once.
    #[must_use]
    pub fn max_workers(mut self, max_workers: usize) -> Self {
        self.max_workers = max_workers;
        self
    }
}
