//! Periodic jobs: interval and cron schedules, RunOnStart, ids, added and removed at run time.
//!
//! Unlike River's in-memory schedule, the next run of each periodic job *with an id* is kept in
//! `millrace_periodic_job`, and moved forward in the same transaction that inserts the run's job,
//! conditional on the value read. So a change of the client that schedules (the Millrace
//! leaseholder) neither skips a run nor inserts it twice, runs missed while no client was up
//! coalesce into one, and RunOnStart fires only when no next run is stored. Jobs without an id
//! are scheduled in memory, as River does.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::insert_opts::InsertOpts;
use crate::insert_params::InsertManyParams;
use crate::job_args::JobArgs;

/// Metadata key marking jobs a periodic job inserted, as River does.
pub const METADATA_PERIODIC: &str = "periodic";
/// Metadata key holding the periodic job's id, as River does.
pub const METADATA_PERIODIC_JOB_ID: &str = "river:periodic_job_id";

/// When a periodic job runs.
///
/// ```
/// use std::time::Duration;
/// use millrace::Schedule;
///
/// let every_15_minutes = Schedule::interval(Duration::from_secs(900));
/// let weekday_mornings = Schedule::cron("0 9 * * MON-FRI").unwrap();
/// let paris_midnight = Schedule::cron_in("0 0 * * *", "Europe/Paris").unwrap();
/// assert!(Schedule::cron("not a schedule").is_err());
/// ```
#[derive(Clone)]
pub struct Schedule(ScheduleKind);

#[derive(Clone)]
enum ScheduleKind {
    Interval(Duration),
    Cron(Box<CronSchedule>),
}

#[derive(Clone)]
struct CronSchedule {
    pattern: String,
    cron: croner::Cron,
    tz: TimeZone,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            ScheduleKind::Interval(d) => write!(f, "Schedule::interval({d:?})"),
            ScheduleKind::Cron(c) => write!(
                f,
                "Schedule::cron({:?}, {:?})",
                c.pattern,
                c.tz.iana_name().unwrap_or("UTC")
            ),
        }
    }
}

/// The schedule in words, as the dashboard shows it: `every 15 min`, `cron 0 9 * * MON-FRI`,
/// `cron 0 0 * * * (Europe/Paris)`.
///
/// ```
/// use millrace::Schedule;
/// use std::time::Duration;
///
/// assert_eq!(Schedule::interval(Duration::from_secs(900)).to_string(), "every 15 min");
/// assert_eq!(Schedule::cron("0 9 * * MON-FRI").unwrap().to_string(), "cron 0 9 * * MON-FRI");
/// ```
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            ScheduleKind::Interval(d) => {
                let secs = d.as_secs();
                if d.subsec_nanos() != 0 || secs == 0 {
                    write!(f, "every {d:?}")
                } else if secs % 3600 == 0 {
                    write!(f, "every {} h", secs / 3600)
                } else if secs % 60 == 0 {
                    write!(f, "every {} min", secs / 60)
                } else {
                    write!(f, "every {secs} s")
                }
            }
            ScheduleKind::Cron(c) => match c.tz.iana_name() {
                Some(tz) if tz != "UTC" => write!(f, "cron {} ({tz})", c.pattern),
                _ => write!(f, "cron {}", c.pattern),
            },
        }
    }
}

impl Schedule {
    /// Every `every`, counted from the previous run.
    pub fn interval(every: Duration) -> Self {
        Schedule(ScheduleKind::Interval(every))
    }

    /// A standard five-field cron expression (`min hour day month weekday`), in UTC.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an expression that does not parse.
    pub fn cron(pattern: &str) -> Result<Self> {
        Self::cron_with(pattern, TimeZone::UTC)
    }

    /// A cron expression evaluated in an IANA time zone, such as `Europe/Paris`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an expression that does not parse or an unknown zone.
    pub fn cron_in(pattern: &str, time_zone: &str) -> Result<Self> {
        let tz = TimeZone::get(time_zone)
            .map_err(|err| Error::Config(format!("unknown time zone {time_zone:?}: {err}")))?;
        Self::cron_with(pattern, tz)
    }

    fn cron_with(pattern: &str, tz: TimeZone) -> Result<Self> {
        let cron = croner::Cron::from_str(pattern)
            .map_err(|err| Error::Config(format!("invalid cron expression {pattern:?}: {err}")))?;
        Ok(Schedule(ScheduleKind::Cron(Box::new(CronSchedule {
            pattern: pattern.to_owned(),
            cron,
            tz,
        }))))
    }

    /// The first run strictly after `after`; `None` if there is none.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match &self.0 {
            ScheduleKind::Interval(every) => after.checked_add(*every).ok(),
            ScheduleKind::Cron(c) => c
                .cron
                .find_next_occurrence(&after.to_zoned(c.tz.clone()), false)
                .ok()
                .map(|z| z.timestamp()),
        }
    }
}

