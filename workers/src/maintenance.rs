//! The maintenance services every worker process runs; each is one idempotent statement, so N
//! processes running them at once do no harm.
//! - rescuer: jobs whose lease ran out (their worker died) go back on the retry schedule,
//!   counted as an attempt;
//! - scheduler: due `scheduled`/`retrying` jobs become `available` (fetch takes them anyway;
//!   this keeps what admins see true);
//! - cleaner: prunes finished jobs and old outcome counts after their retention;
//! - heartbeat: keeps this process in the registry of live workers.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use jobs::driver::{Finish, WorkerInfo};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, interval};

use crate::runtime::{RuntimeOptions, Shared};

const CLEAN_EVERY: Duration = Duration::from_secs(60);
const RESCUE_BATCH: u32 = 1_000;
const PRUNE_BATCH: u32 = 10_000;

pub struct Maintenance {
    pub shared: Arc<Shared>,
    pub info: WorkerInfo,
    pub options: RuntimeOptions,
}

impl Maintenance {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut tick = interval(self.options.maintenance_interval);
        let mut heartbeat = interval(self.options.heartbeat_interval);
        for t in [&mut tick, &mut heartbeat] {
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        let mut last_clean: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.rescue().await;
                    self.schedule().await;
                    if last_clean.is_none_or(|t| t.elapsed() >= CLEAN_EVERY) {
                        self.clean().await;
                        last_clean = Some(Instant::now());
                    }
                }
                _ = heartbeat.tick() => self.heartbeat().await,
                _ = stop.changed() => break,
            }
        }
    }

    async fn rescue(&self) {
        let registry = self.shared.registry.clone();
        let policy = move |kind: &str, attempt: i32| {
            registry
                .get(kind)
                .map(|r| r.spec.retry)
                .unwrap_or_default()
                .backoff(u32::try_from(attempt).unwrap_or(1))
        };
        match self
            .shared
            .queue
            .driver()
            .rescue_expired(&policy, RESCUE_BATCH)
            .await
        {
            Ok(rescued) => {
                self.shared.metrics.rescued(&rescued);
                for job in rescued {
                    let next = match &job.finish {
                        Finish::Retry { delay, .. } => format!("retry in {delay:?}"),
                        _ => "failed: no attempts left".to_string(),
                    };
                    tracing::warn!(job = job.id, attempt = job.attempt, %next, "rescued a job whose lease expired");
                }
            }
            Err(error) => tracing::warn!(%error, "rescuer failed; will try again"),
        }
    }

    async fn schedule(&self) {
        if let Err(error) = self.shared.queue.driver().promote_scheduled().await {
            tracing::warn!(%error, "scheduler failed; will try again");
        }
    }

    /// Prunes in batches until a batch comes back short, so pruning keeps up with any rate.
    async fn clean(&self) {
        let now = Utc::now();
        let finished_before = now - chrono_duration(self.options.completed_retention);
        let stats_before = now - chrono_duration(self.options.stats_retention);
        let mut pruned = 0;
        loop {
            match self
                .shared
                .queue
                .driver()
                .prune(finished_before, stats_before, PRUNE_BATCH)
                .await
            {
                Ok(count) => {
                    pruned += count;
                    if count < u64::from(PRUNE_BATCH) {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cleaner failed; will try again");
                    break;
                }
            }
        }
        if pruned > 0 {
            tracing::info!(pruned, "pruned finished jobs past their retention");
        }
        self.forget_idle_limits().await;
    }

    /// Rate and permit rows idle for an hour (see [`jobs::limits::Limits::prune`]).
    async fn forget_idle_limits(&self) {
        const IDLE: Duration = Duration::from_secs(60 * 60);
        let pruned = jobs::limits::Limits::new(&self.shared.queue)
            .prune(IDLE)
            .await;
        if let Err(error) = pruned {
            tracing::warn!(%error, "could not forget idle limits; will try again");
        }
    }

    async fn heartbeat(&self) {
        if let Err(error) = self.shared.queue.driver().heartbeat(&self.info).await {
            tracing::warn!(%error, "heartbeat failed; will try again");
        }
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
