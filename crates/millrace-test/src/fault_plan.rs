//! The chaos soak's fault schedule: which fault hits what, when, and for how long, drawn from
//! one seed so that a failing run can be replayed.
//!
//! The plan is drawn in full before the soak starts and printed with the seed; the soak then
//! applies it on the clock. Replaying a seed replays the plan exactly; where each fault lands in
//! the jobs' lives still depends on timing, which is why a soak runs many faults.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One kind of fault the soak injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// SIGKILL a worker process; a new one starts after the hold.
    KillWorker,
    /// SIGSTOP a worker for longer than its lease, then SIGCONT.
    PauseWorker,
    /// Crash PostgreSQL (`pg_ctl stop -m immediate`) and start it after the hold.
    RestartPostgres,
    /// `pg_terminate_backend` every connection of the fleet.
    TerminateBackends,
    /// Deliver nothing between one worker and PostgreSQL for the hold.
    Blackhole,
    /// Delay every chunk between one worker and PostgreSQL for the hold.
    Latency,
    /// Reset every connection between one worker and PostgreSQL.
    ResetConnections,
    /// Close the server's end of one worker's connections and leave the worker's end open
    /// and silent for the hold.
    HalfOpen,
    /// Insert rows no client can decode, by raw SQL, as another client or a hand might.
    HostileRows,
    /// Fill the SQLite database to its `max_page_count` for the hold, then free it.
    DiskFull,
    /// Hold SQLite's write lock from another process for the hold.
    WriteLock,
}

impl FaultKind {
    /// The faults a PostgreSQL soak draws from.
    pub const POSTGRES: &'static [FaultKind] = &[
        FaultKind::KillWorker,
        FaultKind::PauseWorker,
        FaultKind::RestartPostgres,
        FaultKind::TerminateBackends,
        FaultKind::Blackhole,
        FaultKind::Latency,
        FaultKind::ResetConnections,
        FaultKind::HalfOpen,
        FaultKind::HostileRows,
    ];

    /// The faults a SQLite soak draws from.
    pub const SQLITE: &'static [FaultKind] = &[
        FaultKind::KillWorker,
        FaultKind::PauseWorker,
        FaultKind::DiskFull,
        FaultKind::WriteLock,
    ];

    /// Whether the fault hits one worker rather than the whole fleet.
    pub fn targets_worker(self) -> bool {
        matches!(
            self,
            FaultKind::KillWorker
                | FaultKind::PauseWorker
                | FaultKind::Blackhole
                | FaultKind::Latency
                | FaultKind::ResetConnections
                | FaultKind::HalfOpen
        )
    }

    /// A short name for timelines and figures.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillWorker => "kill -9 worker",
            FaultKind::PauseWorker => "SIGSTOP worker",
            FaultKind::RestartPostgres => "restart postgres",
            FaultKind::TerminateBackends => "terminate backends",
            FaultKind::Blackhole => "blackhole",
            FaultKind::Latency => "latency",
            FaultKind::ResetConnections => "reset connections",
            FaultKind::HalfOpen => "half-open",
            FaultKind::HostileRows => "hostile rows",
            FaultKind::DiskFull => "disk full",
            FaultKind::WriteLock => "write lock",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One fault of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFault {
    /// When it starts, from the start of the soak.
    pub at: Duration,
    /// What it is.
    pub kind: FaultKind,
    /// The worker it hits, for faults that hit one ([`FaultKind::targets_worker`]).
    pub worker: usize,
    /// How long it lasts (the outage, the pause, the time before a killed worker's successor
    /// starts); zero for instant faults.
    pub hold: Duration,
    /// The added delay of a [`FaultKind::Latency`] fault; zero otherwise.
    pub delay: Duration,
}

/// Settings of [`FaultPlan::generate`].
#[derive(Debug, Clone)]
pub struct PlanSettings {
    /// How long the faults go on; the plan schedules none later.
    pub span: Duration,
    /// How many worker processes a fault may target.
    pub workers: usize,
    /// The faults to draw from, each equally likely.
    pub menu: Vec<FaultKind>,
    /// The heartbeat and persistent leases of the workers: pauses and blackholes are drawn
    /// around it so that some outlast it and some do not.
    pub lease: Duration,
    /// The mean time between two faults' starts.
    pub mean_gap: Duration,
}