type MakeJob = Arc<dyn Fn() -> InsertManyParams + Send + Sync>;

/// A job inserted on a schedule.
///
/// ```
/// use std::time::Duration;
/// use millrace::{JobArgs, PeriodicJob, Schedule};
///
/// #[derive(serde::Serialize)]
/// struct Cleanup {}
/// impl JobArgs for Cleanup {
///     const KIND: &'static str = "cleanup";
/// }
///
/// let job = PeriodicJob::new(Schedule::interval(Duration::from_secs(3600)), || (Cleanup {}, None))
///     .id("hourly_cleanup")
///     .run_on_start(true);
/// ```
#[derive(Clone)]
pub struct PeriodicJob {
    pub(crate) schedule: Schedule,
    make: MakeJob,
    pub(crate) run_on_start: bool,
    pub(crate) id: Option<String>,
}

impl fmt::Debug for PeriodicJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeriodicJob")
            .field("schedule", &self.schedule)
            .field("run_on_start", &self.run_on_start)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl PeriodicJob {
    /// A periodic job inserting what `make` returns at each run.
    pub fn new<A, F>(schedule: Schedule, make: F) -> Self
    where
        A: JobArgs,
        F: Fn() -> (A, Option<InsertOpts>) + Send + Sync + 'static,
    {
        PeriodicJob {
            schedule,
            make: Arc::new(move || {
                let (args, opts) = make();
                InsertManyParams::new(args).opts(opts.unwrap_or_default())
            }),
            run_on_start: false,
            id: None,
        }
    }

    /// Inserts a job as soon as a client starts scheduling, unless a next run is already
    /// stored for this job's id. Defaults to false.
    #[must_use]
    pub fn run_on_start(mut self, run_on_start: bool) -> Self {
        self.run_on_start = run_on_start;
        self
    }

    /// An id, recorded in each job's metadata as `river:periodic_job_id` and used to keep the
    /// next run in the database across clients and restarts.
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Resolves one run's job as the enqueuer will insert it, so that options or args an
    /// insert would refuse are refused when the job is added, with the insert's own error,
    /// instead of failing at every run with only a log line to show for it (issue 21).
    fn validate(&self, client_opts: &InsertOpts, now: Timestamp) -> Result<()> {
        let params = self.params();
        match params.resolve(client_opts, now) {
            Ok(_) => Ok(()),
            Err(Error::InvalidInsert(message)) => {
                let which = match &self.id {
                    Some(id) => format!("periodic job {id:?}"),
                    None => format!("periodic job of kind {:?}", params.kind()),
                };
                Err(Error::InvalidInsert(format!("{which}: {message}")))
            }
            Err(err) => Err(err),
        }
    }

    pub(crate) fn params(&self) -> InsertManyParams {
        let mut meta = serde_json::Map::new();
        meta.insert(METADATA_PERIODIC.to_owned(), true.into());
        if let Some(id) = &self.id {
            meta.insert(METADATA_PERIODIC_JOB_ID.to_owned(), id.clone().into());
        }
        (self.make)().extra_metadata(meta)
    }
}

/// Identifies a periodic job added to a client, to remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeriodicJobHandle(u64);

/// The periodic jobs of a client, shared with its scheduling service.
#[derive(Debug)]
pub(crate) struct PeriodicRegistry {
    jobs: Mutex<(u64, Vec<(u64, PeriodicJob)>)>,
    pub(crate) changed: Notify,
    /// The client's insert options, which each run's job inherits, to validate jobs with.
    insert_opts: InsertOpts,
    /// The client's test clock, if any: the time a job is validated at, as it is inserted at.
    clock: Clock,
}

impl PeriodicRegistry {
    pub(crate) fn new(insert_opts: InsertOpts, clock: Clock) -> Self {
        PeriodicRegistry {
            jobs: Mutex::default(),
            changed: Notify::new(),
            insert_opts,
            clock,
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<(u64, PeriodicJob)> {
        self.jobs.lock().expect("lock poisoned").1.clone()
    }
}

/// Adds and removes a client's periodic jobs, also while it runs.
///
/// ```no_run
/// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
/// # #[derive(serde::Serialize)] struct Report {}
/// # impl millrace::JobArgs for Report { const KIND: &'static str = "report"; }
/// use millrace::{PeriodicJob, Schedule};
/// let handle = client
///     .periodic_jobs()
///     .add(PeriodicJob::new(Schedule::cron("0 * * * *")?, || (Report {}, None)).id("hourly_report"))?;
/// client.periodic_jobs().remove(handle);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PeriodicJobs {
    registry: Arc<PeriodicRegistry>,
}

impl PeriodicJobs {
    pub(crate) fn new(registry: Arc<PeriodicRegistry>) -> Self {
        PeriodicJobs { registry }
    }

