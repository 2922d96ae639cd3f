//! Per-process worker metrics, and the tiny HTTP server that serves them at `GET /metrics`
//! (`jobq worker --metrics-bind ADDR:PORT`).
//!
//! Recording costs a few atomics per job: each fetch loop looks up its queue's handles once;
//! the completer, one task, does a family lookup (a read lock without contention) per finished
//! job. The registry also holds the families of [`jobs::metrics`] (enqueues, outside calls),
//! which count into statics shared by the whole process.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::get;
use jobs::driver::{FetchedJob, Finish, Finished};
use jobs::metrics::{Format, KindQueue, QueueLabel, Registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::executor::Done;

/// Execution-time buckets, seconds: 1 ms to 5 min.
pub const DURATION_BUCKETS: [f64; 17] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];
/// Queue-wait buckets, seconds: 5 ms to 1 h (a due job waits for a free slot, a worker, an
/// unpaused queue).
pub const QUEUE_WAIT_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
/// Completer batch sizes, jobs.
const BATCH_SIZE_BUCKETS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];
/// Completer write times, seconds: 100 µs to 10 s.
const WRITE_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn queue_wait_histogram() -> Histogram {
    Histogram::new(QUEUE_WAIT_BUCKETS)
}

/// One worker process's metrics.
pub struct WorkerMetrics {
    registry: Registry,
    completed: Family<KindQueue, Counter>,
    retried: Family<KindQueue, Counter>,
    failed: Family<KindQueue, Counter>,
    cancelled: Family<KindQueue, Counter>,
    snoozed: Family<KindQueue, Counter>,
    duration: HistogramFamily<KindQueue>,
    queue_wait: HistogramFamily<KindQueue>,
    running: Family<QueueLabel, Gauge>,
    fetches: Family<QueueLabel, Counter>,
    fetched: Family<QueueLabel, Counter>,
    rescued: Family<OutcomeLabel, Counter>,
    batch_size: Histogram,
    batch_seconds: Histogram,
}

/// The handles of one queue, looked up once by its fetch loop.
#[derive(Clone)]
pub(crate) struct QueueMetrics {
    pub running: Gauge,
    pub fetches: Counter,
    pub fetched: Counter,
}

/// Decrements the running gauge when an executor task ends, finished or aborted.
pub(crate) struct RunningGuard(Gauge);

