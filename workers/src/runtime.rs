//! One worker process: starts the fetch loops, executors, completer and maintenance services,
//! and stops them gracefully: no new fetches, running jobs get a grace period, the rest go back
//! to `available` without spending an attempt.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use jobs::Queue;
use jobs::configuration::{PeriodicSettings, Settings};
use jobs::driver::WorkerInfo;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::completer::{Completer, Message};
use crate::fetcher::{Fetcher, Slots};
use crate::handler::Registry;
use crate::leases::{self, Leases};
use crate::maintenance::Maintenance;
use crate::metrics::WorkerMetrics;
use crate::periodic::Periodic;

/// How long shutdown waits for the completer's last batch.
const COMPLETER_SHUTDOWN: Duration = Duration::from_secs(10);

/// What one runtime does, resolved from the settings and the registry.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Each queue this process works, with its concurrency.
    pub queues: Vec<(String, usize)>,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub shutdown_grace: Duration,
    pub completion_interval: Duration,
    pub heartbeat_interval: Duration,
    pub maintenance_interval: Duration,
    pub completed_retention: Duration,
    pub stats_retention: Duration,
    pub periodic: Vec<PeriodicSettings>,
}

impl RuntimeOptions {
    /// The configured queues, or every queue of the registered kinds.
    pub fn from_settings(settings: &Settings, registry: &Registry) -> Self {
        let names: Vec<String> = if settings.worker.queues.is_empty() {
            registry.queues().into_iter().collect()
        } else {
            settings.worker.queues.clone()
        };
        let queues = names
            .into_iter()
            .map(|q| {
                let concurrency = settings.queue_concurrency(&q) as usize;
                (q, concurrency)
            })
            .collect();
        RuntimeOptions {
            queues,
            lease: settings.worker.lease,
            poll_interval: settings.worker.poll_interval,
            shutdown_grace: settings.worker.shutdown_grace,
            completion_interval: settings.worker.completion_interval,
            heartbeat_interval: settings.worker.heartbeat_interval,
            maintenance_interval: settings.maintenance.interval,
            completed_retention: settings.maintenance.completed_retention,
            stats_retention: settings.maintenance.stats_retention,
            periodic: settings.periodic_jobs(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("periodic job '{name}': {reason}")]
    Periodic { name: String, reason: String },
    #[error("no queues to work: register a kind or name queues in worker.queues")]
    NoQueues,
    #[error(transparent)]
    Queue(#[from] jobs::queue::QueueError),
}

/// What every part of a runtime shares.
pub struct Shared {
    pub queue: Queue,
    pub registry: Arc<Registry>,
    pub worker_id: Arc<str>,
    pub lease: Duration,
    pub completer: mpsc::UnboundedSender<Message>,
    pub metrics: Arc<WorkerMetrics>,
    pub leases: Arc<Leases>,
    /// Kinds of the product this process has no handler for: left for workers that have one.
    pub skip_kinds: Vec<String>,
}

pub struct Runtime {
    queue: Queue,
    registry: Arc<Registry>,
    options: RuntimeOptions,
    periodic: Periodic,
    metrics: Arc<WorkerMetrics>,
}

impl Runtime {
    pub fn new(
        queue: Queue,
        registry: Registry,
        options: RuntimeOptions,
    ) -> Result<Self, StartError> {
        if options.queues.is_empty() {
            return Err(StartError::NoQueues);
        }
        let periodic = Periodic::new(&options.periodic, &registry)?;
        Ok(Runtime {
            queue,
            registry: Arc::new(registry),
            options,
            periodic,
            metrics: Arc::new(WorkerMetrics::new()),
        })
    }

    /// Records into `metrics` (served by `jobq worker --metrics-bind`) instead of a private set.
    pub fn with_metrics(mut self, metrics: Arc<WorkerMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Runs until `shutdown` resolves, then stops gracefully.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
        let info = self.worker_info();
        let served: Vec<&str> = self
            .options
            .queues
            .iter()
            .map(|(q, _)| q.as_str())
            .collect();
        self.metrics.expect(
            self.registry
                .specs()
                .into_iter()
                .filter(|spec| served.contains(&spec.queue))
                .map(|spec| (spec.kind, spec.queue.to_string())),
        );
        let worker_id: Arc<str> = Arc::from(info.id.as_str());
        self.queue.driver().heartbeat(&info).await?;
        tracing::info!(worker = %worker_id, queues = %info.queues, "worker started");

        let leases = Arc::new(Leases::default());
        let (completer_tx, completer_rx) = mpsc::unbounded_channel();
        let completer = tokio::spawn(
            Completer::new(
                self.queue.clone(),
                completer_rx,
                self.options.completion_interval,
                leases.clone(),
                self.metrics.clone(),
            )
            .run(),
        );
        let shared = Arc::new(Shared {
            queue: self.queue.clone(),
            registry: self.registry.clone(),
            worker_id: worker_id.clone(),
            lease: self.options.lease,
            completer: completer_tx,
            metrics: self.metrics.clone(),
            leases: leases.clone(),
            skip_kinds: self.registry.unhandled(),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        // The lease keeper outlives the fetch loops: it stops after the last completion.
        let mut services = vec![
            self.spawn_listener(),
            tokio::spawn(leases::keep(leases, self.queue.clone(), self.options.lease)),
        ];
        let fetchers = self.spawn_fetchers(&shared, &stop_rx);
        services.push(tokio::spawn(
            Maintenance {
                shared: shared.clone(),
                info,
                options: self.options.clone(),
            }
            .run(stop_rx.clone()),
        ));
        services.push(tokio::spawn(
            std::mem::take(&mut self.periodic).run(self.queue.clone(), stop_rx.clone()),
        ));

        shutdown.await;
        tracing::info!(worker = %worker_id, "shutting down: no new jobs, waiting for running ones");
        let _ = stop_tx.send(true);
        for fetcher in fetchers {
            let _ = fetcher.await;
        }
        self.drain(&shared).await;
        let _ = shared.completer.send(Message::Stop);
        // With the database gone the completer would retry for ever; past this the jobs'
        // leases run out and the rescuer returns them, so nothing is lost by giving up.
        let completer_abort = completer.abort_handle();
        if tokio::time::timeout(COMPLETER_SHUTDOWN, completer)
            .await
            .is_err()
        {
            completer_abort.abort();
            tracing::error!(
                "could not record the last finished jobs; the rescuer will return them"
            );
        }
        services.iter().for_each(JoinHandle::abort);
        self.queue.driver().deregister(&worker_id).await?;
        tracing::info!(worker = %worker_id, "worker stopped");
        Ok(())
    }

    fn worker_info(&self) -> WorkerInfo {
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let pid = std::process::id();
        let queues: Vec<String> = self
            .options
            .queues
            .iter()
            .map(|(q, c)| format!("{q}={c}"))
            .collect();
        WorkerInfo {
            id: format!("{host}-{pid}-{:04x}", fastrand::u16(..)),
            host,
            pid: i32::try_from(pid).unwrap_or(i32::MAX),
            queues: queues.join(","),
            concurrency: self
                .options
                .queues
                .iter()
                .map(|(_, c)| i32::try_from(*c).unwrap_or(i32::MAX))
                .sum(),
            started_at: Utc::now(),
            heartbeat_at: Utc::now(),
        }
    }

    fn spawn_listener(&self) -> JoinHandle<()> {
        let queue = self.queue.clone();
        tokio::spawn(async move {
            loop {
                if let Err(error) = queue.driver().listen(queue.wakeups().clone()).await {
                    tracing::warn!(%error, "listening for new jobs failed; polling until it is back");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }

    fn spawn_fetchers(
        &self,
        shared: &Arc<Shared>,
        stop: &watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        self.options
            .queues
            .iter()
            .map(|(queue, concurrency)| {
                tokio::spawn(
                    Fetcher {
                        shared: shared.clone(),
                        queue: queue.clone(),
                        slots: Arc::new(Slots::new(*concurrency)),
                        poll_interval: self.options.poll_interval,
                        wake: self.queue.wakeups().subscribe(queue),
                        stop: stop.clone(),
                    }
                    .run(),
                )
            })
            .collect()
    }

    /// Lets running jobs finish within the grace period; returns the rest to `available`.
    async fn drain(&self, shared: &Shared) {
        let deadline = tokio::time::Instant::now() + self.options.shutdown_grace;
        if shared.leases.wait_idle(deadline).await {
            return;
        }
        let release = shared.leases.take_running();
        match self.queue.driver().release(&release).await {
            Ok(count) => tracing::warn!(
                count,
                "grace period over: returned unfinished jobs to the queue, attempts not spent"
            ),
            Err(error) => tracing::error!(
                %error,
                "cannot return unfinished jobs; the rescuer will take them back when their leases expire"
            ),
        }
    }
}
