//! Periodic jobs declared in config, enqueued by every worker process: the job of a period is
//! keyed by the entry's name and the period's start, so N processes give one job per period.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jobs::configuration::PeriodicSettings;
use jobs::{EnqueueOptions, NewJob, Queue};
use tokio::sync::watch;

use crate::handler::Registry;
use crate::runtime::StartError;

const CHECK_EVERY: Duration = Duration::from_millis(500);

struct Entry {
    name: String,
    every: Duration,
    job: NewJob,
    last_period: Option<DateTime<Utc>>,
}

#[derive(Default)]
pub struct Periodic {
    entries: Vec<Entry>,
}

impl Periodic {
    /// Checks every entry against the registry: a kind this worker does not run, or a payload
    /// that does not parse, stops start-up with the entry's name.
    pub fn new(settings: &[PeriodicSettings], registry: &Registry) -> Result<Self, StartError> {
        let entries = settings
            .iter()
            .map(|p| {
                let failed = |reason: String| StartError::Periodic {
                    name: p.name.clone(),
                    reason,
                };
                // A kind another worker runs is fine: enqueuing needs only its spec.
                let spec = registry.spec(&p.kind).ok_or_else(|| {
                    failed(format!(
                        "unknown kind '{}': known kinds are {}",
                        p.kind,
                        registry.known_kinds()
                    ))
                })?;
                let options = EnqueueOptions {
                    queue: p.queue.clone(),
                    priority: p.priority,
                    ..EnqueueOptions::default()
                };
                let job = NewJob::from_json(&spec, &p.payload, options)
                    .map_err(|e| failed(e.to_string()))?;
                Ok(Entry {
                    name: p.name.clone(),
                    every: p.every,
                    job,
                    last_period: None,
                })
            })
            .collect::<Result<_, StartError>>()?;
        Ok(Periodic { entries })
    }

    pub async fn run(mut self, queue: Queue, mut stop: watch::Receiver<bool>) {
        if self.entries.is_empty() {
            return;
        }
        loop {
            for entry in &mut self.entries {
                entry.enqueue_due(&queue).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(CHECK_EVERY) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

impl Entry {
    async fn enqueue_due(&mut self, queue: &Queue) {
        let period = period_start(Utc::now(), self.every);
        if self.last_period == Some(period) {
            return;
        }
        let mut job = self.job.clone();
        job.key = Some(period_key(&self.name, period));
        match queue.enqueue_new(job).await {
            Ok(enqueued) => {
                self.last_period = Some(period);
                if enqueued.created {
                    tracing::info!(periodic = %self.name, job = enqueued.id, %period, "enqueued periodic job");
                }
            }
            Err(error) => {
                tracing::warn!(periodic = %self.name, %error, "cannot enqueue periodic job; will try again")
            }
        }
    }
}

/// The start of the period `now` falls in, periods counted from the Unix epoch.
pub fn period_start(now: DateTime<Utc>, every: Duration) -> DateTime<Utc> {
    let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX).max(1);
    let ms = now.timestamp_millis();
    DateTime::from_timestamp_millis(ms - ms.rem_euclid(every_ms)).unwrap_or(now)
}

/// The key of one period of a periodic job: every process enqueues it, one job results.
fn period_key(name: &str, period: chrono::DateTime<chrono::Utc>) -> String {
    format!("periodic:{name}:{}", period.to_rfc3339())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_aligned_to_the_epoch() {
        let t = DateTime::parse_from_rfc3339("2026-11-22T01:47:31.250Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("valid time");
        let start = period_start(t, Duration::from_secs(600));
        assert_eq!(start.to_rfc3339(), "2026-11-22T01:40:00+00:00");
        assert_eq!(period_start(start, Duration::from_secs(600)), start);
    }
}