/// A schedule of faults drawn from one seed.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use millrace_test::fault_plan::{FaultKind, FaultPlan, PlanSettings};
///
/// let settings = PlanSettings {
///     span: Duration::from_secs(60),
///     workers: 3,
///     menu: FaultKind::POSTGRES.to_vec(),
///     lease: Duration::from_secs(4),
///     mean_gap: Duration::from_secs(2),
/// };
/// let plan = FaultPlan::generate(42, &settings);
/// assert_eq!(plan, FaultPlan::generate(42, &settings)); // a seed replays its plan
/// assert!(!plan.faults.is_empty());
/// println!("{}", plan.timeline());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultPlan {
    /// The seed it was drawn from.
    pub seed: u64,
    /// The faults, by start time.
    pub faults: Vec<PlannedFault>,
}

impl FaultPlan {
    /// Draws a plan. A worker suffers one fault at a time, and PostgreSQL restarts one at a
    /// time; other faults overlap freely, as outages do. The plan holds at most one fault per
    /// quarter of the mean gap, so it is bounded whatever the settings.
    pub fn generate(seed: u64, settings: &PlanSettings) -> FaultPlan {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        let gap = ms(settings.mean_gap);
        let lease = ms(settings.lease);
        let workers = settings.workers.max(1);
        let mut busy_until = vec![Duration::ZERO; workers];
        let mut fleet_busy_until = Duration::ZERO;
        let mut faults = Vec::new();
        let mut at = Duration::from_millis(rng.random_range(gap / 2..=gap * 3 / 2));
        let most = ms(settings.span) / (gap / 4).max(1) + 1;
        while at < settings.span && (faults.len() as u64) < most && !settings.menu.is_empty() {
            let kind = settings.menu[rng.random_range(0..settings.menu.len())];
            let worker = rng.random_range(0..workers);
            let (hold, delay) = match kind {
                FaultKind::KillWorker => (rng.random_range(200..2_000), 0),
                // Longer than the lease, so its jobs are rescued while it sleeps.
                FaultKind::PauseWorker => (lease + rng.random_range(500..3_000), 0),
                FaultKind::RestartPostgres => (rng.random_range(500..4_000), 0),
                // Around the lease: some blackholes outlast it, some do not.
                FaultKind::Blackhole => (rng.random_range(lease / 4..lease * 2), 0),
                FaultKind::Latency => (rng.random_range(1_000..5_000), rng.random_range(20..400)),
                FaultKind::HalfOpen => (rng.random_range(500..lease * 2), 0),
                FaultKind::DiskFull => (rng.random_range(500..4_000), 0),
                FaultKind::WriteLock => (rng.random_range(500..6_000), 0),
                FaultKind::TerminateBackends
                | FaultKind::ResetConnections
                | FaultKind::HostileRows => (0, 0),
            };
            let hold = Duration::from_millis(hold);
            let free = if kind.targets_worker() {
                busy_until[worker] <= at
            } else if matches!(
                kind,
                FaultKind::RestartPostgres | FaultKind::DiskFull | FaultKind::WriteLock
            ) {
                fleet_busy_until <= at
            } else {
                true
            };
            if free {
                // A second after the fault ends, the target may be hit again.
                let end = at + hold + Duration::from_secs(1);
                if kind.targets_worker() {
                    busy_until[worker] = end;
                } else if matches!(
                    kind,
                    FaultKind::RestartPostgres | FaultKind::DiskFull | FaultKind::WriteLock
                ) {
                    fleet_busy_until = end;
                }
                faults.push(PlannedFault {
                    at,
                    kind,
                    worker: if kind.targets_worker() { worker } else { 0 },
                    hold,
                    delay: Duration::from_millis(delay),
                });
            }
            at += Duration::from_millis(rng.random_range(gap / 4..=gap * 7 / 4));
        }
        FaultPlan { seed, faults }
    }

    /// How many faults of each kind the plan holds.
    pub fn counts(&self) -> BTreeMap<FaultKind, usize> {
        let mut counts = BTreeMap::new();
        for fault in &self.faults {
            *counts.entry(fault.kind).or_insert(0) += 1;
        }
        counts
    }

    /// The plan as text, one fault a line, headed by its seed: what a failure prints so it
    /// can be replayed.
    pub fn timeline(&self) -> String {
        let mut out = format!(
            "fault plan of seed {} ({} faults):\n",
            self.seed,
            self.faults.len()
        );
        for fault in &self.faults {
            out.push_str(&format!("  {:>8.1?}  {}", fault.at, fault.kind));
            if fault.kind.targets_worker() {
                out.push_str(&format!(" on worker {}", fault.worker));
            }
            if !fault.hold.is_zero() {
                out.push_str(&format!(" for {:.1?}", fault.hold));
            }
            if !fault.delay.is_zero() {
                out.push_str(&format!(" (+{:?} each way)", fault.delay));
            }
            out.push('\n');
        }
        out
    }
}
