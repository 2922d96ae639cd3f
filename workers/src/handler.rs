//! Handlers: one per job kind, typed by the kind's payload, erased into a registry.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jobs::{Job, JobSpec, Queue};

/// How a handler says its attempt went wrong; the executor turns it into the job's next state.
#[derive(Debug, Clone, PartialEq)]
pub enum JobError {
    /// Try again later, after the kind's backoff for this attempt.
    Retry(String),
    /// Try again no sooner than `after` (a 429's Retry-After).
    RetryAfter { after: Duration, reason: String },
    /// Not now, and nothing went wrong (a 429, a limiter or lock with no room): run again no
    /// sooner than `after` without spending an attempt. A kind allows only so many
    /// (`Rules::max_snoozes`); `reason` says what the job waited for when that bound fails it.
    Snooze { after: Duration, reason: String },
    /// Will never work: kept in `failed` with this error until an admin acts.
    Permanent(String),
    /// Nothing left to do (the thing it was for is gone): `cancelled`.
    Cancel(String),
}

impl JobError {
    pub fn retry(reason: impl Display) -> Self {
        JobError::Retry(reason.to_string())
    }

    pub fn permanent(reason: impl Display) -> Self {
        JobError::Permanent(reason.to_string())
    }
}

impl Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobError::Retry(reason) => write!(f, "{reason}"),
            JobError::RetryAfter { after, reason } => {
                write!(f, "{reason} (retry no sooner than {after:?})")
            }
            JobError::Snooze { after, reason } => write!(f, "{reason} (waiting {after:?})"),
            JobError::Permanent(reason) => write!(f, "{reason}"),
            JobError::Cancel(reason) => write!(f, "cancelled: {reason}"),
        }
    }
}

/// What a handler knows of the job it runs, and the queue, for follow-up jobs.
#[derive(Clone)]
pub struct JobContext {
    pub id: i64,
    pub attempt: i32,
    pub max_attempts: i32,
    /// How often the job has snoozed so far, and how often its kind allows.
    pub snoozes: i32,
    pub max_snoozes: u32,
    pub key: Option<String>,
    pub queue: Queue,
    pub worker_id: Arc<str>,
}

impl JobContext {
    /// Whether `error` ends the job (the executor fails it): permanent, a retry with no
    /// attempt left, a snooze with no snooze left. A handler that must leave nothing behind
    /// when its job fails for good asks this before returning.
    pub fn ends_job(&self, error: &JobError) -> bool {
        match error {
            JobError::Permanent(_) => true,
            JobError::Retry(_) | JobError::RetryAfter { .. } => self.attempt >= self.max_attempts,
            JobError::Snooze { .. } => i64::from(self.snoozes) >= i64::from(self.max_snoozes),
            JobError::Cancel(_) => false,
        }
    }
}

#[async_trait]
pub trait Handler<J: Job>: Send + Sync + 'static {
    async fn handle(&self, job: J, ctx: &JobContext) -> Result<(), JobError>;
}

/// A handler with its payload type erased: it parses the raw payload itself, so a payload
/// that no longer parses fails that job alone.
#[async_trait]
pub trait ErasedHandler: Send + Sync {
    async fn run(&self, payload: &str, ctx: &JobContext) -> Result<(), JobError>;
}

struct Typed<J, H> {
    handler: H,
    kind: PhantomData<fn() -> J>,
}

#[async_trait]
impl<J: Job, H: Handler<J>> ErasedHandler for Typed<J, H> {
    async fn run(&self, payload: &str, ctx: &JobContext) -> Result<(), JobError> {
        let job: J = serde_json::from_str(payload).map_err(|e| {
            JobError::Permanent(format!("payload of {} does not parse: {e}", J::KIND))
        })?;
        self.handler.handle(job, ctx).await
    }
}

#[derive(Clone)]
pub struct Registered {
    pub spec: JobSpec,
    pub handler: Arc<dyn ErasedHandler>,
}

/// The kinds this process can run, and the other kinds the program knows: those are left in
/// their queues for a worker that runs them, and may still be enqueued (periodic jobs).
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Registered>,
    others: BTreeMap<&'static str, JobSpec>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register<J: Job, H: Handler<J>>(&mut self, handler: H) -> &mut Self {
        let handler = Arc::new(Typed {
            handler,
            kind: PhantomData,
        });
        self.kinds.insert(
            J::KIND,
            Registered {
                spec: J::spec(),
                handler,
            },
        );
        self
    }

    /// Kinds the program knows that this process may not run (it skips those it has no
    /// handler for when fetching).
    pub fn know(&mut self, specs: impl IntoIterator<Item = JobSpec>) -> &mut Self {
        self.others
            .extend(specs.into_iter().map(|spec| (spec.kind, spec)));
        self
    }

    /// A kind's spec, whether this process runs it or only knows it.
    pub fn spec(&self, kind: &str) -> Option<JobSpec> {
        self.get(kind)
            .map(|r| r.spec)
            .or_else(|| self.others.get(kind).copied())
    }

    /// Known kinds without a handler here: another worker runs them.
    pub fn unhandled(&self) -> Vec<String> {
        self.others
            .keys()
            .filter(|kind| !self.kinds.contains_key(*kind))
            .map(|kind| kind.to_string())
            .collect()
    }

    pub fn get(&self, kind: &str) -> Option<&Registered> {
        self.kinds.get(kind)
    }

    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }

    /// Every queue a registered kind lives in.
    pub fn queues(&self) -> BTreeSet<String> {
        self.kinds
            .values()
            .map(|r| r.spec.queue.to_string())
            .collect()
    }

    pub fn specs(&self) -> Vec<JobSpec> {
        self.kinds.values().map(|r| r.spec).collect()
    }

    /// Every kind run or known here, for messages.
    pub fn known_kinds(&self) -> String {
        let all: BTreeSet<&str> = self
            .kinds
            .keys()
            .chain(self.others.keys())
            .copied()
            .collect();
        all.into_iter().collect::<Vec<_>>().join(", ")
    }
}
