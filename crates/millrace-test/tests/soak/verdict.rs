//! The soak's figures and verdicts: what became of each fault, the recovery times per fault
//! kind, and the ledger's verdict.

use std::collections::BTreeMap;
use std::time::Duration;

use millrace_test::fault_plan::{FaultKind, FaultPlan};
use millrace_test::soak::LedgerReport;

use super::harness::LogDir;

pub(crate) fn assert_clean(seed: u64, plan: &FaultPlan, report: &LedgerReport, logs: &LogDir) {
    assert!(
        report.is_clean(),
        "seed {seed} broke the ledger ({report}):\n{}\n{}\nprocess logs in {}; replay with \
         SOAK_SEED={seed}",
        report.violations().join("\n"),
        plan.timeline(),
        logs.dir.display()
    );
}

pub(crate) fn print_figures(
    driver: &str,
    seed: u64,
    span: Duration,
    plan: &FaultPlan,
    report: &LedgerReport,
    recoveries: &[(FaultKind, Outcome)],
    elapsed: Duration,
) {
    let mut by_kind: BTreeMap<FaultKind, (Vec<Duration>, usize)> = BTreeMap::new();
    let mut skipped: BTreeMap<FaultKind, usize> = BTreeMap::new();
    for (kind, outcome) in recoveries {
        let entry = by_kind.entry(*kind).or_default();
        match outcome {
            Outcome::Recovered(took) => entry.0.push(*took),
            Outcome::NotRecovered => entry.1 += 1,
            Outcome::Skipped => *skipped.entry(*kind).or_default() += 1,
        }
    }
    eprintln!(
        "SOAK {driver} seed {seed}: faults for {span:?}, {elapsed:.1?} in all; {} faults; {report}",
        plan.faults.len()
    );
    eprintln!(
        "SOAK {driver} seed {seed}: recovery per fault kind (applied, p50, p95, max, not \
         recovered, skipped):"
    );
    for (kind, (mut times, missed)) in by_kind {
        times.sort();
        let pick = |q: f64| {
            times
                .get(((times.len() as f64 * q).ceil() as usize).saturating_sub(1))
                .map_or("-".to_owned(), |d| format!("{:.1}s", d.as_secs_f64()))
        };
        eprintln!(
            "SOAK   {:<20} {:>4} {:>7} {:>7} {:>7} {:>4} {:>4}",
            kind.name(),
            times.len() + missed,
            pick(0.5),
            pick(0.95),
            pick(1.0),
            missed,
            skipped.get(&kind).copied().unwrap_or(0)
        );
    }
}

/// What became of one fault.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    /// The fleet recovered this long after the fault (see `PgFaultCtx::recover`).
    Recovered(Duration),
    /// Not within the recovery deadline.
    NotRecovered,
    /// Not applied: its worker was still starting again after an earlier fault.
    Skipped,
}

impl From<Option<Duration>> for Outcome {
    fn from(took: Option<Duration>) -> Outcome {
        took.map_or(Outcome::NotRecovered, Outcome::Recovered)
    }
}
