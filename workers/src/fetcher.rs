//! The fetch loop of one queue: claims only as many jobs as it has free slots, then hands each
//! to an executor task. Woken by inserts (NOTIFY on PostgreSQL, in-process on SQLite), by a
//! freed slot when the queue had more work, and by a fallback poll for everything else.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jobs::driver::FetchedJob;
use tokio::sync::{Notify, watch};

use crate::completer::Message;
use crate::executor;
use crate::handler::JobContext;
use crate::metrics::{QueueMetrics, RunningGuard};
use crate::runtime::Shared;

/// How long a fetch loop waits for more slots to free before fetching for just a few: fewer,
/// larger claims under load, without holding back a lone job for long.
const GATHER_SLOTS: Duration = Duration::from_millis(1);

/// The executor slots of one queue in this process.
pub struct Slots {
    limit: usize,
    running: AtomicUsize,
    freed: Notify,
}

impl Slots {
    pub fn new(limit: usize) -> Self {
        Slots {
            limit,
            running: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    fn free(&self) -> usize {
        self.limit
            .saturating_sub(self.running.load(Ordering::Acquire))
    }

    fn release(&self) {
        self.running.fetch_sub(1, Ordering::AcqRel);
        self.freed.notify_one();
    }
}

pub struct Fetcher {
    pub shared: Arc<Shared>,
    pub queue: String,
    pub slots: Arc<Slots>,
    pub poll_interval: Duration,
    pub wake: Arc<Notify>,
    pub stop: watch::Receiver<bool>,
}

impl Fetcher {
    #[tracing::instrument(name = "fetcher", skip_all, fields(queue = %self.queue))]
    pub async fn run(mut self) {
        let mut error_delay = Duration::from_millis(100);
        let metrics = self.shared.metrics.queue(&self.queue);
        while !*self.stop.borrow() {
            let free = self.slots.free();
            let mut more_waiting = false;
            if free > 0 {
                metrics.fetches.inc();
                match self.fetch(free).await {
                    Ok(jobs) => {
                        error_delay = Duration::from_millis(100);
                        more_waiting = jobs.len() == free;
                        metrics.fetched.inc_by(jobs.len() as u64);
                        for job in jobs {
                            self.shared.metrics.claimed(&job);
                            self.start(job, &metrics);
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, ?error_delay, "fetch failed; trying again");
                        self.pause(error_delay).await;
                        error_delay = (error_delay * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            if more_waiting || self.slots.free() == 0 {
                self.wait_for_slots().await;
            } else {
                self.wait_for_work().await;
            }
        }
    }

    async fn fetch(&self, free: usize) -> Result<Vec<FetchedJob>, jobs::queue::QueueError> {
        let shared = &self.shared;
        shared
            .queue
            .driver()
            .fetch(
                &self.queue,
                u32::try_from(free).unwrap_or(u32::MAX),
                &shared.worker_id,
                shared.lease,
                &shared.skip_kinds,
            )
            .await
    }

    fn start(&self, job: FetchedJob, metrics: &QueueMetrics) {
        let shared = self.shared.clone();
        let slot = SlotGuard::take(self.slots.clone());
        let running = RunningGuard::new(&metrics.running);
        let id = job.id;
        shared.leases.start(id, job.attempt);
        let ctx = JobContext {
            id,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            snoozes: job.snoozes,
            max_snoozes: shared
                .registry
                .get(&job.kind)
                .map_or(0, |registered| registered.spec.max_snoozes),
            key: job.key.clone(),
            queue: shared.queue.clone(),
            worker_id: shared.worker_id.clone(),
        };
        let task_shared = shared.clone();
        let handle = tokio::spawn(async move {
            // Both guards are dropped when the task ends, also when it is aborted.
            let (_slot, _running) = (slot, running);
            let done = executor::execute(&task_shared.registry, job, ctx).await;
            // Shutdown or a lost lease may have taken the job meanwhile: then it is released or
            // rescued, and this outcome is not written.
            if task_shared.leases.finish(id) {
                let _ = task_shared.completer.send(Message::Done(Box::new(done)));
            }
        });
        shared.leases.set_abort(id, handle.abort_handle());
    }

    async fn wait_for_slots(&mut self) {
        tokio::select! {
            _ = self.slots.freed.notified() => {}
            _ = self.stop.changed() => return,
        }
        if self.slots.free() < (self.slots.limit / 4).max(1) {
            let _ = tokio::time::timeout(GATHER_SLOTS, self.slots.freed.notified()).await;
        }
    }

    async fn wait_for_work(&mut self) {
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(self.poll_interval) => {}
            _ = self.stop.changed() => {}
        }
    }

    async fn pause(&mut self, delay: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.stop.changed() => {}
        }
    }
}

/// One taken executor slot, given back when the executor task ends, also when it is aborted.
struct SlotGuard(Arc<Slots>);

impl SlotGuard {
    fn take(slots: Arc<Slots>) -> Self {
        slots.running.fetch_add(1, Ordering::AcqRel);
        SlotGuard(slots)
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.release();
    }
}
