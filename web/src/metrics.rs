//! Queue-level figures from the database, for `GET /metrics` on the web process (Prometheus
//! scrapes one web process; each worker serves its own per-process figures with
//! `jobq worker --metrics-bind`). Every scrape reads the database afresh: a few grouped
//! queries, the same ones `jobq stats` and the overview page run.
//!
//! - `jobq_queue_jobs{queue,state}`: jobs in each state, every state listed (0 included) for
//!   every queue that has jobs or a row in `jobq_queues`;
//! - `jobq_queue_oldest_available_age_seconds{queue}`: how long the oldest due job has waited to
//!   be fetched (0 when none waits);
//! - `jobq_queue_paused{queue}`: 1 when the queue is paused;
//! - `jobq_workers_live`: worker processes whose heartbeat is recent;
//! - `jobq_queue_outcomes_last_minute{queue,outcome}`: attempts that ended `completed`,
//!   `retried`, `failed` or `cancelled` in the last complete minute (all kinds, all workers,
//!   from `jobq_stats`);
//! - `jobq_queue_outcomes_last_hour{queue,outcome}`: the same over the last 60 minutes, the
//!   current one included;
//! - `jobq_outcomes_total{queue,kind,outcome}`: a counter of the attempts that ended each way
//!   since the database was created, all workers (`jobq_outcome_totals`, never pruned; every
//!   outcome listed, 0 included, for each queue and kind that has one).
//!
//! [`handler`] serves them at `GET /metrics` to admins (Prometheus sends
//! `Authorization: Bearer TOKEN`: `authorization: {credentials_file: ...}` in its scrape config).

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, DurationRound, Utc};
use jobs::driver::OutcomeTotal;
use jobs::metrics::prometheus_client::metrics::counter::Counter;
use jobs::metrics::prometheus_client::metrics::family::Family;
use jobs::metrics::prometheus_client::metrics::gauge::Gauge;
use jobs::metrics::{KindQueueOutcome, OUTCOMES, QueueLabel, QueueOutcome, QueueState, Registry};
use jobs::queue::QueueError;
use jobs::{JobState, Queue};

pub use jobs::metrics::Format;

use crate::AppState;
use crate::auth::Admin;

/// `GET /metrics`, for admins: a worker counts as live as on the overview.
/// In the format the scraper's `Accept` header asks for ([`Format::negotiate`]).
pub(crate) async fn handler(
    State(state): State<AppState>,
    _admin: Admin,
    headers: HeaderMap,
) -> Response {
    let format = Format::negotiate(
        headers
            .get(header::ACCEPT)
            .and_then(|accept| accept.to_str().ok()),
    );
    let figures = render_queue_metrics(&state.inner.queue, state.inner.worker_stale_after, format);
    match figures.await {
        Ok(text) => ([(header::CONTENT_TYPE, format.content_type())], text).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot read the queue for /metrics");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot read the queue; see the web process's log\n",
            )
                .into_response()
        }
    }
}

/// The queue-level figures in `format`. A worker counts as live when its last heartbeat is
/// within `live_within` (e.g. three times `worker.heartbeat_interval`).
pub async fn render_queue_metrics(
    queue: &Queue,
    live_within: Duration,
    format: Format,
) -> Result<String, QueueError> {
    render_queue_metrics_at(queue, live_within, Utc::now(), format).await
}