impl RunningGuard {
    pub fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        RunningGuard(gauge.clone())
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<KindQueue, Counter>::default();
            registry.register(name, help, family.clone());
            family
        };
        let completed = counter(
            &mut registry,
            "jobq_jobs_completed",
            "Job attempts that succeeded in this process",
        );
        let retried = counter(
            &mut registry,
            "jobq_jobs_retried",
            "Job attempts that failed and were scheduled to run again",
        );
        let failed = counter(
            &mut registry,
            "jobq_jobs_failed",
            "Job attempts that failed for good (permanent error or no attempts left)",
        );
        let cancelled = counter(
            &mut registry,
            "jobq_jobs_cancelled",
            "Job attempts whose handler cancelled the job",
        );
        let snoozed = counter(
            &mut registry,
            "jobq_jobs_snoozed",
            "Job runs told \"not now\" (a 429, a limit or lock with no room): rescheduled \
             without spending an attempt",
        );
        let duration: HistogramFamily<KindQueue> = Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "jobq_job_duration",
            "Execution time of job attempts in this process, whatever their outcome",
            prometheus_client::registry::Unit::Seconds,
            duration.clone(),
        );
        let queue_wait: HistogramFamily<KindQueue> =
            Family::new_with_constructor(queue_wait_histogram);
        registry.register_with_unit(
            "jobq_job_queue_wait",
            "Time from a job being due (its run_at: enqueued, scheduled or put back for a retry) \
             to its claim by this process",
            prometheus_client::registry::Unit::Seconds,
            queue_wait.clone(),
        );
        let running = Family::<QueueLabel, Gauge>::default();
        registry.register(
            "jobq_jobs_running",
            "Jobs executing in this process now",
            running.clone(),
        );
        let fetches = Family::<QueueLabel, Counter>::default();
        registry.register(
            "jobq_fetches",
            "Claims made by this process's fetch loops",
            fetches.clone(),
        );
        let fetched = Family::<QueueLabel, Counter>::default();
        registry.register(
            "jobq_fetched_jobs",
            "Jobs claimed by this process's fetch loops",
            fetched.clone(),
        );
        let rescued = Family::<OutcomeLabel, Counter>::default();
        for outcome in ["retried", "failed"] {
            let _ = rescued.get_or_create(&OutcomeLabel { outcome });
        }
        registry.register(
            "jobq_jobs_rescued",
            "Jobs whose lease had expired (their worker died) taken back by this process's \
             rescuer: outcome retried or failed",
            rescued.clone(),
        );
        let batch_size = Histogram::new(BATCH_SIZE_BUCKETS);
        registry.register(
            "jobq_completer_batch_size",
            "Finished jobs written per completer batch",
            batch_size.clone(),
        );
        let batch_seconds = Histogram::new(WRITE_BUCKETS);
        registry.register_with_unit(
            "jobq_completer_write",
            "Time to write one completer batch, retries included",
            prometheus_client::registry::Unit::Seconds,
            batch_seconds.clone(),
        );
        jobs::metrics::register(&mut registry);
        WorkerMetrics {
            registry,
            completed,
            retried,
            failed,
            cancelled,
            snoozed,
            duration,
            queue_wait,
            running,
            fetches,
            fetched,
            rescued,
            batch_size,
            batch_seconds,
        }
    }

    /// Everything, in `format`.
    pub fn render(&self, format: Format) -> String {
        jobs::metrics::render(&self.registry, format)
    }

    /// Starts every per-kind family of the kinds this process runs at zero (and their
    /// queues' per-queue ones), so a series exists before its first event: a rate over it, or
    /// an alert on it, works from the start.
    pub fn expect(&self, kinds: impl IntoIterator<Item = (&'static str, String)>) {
        for (kind, queue) in kinds {
            let labels = KindQueue {
                kind: kind.to_string(),
                queue: queue.clone(),
            };
            for family in [
                &self.completed,
                &self.retried,
                &self.failed,
                &self.cancelled,
                &self.snoozed,
            ] {
                let _ = family.get_or_create(&labels);
            }
            let _ = self.duration.get_or_create(&labels);
            let _ = self.queue_wait.get_or_create(&labels);
            let _ = jobs::metrics::enqueued().get_or_create(&labels);
            let _ = self.queue(&queue);
        }
    }

    pub(crate) fn queue(&self, queue: &str) -> QueueMetrics {
        let label = QueueLabel {
            queue: queue.to_string(),
        };
        QueueMetrics {
            running: self.running.get_or_create_owned(&label),
            fetches: self.fetches.get_or_create_owned(&label),
            fetched: self.fetched.get_or_create_owned(&label),
        }
    }

    /// An attempt recorded by the completer.
    pub(crate) fn finished(&self, done: &Done) {
        let labels = KindQueue {
            kind: done.kind.clone(),
            queue: done.queue.clone(),
        };
        let outcome = match done.finished.finish {
            Finish::Completed => &self.completed,
            Finish::Retry { .. } => &self.retried,
            Finish::Failed { .. } => &self.failed,
            Finish::Cancelled { .. } => &self.cancelled,
            Finish::Snooze { .. } => &self.snoozed,
        };
        outcome.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(done.duration.as_secs_f64());
    }

    /// A job claimed by a fetch loop: how long it had been due.
    pub(crate) fn claimed(&self, job: &FetchedJob) {
        self.queue_wait
            .get_or_create(&KindQueue {
                kind: job.kind.clone(),
                queue: job.queue.clone(),
            })
            .observe(job.waited.as_secs_f64());
    }

    pub(crate) fn rescued(&self, rescued: &[Finished]) {
        for job in rescued {
            let outcome = match job.finish {
                Finish::Retry { .. } => "retried",
                _ => "failed",
            };
            self.rescued.get_or_create(&OutcomeLabel { outcome }).inc();
        }
    }

    pub(crate) fn batch(&self, size: usize, took: Duration) {
        // Batches hold at most a few thousand jobs: exact as f64.
        self.batch_size.observe(size as f64);
        self.batch_seconds.observe(took.as_secs_f64());
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves, in the format the scraper's
/// `Accept` header asks for ([`Format::negotiate`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<WorkerMetrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| {
            let metrics = metrics.clone();
            async move {
                let format = Format::negotiate(
                    headers
                        .get(header::ACCEPT)
                        .and_then(|accept| accept.to_str().ok()),
                );
                (
                    [(header::CONTENT_TYPE, format.content_type())],
                    metrics.render(format),
                )
                    .into_response()
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
