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
    settings: PeriodicSettings,
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
                    settings: p.clone(),
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
        let period = self.settings.period_start(Utc::now());
        if self.last_period == Some(period) {
            return;
        }
        let mut job = self.job.clone();
        job.key = Some(self.settings.period_key(period));
        match queue.enqueue_new(job).await {
            Ok(enqueued) => {
                self.last_period = Some(period);
                if enqueued.created {
                    tracing::info!(periodic = %self.settings.name, job = enqueued.id, %period, "enqueued periodic job");
                }
            }
            Err(error) => {
                tracing::warn!(periodic = %self.settings.name, %error, "cannot enqueue periodic job; will try again")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_aligned_to_the_epoch() {
        let t = DateTime::parse_from_rfc3339("2026-11-22T01:47:31.250Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("valid time");
        let entry = PeriodicSettings {
            name: "tick".into(),
            kind: "noop".into(),
            every: Duration::from_secs(600),
            payload: serde_json::json!({}),
            queue: None,
            priority: None,
        };
        let start = entry.period_start(t);
        assert_eq!(start.to_rfc3339(), "2026-11-22T01:40:00+00:00");
        assert_eq!(entry.period_start(start), start);
        assert_eq!(
            entry.next_period(t).to_rfc3339(),
            "2026-11-22T01:50:00+00:00"
        );
        assert_eq!(
            entry.period_key(start),
            "periodic:tick:2026-11-22T01:40:00+00:00"
        );
    }
}