/// [`render_queue_metrics`] as of `now` (which decides the last minute and hour).
pub async fn render_queue_metrics_at(
    queue: &Queue,
    live_within: Duration,
    now: DateTime<Utc>,
    format: Format,
) -> Result<String, QueueError> {
    let driver = queue.driver();
    let counts = driver.state_counts().await?;
    let queues = driver.queues().await?;
    let workers = driver.workers().await?;
    let this_minute = minute_of(now);
    let hour_ago = this_minute - chrono::Duration::minutes(59);
    let outcomes = driver.outcome_series(hour_ago).await?;
    let totals = driver.outcome_totals().await?;

    let mut registry = Registry::default();

    let depth = Family::<QueueState, Gauge>::default();
    registry.register(
        "jobq_queue_jobs",
        "Jobs in each queue and state",
        depth.clone(),
    );
    let names: BTreeSet<&str> = queues
        .iter()
        .map(|q| q.name.as_str())
        .chain(counts.iter().map(|c| c.queue.as_str()))
        .collect();
    for name in &names {
        for state in JobState::ALL {
            let _ = depth.get_or_create(&QueueState {
                queue: name.to_string(),
                state: state.as_str().to_string(),
            });
        }
    }
    for count in &counts {
        depth
            .get_or_create(&QueueState {
                queue: count.queue.clone(),
                state: count.state.as_str().to_string(),
            })
            .set(count.count);
    }

    let oldest = Family::<QueueLabel, Gauge<f64, AtomicU64>>::default();
    registry.register(
        "jobq_queue_oldest_available_age_seconds",
        "How long the oldest due job of each queue has waited to be fetched (0 when none waits)",
        oldest.clone(),
    );
    let paused = Family::<QueueLabel, Gauge>::default();
    registry.register(
        "jobq_queue_paused",
        "1 when the queue is paused",
        paused.clone(),
    );
    for info in &queues {
        let label = QueueLabel {
            queue: info.name.clone(),
        };
        oldest
            .get_or_create(&label)
            .set(info.oldest_available_age_s.unwrap_or(0.0).max(0.0));
        paused.get_or_create(&label).set(i64::from(info.paused));
    }

    let live = Gauge::<i64>::default();
    registry.register(
        "jobq_workers_live",
        "Worker processes whose last heartbeat is recent",
        live.clone(),
    );
    let since = now - chrono::Duration::from_std(live_within).unwrap_or(chrono::Duration::MAX);
    let live_count = workers.iter().filter(|w| w.heartbeat_at >= since).count();
    live.set(i64::try_from(live_count).unwrap_or(i64::MAX));

    let last_minute = Family::<QueueOutcome, Gauge>::default();
    registry.register(
        "jobq_queue_outcomes_last_minute",
        "Attempts that ended each way in the last complete minute, all workers",
        last_minute.clone(),
    );
    let last_hour = Family::<QueueOutcome, Gauge>::default();
    registry.register(
        "jobq_queue_outcomes_last_hour",
        "Attempts that ended each way in the last 60 minutes (this one included), all workers",
        last_hour.clone(),
    );
    let previous_minute = this_minute - chrono::Duration::minutes(1);
    for row in &outcomes {
        if row.minute < hour_ago || row.minute > this_minute {
            continue;
        }
        let label = QueueOutcome {
            queue: row.queue.clone(),
            outcome: row.outcome.clone(),
        };
        last_hour.get_or_create(&label).inc_by(row.count);
        let minute = last_minute.get_or_create(&label);
        if row.minute == previous_minute {
            minute.inc_by(row.count);
        }
    }

    register_totals(&mut registry, &totals);
    Ok(jobs::metrics::render(&registry, format))
}

fn minute_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(chrono::Duration::minutes(1)).unwrap_or(t)
}

/// `jobq_outcomes_total`: every outcome of each queue and kind counted so far, at zero when
/// none ended that way yet.
fn register_totals(registry: &mut Registry, totals: &[OutcomeTotal]) {
    let family = Family::<KindQueueOutcome, Counter>::default();
    registry.register(
        "jobq_outcomes",
        "Attempts that ended each way since the database was created, all workers",
        family.clone(),
    );
    for total in totals {
        for outcome in OUTCOMES {
            let _ = family.get_or_create(&KindQueueOutcome {
                kind: total.kind.clone(),
                queue: total.queue.clone(),
                outcome: outcome.to_string(),
            });
        }
    }
    for total in totals {
        family
            .get_or_create(&KindQueueOutcome {
                kind: total.kind.clone(),
                queue: total.queue.clone(),
                outcome: total.outcome.clone(),
            })
            .inc_by(u64::try_from(total.count).unwrap_or(0));
    }
}
