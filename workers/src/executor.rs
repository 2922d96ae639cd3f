//! Runs one job: looks up its handler, applies the kind's timeout, catches panics, and
//! classifies what happened into the job's next state.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt;
use jobs::JobSpec;
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
    let (result, limits) = run(registry, &job, &ctx).instrument(span.clone()).await;
    let duration = started.elapsed();
    let finish = classify(result, &job, limits, &ctx.worker_id, duration);
    span.in_scope(|| match &finish {
        Finish::Completed => tracing::debug!(?duration, "job completed"),
        Finish::Retry { delay, error } => {
            tracing::warn!(?delay, error = %error.error, "job failed, will retry")
        }
        Finish::Failed { error } => tracing::error!(error = %error.error, "job failed for good"),
        Finish::Cancelled { error } => tracing::info!(error = %error.error, "job cancelled"),
        Finish::Snooze { delay } => {
            tracing::info!(?delay, "job snoozed: not now, no attempt spent")
        }
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

/// What the kind allows a job between attempts: its backoff and how often it may snooze.
#[derive(Clone, Copy, Debug)]
struct Allowance {
    retry: jobs::RetryPolicy,
    max_snoozes: u32,
}

impl Allowance {
    fn of(spec: &JobSpec) -> Allowance {
        Allowance {
            retry: spec.retry,
            max_snoozes: spec.max_snoozes,
        }
    }
}

async fn run(
    registry: &Registry,
    job: &FetchedJob,
    ctx: &JobContext,
) -> (Result<(), JobError>, Allowance) {
    let Some(registered) = registry.get(&job.kind) else {
        let error = JobError::Permanent(format!(
            "unknown job kind '{}': this worker runs {}",
            job.kind,
            registry.known_kinds()
        ));
        let allowance = Allowance {
            retry: jobs::RetryPolicy::default(),
            max_snoozes: 0,
        };
        return (Err(error), allowance);
    };
    let spec = registered.spec;
    let result = guarded(spec.timeout, registered.handler.run(&job.payload, ctx)).await;
    (result, Allowance::of(&spec))
}

/// The handler's own result, or its panic or running past `timeout` as an error to retry.
async fn guarded(
    timeout: Duration,
    attempt: impl Future<Output = Result<(), JobError>>,
) -> Result<(), JobError> {
    match tokio::time::timeout(timeout, AssertUnwindSafe(attempt).catch_unwind()).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(JobError::Retry(format!(
            "panicked: {}",
            panic_message(&panic)
        ))),
        Err(_) => Err(JobError::Retry(format!(
            "timed out after {timeout:?} (the kind's timeout)"
        ))),
    }
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

/// The job's next state after an attempt by `worker` that took `duration` and ended in
/// `result`: retried after the kind's backoff (or no sooner than a Retry-After) while attempts
/// are left, failed when none are, failed or cancelled at once when the handler says so;
/// snoozed (no attempt spent) while the kind's snoozes last, then failed naming the wait.
fn classify(
    result: Result<(), JobError>,
    job: &FetchedJob,
    allowance: Allowance,
    worker: &str,
    duration: Duration,
) -> Finish {
    let Err(error) = result else {
        return Finish::Completed;
    };
    let record = |message: String| AttemptError {
        attempt: job.attempt,
        at: Utc::now(),
        worker: worker.to_string(),
        duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        error: shown_error(&message),
    };
    let attempts_left = job.attempt < job.max_attempts;
    let snoozes_left = i64::from(job.snoozes) < i64::from(allowance.max_snoozes);
    match error {
        JobError::Snooze { after, .. } if snoozes_left => Finish::Snooze {
            delay: after.min(MAX_RETRY_AFTER),
        },
        JobError::Snooze { reason, .. } => Finish::Failed {
            error: record(format!(
                "{reason} (waited {} times without spending an attempt, the most a {} job may: \
                 giving up)",
                job.snoozes, job.kind
            )),
        },
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
            delay: allowance
                .retry
                .backoff(u32::try_from(job.attempt).unwrap_or(1)),
            error: record(reason),
        },
        JobError::RetryAfter { after, reason } => Finish::Retry {
            delay: after.min(MAX_RETRY_AFTER),
            error: record(format!("{reason} (retry no sooner than {after:?})")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKER: &str = "host-1-00aa";

    /// Attempt `attempt` of `max_attempts` of a job.
    fn job(attempt: i32, max_attempts: i32) -> FetchedJob {
        FetchedJob {
            id: 17,
            kind: "test_fail".into(),
            queue: "test".into(),
            payload: "{}".into(),
            attempt,
            max_attempts,
            key: None,
            snoozes: 0,
            waited: Duration::ZERO,
        }
    }

    /// Base 1 s doubling to a 60 s cap, ±20%; three snoozes.
    const ALLOWANCE: Allowance = Allowance {
        retry: jobs::RetryPolicy::exponential(Duration::from_secs(1), Duration::from_secs(60)),
        max_snoozes: 3,
    };

    fn outcome(result: Result<(), JobError>, attempt: i32, max_attempts: i32) -> Finish {
        let took = Duration::from_millis(1_234);
        classify(result, &job(attempt, max_attempts), ALLOWANCE, WORKER, took)
    }

    fn snooze(after: Duration) -> Result<(), JobError> {
        Err(JobError::Snooze {
            after,
            reason: "panel main: panel rate-limited the call (HTTP 429)".into(),
        })
    }

    #[test]
    fn a_snooze_reschedules_even_on_the_last_attempt_and_records_no_error() {
        let after = Duration::from_millis(1_500);
        for (attempt, max_attempts) in [(1, 3), (3, 3), (1, 1)] {
            let finish = outcome(snooze(after), attempt, max_attempts);
            assert!(
                matches!(finish, Finish::Snooze { delay } if delay == after),
                "attempt {attempt} of {max_attempts}: {finish:?}"
            );
        }
    }

    #[test]
    fn past_the_kinds_snoozes_a_snooze_fails_the_job_naming_what_it_waited_for() {
        let after_snoozes = |snoozes| {
            let mut waited = job(1, 5);
            waited.snoozes = snoozes;
            let took = Duration::from_millis(1_234);
            classify(
                snooze(Duration::from_secs(1)),
                &waited,
                ALLOWANCE,
                WORKER,
                took,
            )
        };
        let still = after_snoozes(2);
        assert!(matches!(still, Finish::Snooze { .. }), "{still:?}");
        let failed = after_snoozes(3);
        assert!(matches!(failed, Finish::Failed { .. }), "{failed:?}");
        assert_eq!(
            recorded(&failed, 1),
            "panel main: panel rate-limited the call (HTTP 429) (waited 3 times without \
             spending an attempt, the most a test_fail job may: giving up)"
        );
    }

    /// The error an outcome records: who, which attempt, how long it took, what it said.
    fn recorded(finish: &Finish, attempt: i32) -> &str {
        let error = match finish {
            Finish::Retry { error, .. }
            | Finish::Failed { error }
            | Finish::Cancelled { error } => error,
            Finish::Completed | Finish::Snooze { .. } => {
                panic!("a completed or snoozed run records no error")
            }
        };
        assert_eq!(error.attempt, attempt, "{error:?}");
        assert_eq!(error.worker, WORKER, "{error:?}");
        assert_eq!(error.duration_ms, 1_234, "{error:?}");
        &error.error
    }

    fn retry_delay(finish: &Finish) -> Duration {
        match finish {
            Finish::Retry { delay, .. } => *delay,
            other => panic!("not a retry: {other:?}"),
        }
    }

    #[test]
    fn success_completes_the_job() {
        assert!(matches!(outcome(Ok(()), 1, 3), Finish::Completed));
        // Also on the last attempt.
        assert!(matches!(outcome(Ok(()), 3, 3), Finish::Completed));
    }

    #[test]
    fn a_retryable_error_is_retried_after_the_backoff_of_its_attempt() {
        for _ in 0..50 {
            let first = outcome(Err(JobError::retry("panel answered 502")), 1, 3);
            assert_eq!(recorded(&first, 1), "panel answered 502");
            let delay = retry_delay(&first).as_secs_f64();
            assert!(
                (0.8..=1.2).contains(&delay),
                "attempt 1 waits 1 s ±20%: {delay}"
            );

            let second = outcome(Err(JobError::retry("again")), 2, 3);
            let delay = retry_delay(&second).as_secs_f64();
            assert!(
                (1.6..=2.4).contains(&delay),
                "attempt 2 waits 2 s ±20%: {delay}"
            );
        }
    }

    #[test]
    fn a_retry_after_is_never_earlier_than_asked() {
        // Shorter and longer than the kind's own backoff, and odd sizes: exactly what was asked,
        // never the backoff's jittered guess.
        for ms in [1, 150, 999, 1_000, 1_500, 7_000, 65_432, 3_600_000] {
            let after = Duration::from_millis(ms);
            let finish = outcome(
                Err(JobError::RetryAfter {
                    after,
                    reason: "429 Too Many Requests".into(),
                }),
                1,
                3,
            );
            assert_eq!(retry_delay(&finish), after, "asked {after:?}");
            assert_eq!(
                recorded(&finish, 1),
                format!("429 Too Many Requests (retry no sooner than {after:?})")
            );
        }
    }

    #[test]
    fn an_absurd_retry_after_is_capped_at_a_month() {
        let year = Duration::from_secs(365 * 24 * 3600);
        let finish = outcome(
            Err(JobError::RetryAfter {
                after: year,
                reason: "slow down".into(),
            }),
            1,
            3,
        );
        assert_eq!(retry_delay(&finish), MAX_RETRY_AFTER);
        assert!(recorded(&finish, 1).contains(&format!("{year:?}")));
    }

    #[test]
    fn a_permanent_error_fails_at_once_and_a_cancel_cancels() {
        let failed = outcome(Err(JobError::permanent("no such plan")), 1, 5);
        assert!(matches!(failed, Finish::Failed { .. }), "{failed:?}");
        assert_eq!(recorded(&failed, 1), "no such plan");

        let cancelled = outcome(Err(JobError::Cancel("subscription gone".into())), 2, 5);
        assert!(
            matches!(cancelled, Finish::Cancelled { .. }),
            "{cancelled:?}"
        );
        assert_eq!(recorded(&cancelled, 2), "subscription gone");
    }

    #[test]
    fn with_no_attempts_left_a_retry_fails_the_job_saying_so() {
        let retry = outcome(Err(JobError::retry("timed out")), 3, 3);
        assert!(matches!(retry, Finish::Failed { .. }), "{retry:?}");
        assert_eq!(
            recorded(&retry, 3),
            "timed out (attempt 3 of 3: no attempts left)"
        );

        let after = JobError::RetryAfter {
            after: Duration::from_secs(5),
            reason: "429".into(),
        };
        let retry_after = outcome(Err(after), 3, 3);
        assert!(
            matches!(retry_after, Finish::Failed { .. }),
            "{retry_after:?}"
        );
        assert_eq!(
            recorded(&retry_after, 3),
            "429 (attempt 3 of 3: no attempts left)"
        );

        // A permanent failure on the last attempt says only what went wrong.
        let permanent = outcome(Err(JobError::permanent("bad payload")), 3, 3);
        assert_eq!(recorded(&permanent, 3), "bad payload");
        // One attempt before the last still retries.
        assert!(matches!(
            outcome(Err(JobError::retry("x")), 2, 3),
            Finish::Retry { .. }
        ));
    }

    #[test]
    fn a_recorded_error_masks_links_and_drops_nul_characters() {
        let finish = outcome(
            Err(JobError::permanent(
                "GET https://sub.example.com/sub/Ab3xYz failed\0 badly",
            )),
            1,
            3,
        );
        let error = recorded(&finish, 1);
        assert!(!error.contains("Ab3xYz"), "{error}");
        assert!(error.contains("https://sub.example.com/"), "{error}");
        assert!(!error.contains('\0'), "{error:?}");
        assert!(error.ends_with("failed badly"), "{error}");
    }

    #[tokio::test]
    async fn a_handler_result_passes_through_the_guard() {
        let ok = guarded(Duration::from_secs(5), async { Ok(()) }).await;
        assert_eq!(ok, Ok(()));
        let refused = guarded(Duration::from_secs(5), async {
            Err(JobError::permanent("refused"))
        })
        .await;
        assert_eq!(refused, Err(JobError::permanent("refused")));
    }

    /// A handler that panics with a literal message.
    async fn panics() -> Result<(), JobError> {
        panic!("boom")
    }

    /// A handler that panics with a formatted message.
    async fn panics_formatting(panel: &str) -> Result<(), JobError> {
        panic!("panel {panel} is gone")
    }

    #[tokio::test]
    async fn a_panic_is_an_error_to_retry_with_its_message() {
        let literal = guarded(Duration::from_secs(5), panics()).await;
        assert_eq!(literal, Err(JobError::retry("panicked: boom")));
        let formatted = guarded(Duration::from_secs(5), panics_formatting("main")).await;
        assert_eq!(
            formatted,
            Err(JobError::retry("panicked: panel main is gone"))
        );
    }

    #[tokio::test]
    async fn running_past_the_timeout_is_an_error_to_retry() {
        let timeout = Duration::from_millis(20);
        let result = guarded(timeout, std::future::pending()).await;
        assert_eq!(
            result,
            Err(JobError::retry("timed out after 20ms (the kind's timeout)"))
        );
    }

    #[tokio::test]
    async fn a_panic_or_timeout_on_the_last_attempt_fails_the_job() {
        let panicked = guarded(Duration::from_secs(5), panics()).await;
        let finish = outcome(panicked, 2, 2);
        assert!(matches!(finish, Finish::Failed { .. }), "{finish:?}");
        assert_eq!(
            recorded(&finish, 2),
            "panicked: boom (attempt 2 of 2: no attempts left)"
        );

        let timed_out = guarded(Duration::from_millis(20), std::future::pending()).await;
        let finish = outcome(timed_out, 1, 2);
        assert!(matches!(finish, Finish::Retry { .. }), "{finish:?}");
        assert!(recorded(&finish, 1).starts_with("timed out after 20ms"));
    }
}
