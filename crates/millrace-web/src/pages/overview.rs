//! The overview: jobs by state and by queue, the last hour's throughput and failures as a
//! chart, and each queue's oldest available job.
//!
//! Nothing here scans the table: each final state's count stops at [`STATE_CAP`] (an index
//! range on PostgreSQL's `(state, …)` indexes), the per-queue table counts only the states that are
//! not final, and the chart is one histogram over a range of the `(state, finalized_at)`
//! index ([`millrace::Client::job_finalized_histogram`]). Past its cap, a final state's card
//! adds PostgreSQL's own estimate from its statistics ([`millrace::Client::job_state_estimates`]).
//! The live states' per-queue count, the one read that grows with the backlog, is shared
//! across requests for a moment and recounted in the background ([`crate::cache`]).

use axum::extract::{Extension, State};
use axum::response::Response;
use futures_util::future::try_join_all;
use jiff::{Timestamp, ToSpan as _};
use maud::{Markup, html};
use millrace::{Driver, JobListParams, JobState};

use super::{capped, state_badge};
use crate::app::{App, AppState, Ctx};
use crate::error::PageError;
use crate::layout::{self, Nav, Page};

/// Where a state's count stops.
pub(crate) const STATE_CAP: i64 = 10_000;
/// The chart's buckets: twelve of five minutes.
const BUCKETS: usize = 12;
const BUCKET_MINUTES: i64 = 5;

pub(crate) async fn page<D: Driver>(
    State(app): State<AppState<D>>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    match build(&app).await {
        Ok(body) => layout::respond(
            &app,
            &ctx,
            Page {
                title: "Overview".to_owned(),
                nav: Nav::Overview,
                live: true,
                body,
            },
        ),
        Err(err) => layout::error(&app, &ctx, err),
    }
}

async fn build<D: Driver>(app: &App<D>) -> Result<Markup, PageError> {
    let client = &app.client;
    // The live states come exactly from the per-queue counts; only the final states, which
    // hold the history, are counted separately, each up to its cap.
    let finalized: Vec<JobState> = JobState::ALL
        .into_iter()
        .filter(|s| s.is_finalized())
        .collect();
    let by_state =
        try_join_all(finalized.iter().map(|&state| {
            client.job_count_capped(JobListParams::new().states([state]), STATE_CAP)
        }));
    let now = Timestamp::now();
    let since = now - (BUCKETS as i64 * BUCKET_MINUTES).minutes();
    let bucket = std::time::Duration::from_secs(BUCKET_MINUTES as u64 * 60);
    let (by_state, estimates, histogram, counts, lags) = tokio::try_join!(
        by_state,
        client.job_state_estimates(),
        client.job_finalized_histogram(since, bucket),
        app.counts.get(client),
        client.queue_lag(),
    )?;
    let (counts, counted_at) = counts;
    let mut ok = [0i64; BUCKETS];
    let mut failed = [0i64; BUCKETS];
    for b in &histogram {
        let i =
            usize::try_from((b.start - since).get_seconds() / (BUCKET_MINUTES * 60)).unwrap_or(0);
        match (b.state, ok.get_mut(i), failed.get_mut(i)) {
            (JobState::Completed, Some(n), _) => *n += b.count,
            (JobState::Discarded, _, Some(n)) => *n += b.count,
            _ => {}
        }
    }
    let (ok_total, failed_total): (i64, i64) = (ok.iter().sum(), failed.iter().sum());
    let rate = if ok_total + failed_total > 0 {
        format!(
            "{:.1}%",
            failed_total as f64 * 100.0 / (ok_total + failed_total) as f64
        )
    } else {
        "–".to_owned()
    };
    let live_states: Vec<JobState> = JobState::ALL
        .into_iter()
        .filter(|s| !s.is_finalized())
        .collect();
    let state_count = |state: JobState| -> i64 {
        finalized
            .iter()
            .position(|s| *s == state)
            .map_or_else(|| counts.state_total(state), |i| by_state[i])
    };
    let jobs_link = |pairs: &[(&str, &str)]| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.extend_pairs(pairs);
        format!("{}?{}", app.path("/jobs"), q.finish())
    };

    Ok(html! {
        h1 { "Overview" }
        section.cards #state-counts {
            @for state in JobState::ALL {
                a.card href=(jobs_link(&[("state", state.as_str())])) data-state=(state.as_str()) {
                    div.card-label { (state_badge(state)) }
                    div.card-value { @if state.is_finalized() { (capped(state_count(state), STATE_CAP)) } @else { (layout::count(state_count(state))) }
                    }
                    // Past the cap, the planner's estimate says how far past.
                    @if state.is_finalized() && state_count(state) >= STATE_CAP {
                        @if let Some((_, about)) = estimates.iter().find(|(s, _)| *s == state) {
                            div.card-estimate.muted title="PostgreSQL's estimate, as of the table's last analyze" {
                                "≈ " (approx(*about))
                            }
                        } }
                }
            }
        }
        section {
            h2 { "Last hour" }
            p {
                (layout::count(ok_total)) " completed, " (layout::count(failed_total)) " discarded; "
                "failure rate " strong #failure-rate { (rate) }
            }
            (chart(&ok, &failed, now))
        }
        section {
            h2 { "Queues" }
            (counted(counted_at))
            table #queue-counts {
                thead { tr {
                    th { "Queue" }
                    @for s in &live_states { th.num { (s.as_str()) } }
                    th { "Oldest available" }
                } }
                tbody {
                    @for queue in counts.queues() {
                        tr {
                            td { a href=(jobs_link(&[("queue", queue)])) { (queue) } }
                            @for s in &live_states { td.num { (layout::count(counts.get(queue, *s))) } }
                            td {
                                @if let Some(lag) = lags.iter().find(|l| l.queue == queue) {
                                    (layout::human(lag.age)) " waiting"
                                } @else { span.muted { "none" } }
                            }
                        }
                    }
                    @if counts.counts.is_empty() {
                        tr { td colspan=(live_states.len() + 2) { span.muted { "No queued jobs." } } }
                    }
                }
            }
        }
    })
}

