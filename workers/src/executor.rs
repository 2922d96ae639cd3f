//! Runs one job: looks up its handler, applies the kind's timeout, catches panics, and
//! classifies what happened into the job's next state.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt;
use jobs::RetryPolicy;
use jobs::driver::{AttemptError, FetchedJob, Finish, Finished};
use tracing::Instrument;

use crate::handler::{JobContext, JobError, Registry};

/// A finished attempt with what the completer counts about it.
#[derive(Debug, Clone)]
pub struct Done {
    pub finished: Finished,
    pub queue: String,
    pub kind: String,
    pub duration: Duration,
}

pub async fn execute(registry: &Registry, job: FetchedJob, ctx: JobContext) -> Done {
    let span = tracing::info_span!(
        "job",
        id = job.id,
        kind = %job.kind,
        queue = %job.queue,
        attempt = job.attempt
    );
    let started = Instant::now();
    let (result, retry) = run(registry, &job, &ctx).instrument(span.clone()).await;
    let duration = started.elapsed();
    let finish = classify(result, &job, retry, &ctx, duration);
    span.in_scope(|| match &finish {
        Finish::Completed => tracing::debug!(?duration, "job completed"),
        Finish::Retry { delay, error } => {
            tracing::warn!(?delay, error = %error.error, "job failed, will retry")
        }
        Finish::Failed { error } => tracing::error!(error = %error.error, "job failed for good"),
        Finish::Cancelled { error } => tracing::info!(error = %error.error, "job cancelled"),
    });
    Done {
        finished: Finished {
            id: job.id,
            attempt: job.attempt,
            finish,
        },
        queue: job.queue,
        kind: job.kind,
        duration,
    }
}

async fn run(
    registry: &Registry,
    job: &FetchedJob,
    ctx: &JobContext,
) -> (Result<(), JobError>, RetryPolicy) {
    let Some(registered) = registry.get(&job.kind) else {
        let error = JobError::Permanent(format!(
            "unknown job kind '{}': this worker runs {}",
            job.kind,
            registry.known_kinds()
        ));
        return (Err(error), RetryPolicy::default());
    };
    let spec = registered.spec;
    let attempt = AssertUnwindSafe(registered.handler.run(&job.payload, ctx)).catch_unwind();
    let result = match tokio::time::timeout(spec.timeout, attempt).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(JobError::Retry(format!(
            "panicked: {}",
            panic_message(&panic)
        ))),
        Err(_) => Err(JobError::Retry(format!(
            "timed out after {:?} (the kind's timeout)",
            spec.timeout
        ))),
    };
    (result, spec.retry)
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// A Retry-After longer than this is taken as this: a month is past any sane answer.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);

/// An error as it is kept and shown: links masked (they grant access by being known) and NUL
/// characters dropped (PostgreSQL's jsonb cannot hold them).
fn shown_error(message: &str) -> String {
    jobs::redact::mask_urls(&message.replace('\0', ""))
}

fn classify(
    result: Result<(), JobError>,
    job: &FetchedJob,
    retry: RetryPolicy,
    ctx: &JobContext,
    duration: Duration,
) -> Finish {
    let Err(error) = result else {
        return Finish::Completed;
    };
    let record = |message: String| AttemptError {
        attempt: job.attempt,
        at: Utc::now(),
        worker: ctx.worker_id.to_string(),
        duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        error: shown_error(&message),
    };
    let attempts_left = job.attempt < job.max_attempts;
    match error {
        JobError::Permanent(reason) => Finish::Failed {
            error: record(reason),
        },
        JobError::Cancel(reason) => Finish::Cancelled {
            error: record(reason),
        },
        JobError::Retry(reason) | JobError::RetryAfter { reason, .. } if !attempts_left => {
            Finish::Failed {
                error: record(format!(
                    "{reason} (attempt {} of {}: no attempts left)",
                    job.attempt, job.max_attempts
                )),
            }
        }
        JobError::Retry(reason) => Finish::Retry {
            delay: retry.backoff(u32::try_from(job.attempt).unwrap_or(1)),
            error: record(reason),
        },
        JobError::RetryAfter { after, reason } => Finish::Retry {
            delay: after.min(MAX_RETRY_AFTER),
            error: record(format!("{reason} (retry no sooner than {after:?})")),
        },
    }
}