    pub(crate) fn registry(&self) -> Arc<PeriodicRegistry> {
        self.registry.clone()
    }

    /// Adds a periodic job.
    ///
    /// The job's closure is called once here, and the job it returns is checked as an insert
    /// checks it, with the client's insert options, so that a mistake (a unique by-state list
    /// without `pending`, a priority out of range, an invalid queue or kind...) is refused now
    /// rather than logged at every run. A closure that returns different options on later
    /// calls is checked again at each run.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when another periodic job has the same id, or the id is empty or
    /// 128 bytes or more. [`Error::InvalidInsert`] or [`Error::ArgsEncode`], as
    /// [`Client::insert`](crate::Client::insert) returns them, when the job's options or args
    /// are invalid; the message names the periodic job.
    pub fn add(&self, job: PeriodicJob) -> Result<PeriodicJobHandle> {
        let now = self.registry.clock.now();
        job.validate(&self.registry.insert_opts, now)?;
        let mut jobs = self.registry.jobs.lock().expect("lock poisoned");
        if let Some(id) = &job.id {
            if id.is_empty() || id.len() >= 128 {
                return Err(Error::Config(format!(
                    "periodic job id {id:?} must be 1 to 127 bytes"
                )));
            }
            if jobs.1.iter().any(|(_, j)| j.id.as_deref() == Some(id)) {
                return Err(Error::Config(format!(
                    "a periodic job with id {id:?} is already added"
                )));
            }
        }
        jobs.0 += 1;
        let handle = jobs.0;
        jobs.1.push((handle, job));
        drop(jobs);
        self.registry.changed.notify_one();
        Ok(PeriodicJobHandle(handle))
    }

    /// Removes a periodic job; returns whether it was there. Its stored next run is kept, so
    /// adding it again with the same id resumes its schedule.
    pub fn remove(&self, handle: PeriodicJobHandle) -> bool {
        let mut jobs = self.registry.jobs.lock().expect("lock poisoned");
        let before = jobs.1.len();
        jobs.1.retain(|(h, _)| *h != handle.0);
        let removed = jobs.1.len() != before;
        drop(jobs);
        self.registry.changed.notify_one();
        removed
    }

    /// Removes the periodic job with this id; returns whether it was there.
    pub fn remove_by_id(&self, id: &str) -> bool {
        let mut jobs = self.registry.jobs.lock().expect("lock poisoned");
        let before = jobs.1.len();
        jobs.1.retain(|(_, j)| j.id.as_deref() != Some(id));
        let removed = jobs.1.len() != before;
        drop(jobs);
        self.registry.changed.notify_one();
        removed
    }

    /// The named periodic jobs (those given an [`id`](PeriodicJob::id)) and their schedules,
    /// in the order they were added: what the dashboard shows beside each durable schedule.
    ///
    /// ```
    /// # fn example<D: millrace::Driver>(client: &millrace::Client<D>) {
    /// for (id, schedule) in client.periodic_jobs().schedules() {
    ///     println!("{id}: {schedule}");
    /// }
    /// # }
    /// ```
    pub fn schedules(&self) -> Vec<(String, Schedule)> {
        let jobs = self.registry.jobs.lock().expect("lock poisoned");
        jobs.1
            .iter()
            .filter_map(|(_, j)| Some((j.id.clone()?, j.schedule.clone())))
            .collect()
    }

    /// How many periodic jobs there are.
    pub fn len(&self) -> usize {
        self.registry.jobs.lock().expect("lock poisoned").1.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_counts_from_the_previous_run() {
        let at: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let next = Schedule::interval(Duration::from_secs(90))
            .next_after(at)
            .unwrap();
        assert_eq!(next.to_string(), "2024-01-01T00:01:30Z");
    }

    #[test]
    fn cron_follows_its_time_zone() {
        let at: Timestamp = "2024-01-01T10:30:00Z".parse().unwrap();
        let utc = Schedule::cron("0 12 * * *")
            .unwrap()
            .next_after(at)
            .unwrap();
        assert_eq!(utc.to_string(), "2024-01-01T12:00:00Z");
        // Noon in Paris (UTC+1 in winter) is 11:00 UTC.
        let paris = Schedule::cron_in("0 12 * * *", "Europe/Paris")
            .unwrap()
            .next_after(at)
            .unwrap();
        assert_eq!(paris.to_string(), "2024-01-01T11:00:00Z");
        assert!(Schedule::cron_in("0 12 * * *", "Mars/Olympus").is_err());
    }
}