/// How old the shared live counts are ([`crate::cache`]), once that is worth saying.
pub(crate) fn counted(at: std::time::Instant) -> Markup {
    let age = at.elapsed();
    html! {
        @if age >= std::time::Duration::from_secs(1) {
            p.muted.counted-at { "Live counts as of " (age.as_secs()) " s ago." }
        }
    }
}

/// A large count to two or three significant figures: `4.7M`, `147K`.
fn approx(n: i64) -> String {
    match n {
        1_000_000.. => format!("{:.1}M", n as f64 / 1e6),
        1_000.. => format!("{}K", n / 1_000),
        _ => n.to_string(),
    }
}

/// Bars per bucket, completed above the line, discarded below, in an inline SVG styled by the
/// stylesheet's classes (no style attributes, which the CSP forbids).
fn chart(ok: &[i64], failed: &[i64], now: Timestamp) -> Markup {
    const W: i64 = 720;
    const H: i64 = 180;
    const MID: i64 = 120;
    let max_ok = ok.iter().copied().max().unwrap_or(0).max(1);
    let max_failed = failed.iter().copied().max().unwrap_or(0).max(1);
    let slot = W / BUCKETS as i64;
    let bar = slot - 8;
    html! {
        svg.chart #throughput-chart viewBox={ "0 0 " (W) " " (H + 20) } role="img"
            aria-label="Jobs completed and discarded per five minutes over the last hour" {
            line.axis x1="0" y1=(MID) x2=(W) y2=(MID) {}
            @for (i, (&o, &f)) in ok.iter().zip(failed).enumerate() {
                @let x = i as i64 * slot + 4;
                @let ho = o * (MID - 10) / max_ok;
                @let hf = f * (H - MID - 10) / max_failed;
                rect.bar-ok x=(x) y=(MID - ho) width=(bar) height=(ho) {
                    title { (o) " completed" }
                }
                rect.bar-fail x=(x) y=(MID) width=(bar) height=(hf) {
                    title { (f) " discarded" }
                }
            }
            text.tick x="0" y=(H + 16) { (layout::relative(now - 60.minutes(), now)) }
            text.tick x=(W) y=(H + 16) text-anchor="end" { "now" }
        }
    }
}
