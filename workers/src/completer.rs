//! Writes finished jobs in batches: whatever finished while the previous batch was being
//! written goes in the next one, so under load a few statements complete thousands of jobs.
//! Also counts outcomes per minute, queue and kind, written every few seconds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, Utc};
use jobs::Queue;
use jobs::driver::{Finish, Finished, StatCount, StatKey};
use jobs::queue::QueueError;
use tokio::sync::mpsc;

use crate::executor::Done;
use crate::leases::Leases;
use crate::metrics::WorkerMetrics;

const MAX_BATCH: usize = 5_000;
const STATS_EVERY: Duration = Duration::from_secs(5);

pub enum Message {
    Done(Box<Done>),
    /// Flush everything received so far, then stop.
    Stop,
}

pub struct Completer {
    queue: Queue,
    leases: Arc<Leases>,
    receiver: mpsc::UnboundedReceiver<Message>,
    gather: Duration,
    stats: BTreeMap<StatKey, StatCount>,
    metrics: Arc<WorkerMetrics>,
}

impl Completer {
    pub fn new(
        queue: Queue,
        receiver: mpsc::UnboundedReceiver<Message>,
        gather: Duration,
        leases: Arc<Leases>,
        metrics: Arc<WorkerMetrics>,
    ) -> Self {
        Completer {
            queue,
            leases,
            receiver,
            gather,
            stats: BTreeMap::new(),
            metrics,
        }
    }

    pub async fn run(mut self) {
        let mut messages = Vec::with_capacity(MAX_BATCH);
        let mut stats_tick = tokio::time::interval(STATS_EVERY);
        loop {
            tokio::select! {
                received = self.receiver.recv_many(&mut messages, MAX_BATCH) => {
                    if received == 0 {
                        break;
                    }
                }
                _ = stats_tick.tick() => {
                    self.flush_stats().await;
                    continue;
                }
            }
            // A small batch waits a moment for company: fewer, larger statements.
            if messages.len() < MAX_BATCH / 10 && !self.gather.is_zero() {
                let deadline = tokio::time::sleep(self.gather);
                tokio::pin!(deadline);
                while messages.len() < MAX_BATCH {
                    tokio::select! {
                        received = self.receiver.recv_many(&mut messages, MAX_BATCH) => {
                            if received == 0 { break; }
                        }
                        _ = &mut deadline => break,
                    }
                }
            }
            let stop = messages.iter().any(|m| matches!(m, Message::Stop));
            let batch: Vec<Done> = messages
                .drain(..)
                .filter_map(|m| match m {
                    Message::Done(done) => Some(*done),
                    Message::Stop => None,
                })
                .collect();
            self.complete(batch).await;
            if stop {
                break;
            }
        }
        self.flush_stats().await;
    }

    /// Writes a batch, retrying while the database is unreachable: a completion is never
    /// dropped for a passing fault. A batch the database refuses as bad data is written one job
    /// at a time, so one bad row cannot hold back the others; the bad one's lease then lapses
    /// and the rescuer returns it.
    async fn complete(&mut self, batch: Vec<Done>) {
        if batch.is_empty() {
            return;
        }
        let finished: Vec<Finished> = batch.iter().map(|d| d.finished.clone()).collect();
        let started = Instant::now();
        if let Err(error) = self.write(&finished).await {
            tracing::warn!(%error, jobs = finished.len(), "a batch of outcomes was refused; writing them one by one");
            for one in &finished {
                if let Err(error) = self.write(std::slice::from_ref(one)).await {
                    tracing::error!(%error, job = one.id, attempt = one.attempt, "the database refused this outcome; the rescuer will return the job");
                }
            }
        }
        self.leases.written(finished.iter().map(|f| f.id));
        self.metrics.batch(batch.len(), started.elapsed());
        for done in batch {
            self.count(&done);
            self.metrics.finished(&done);
        }
    }

    /// Retries until written, or until the database refuses the data itself.
    async fn write(&self, finished: &[Finished]) -> Result<(), QueueError> {
        let mut delay = Duration::from_millis(50);
        loop {
            match self.queue.driver().finish(finished).await {
                Ok(()) => return Ok(()),
                Err(error) if error.is_bad_data() => return Err(error),
                Err(error) => {
                    tracing::error!(%error, jobs = finished.len(), ?delay, "cannot record finished jobs; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn count(&mut self, done: &Done) {
        let outcome = match done.finished.finish {
            Finish::Completed => "completed",
            Finish::Retry { .. } => "retried",
            Finish::Failed { .. } => "failed",
            Finish::Cancelled { .. } => "cancelled",
            Finish::Snooze { .. } => "snoozed",
        };
        let key = StatKey {
            minute: minute_of(Utc::now()),
            queue: done.queue.clone(),
            kind: done.kind.clone(),
            outcome,
        };
        let entry = self.stats.entry(key).or_default();
        entry.count += 1;
        entry.duration_ms += i64::try_from(done.duration.as_millis()).unwrap_or(i64::MAX);
    }

    async fn flush_stats(&mut self) {
        if self.stats.is_empty() {
            return;
        }
        let rows: Vec<(StatKey, StatCount)> = std::mem::take(&mut self.stats).into_iter().collect();
        if let Err(error) = self.queue.driver().add_stats(&rows).await {
            tracing::warn!(%error, "cannot write outcome counts; keeping them for the next try");
            for (key, count) in rows {
                let entry = self.stats.entry(key).or_default();
                entry.count += count.count;
                entry.duration_ms += count.duration_ms;
            }
        }
    }
}

pub fn minute_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(chrono::Duration::minutes(1)).unwrap_or(t)
}
