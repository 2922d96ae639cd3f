//! The queue's statements: one driver per database behind one trait, because the queue's hot
//! statements are where the dialects differ most (batches as arrays through `unnest` against
//! one JSON array through `json_each`, claims with `FOR UPDATE SKIP LOCKED` against SQLite's
//! single writer, NOTIFY against in-process wake-ups). Built from a [`Db`] by [`Db::driver`].
//!
//! Both drivers give the same behaviour: the same states, the same idempotency rule (a partial
//! unique index over the key, for jobs not discarded or cancelled), the same guards on completion
//! (a job is finished only by the attempt that holds it).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::{AuditEntry, AuditFilter, AuditRecord};
use crate::job::NewJob;
use crate::queue::{Enqueued, QueueError, Wakeups};
use crate::state::JobState;

pub mod postgres;
mod shared;
pub mod sqlite;

use crate::db::{Conn, Db, DbError, Fields, Pools, Stamp};
use crate::state::RepairAction;

impl Db {
    /// The queue's statements for this database.
    pub(crate) fn driver(&self) -> Arc<dyn Driver> {
        let location = self.location().to_string();
        match &self.pools {
            Pools::Postgres(pool) => Arc::new(postgres::PostgresDriver::new(
                self.clone(),
                pool.clone(),
                location,
            )),
            Pools::Sqlite(pool) => Arc::new(sqlite::SqliteDriver::new(
                self.clone(),
                pool.clone(),
                location,
            )),
        }
    }
}

/// Inserts `jobs` on a connection the caller holds (inside its transaction): one statement
/// for the batch, idempotent by key, results in the order of `jobs`.
pub(crate) async fn insert(conn: Conn<'_>, jobs: &[NewJob]) -> Result<Vec<Enqueued>, QueueError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    match conn {
        Conn::Postgres(c) => postgres::insert(c, jobs).await,
        Conn::Sqlite(c) => sqlite::insert(c, jobs).await,
    }
}

/// How the rescuer decides what becomes of a job whose lease ran out.
pub type RescuePolicy = dyn Fn(&str, i32) -> Duration + Send + Sync;

/// A job claimed by a fetch: what the executor needs to run it.
#[derive(Debug, Clone)]
pub struct FetchedJob {
    pub id: i64,
    pub kind: String,
    pub queue: String,
    /// Raw JSON text: parsed by the kind's handler, so bad data fails that job alone.
    pub payload: String,
    pub attempt: i32,
    pub max_attempts: i32,
    pub key: Option<String>,
    /// How often the job has waited so far without spending an attempt ([`Finish::Snooze`]).
    pub snoozes: i32,
    /// How long the job had been due when this claim took it (its `run_at`, the time it was
    /// scheduled for or became available again, to the claim): the queue wait.
    pub waited: Duration,
}

/// What a claim returned, read row by row: the jobs to run, and the rows that cannot run (a
/// column that does not decode, written by hand or by something else), each to be failed at
/// once with the reason, so one bad row never holds up the rest of its batch or its queue.
pub(crate) struct Claimed {
    pub jobs: Vec<FetchedJob>,
    pub unreadable: Vec<Finished>,
}

impl Claimed {
    /// Fails the unreadable rows and hands over the jobs to run. A failure to write those
    /// outcomes must not lose the good jobs of the batch (they are claimed already): it is
    /// logged, and the unreadable rows are left to the rescuer, which fails them the same way.
    pub(crate) async fn settle(self, driver: &(impl Driver + ?Sized)) -> Vec<FetchedJob> {
        if !self.unreadable.is_empty()
            && let Err(error) = driver.finish(&self.unreadable).await
        {
            tracing::warn!(%error, "could not fail the unreadable jobs of a claim; the rescuer will");
        }
        self.jobs
    }
}

/// Reads the claim's rows (`id, kind, queue, payload, attempt, max_attempts,
/// idempotency_key, snoozes, run_at, attempted_at`, payload as text). A row whose id or
/// attempt does not decode cannot be failed by its attempt: it is logged and left to the
/// rescuer.
pub(crate) fn claimed<'r, R: sqlx::Row>(rows: &'r [R], worker: &str) -> Claimed
where
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Stamp: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let mut claimed = Claimed {
        jobs: Vec::with_capacity(rows.len()),
        unreadable: Vec::new(),
    };
    for row in rows {
        let (id, attempt) = match id_and_attempt(row) {
            Ok(head) => head,
            Err(error) => {
                tracing::error!(%error, "a claimed job cannot be read; the rescuer will retry it");
                continue;
            }
        };
        let f = Fields::new(row, "jobq_jobs", id);
        let job = (|| {
            Ok::<_, DbError>(FetchedJob {
                id,
                kind: f.get("kind")?,
                queue: f.get("queue")?,
                payload: f.get("payload")?,
                attempt,
                max_attempts: f.get("max_attempts")?,
                key: f.get("idempotency_key")?,
                snoozes: f.get("snoozes")?,
                waited: waited(f.get("run_at")?, f.get("attempted_at")?),
            })
        })();
        match job {
            Ok(job) => claimed.jobs.push(job),
            Err(error) => claimed
                .unreadable
                .push(unreadable(id, attempt, worker, &error)),
        }
    }
    claimed
}

/// From due to claimed, both times the database's; never negative.
fn waited(run_at: Stamp, claimed_at: Stamp) -> Duration {
    (DateTime::<Utc>::from(claimed_at) - DateTime::<Utc>::from(run_at))
        .to_std()
        .unwrap_or(Duration::ZERO)
}

/// What a job's outcome is written by: its id and the attempt that holds it.
fn id_and_attempt<'r, R: sqlx::Row>(row: &'r R) -> Result<(i64, i32), DbError>
where
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let id = crate::db::row_id(row, "jobq_jobs")?;
    let attempt = Fields::new(row, "jobq_jobs", id).get::<i32>("attempt")?;
    Ok((id, attempt))
}

/// The outcome of a job whose row cannot be read: failed, with the reason, for an admin.
pub(crate) fn unreadable(id: i64, attempt: i32, worker: &str, error: &DbError) -> Finished {
    Finished {
        id,
        attempt,
        finish: Finish::Failed {
            error: AttemptError {
                attempt,
                at: Utc::now(),
                worker: worker.to_string(),
                duration_ms: 0,
                error: format!("the job cannot run: {error}"),
            },
        },
    }
}

/// What the rescuer writes for one row of its select (`id, kind, attempt, max_attempts,
/// attempted_by, attempted_at`): see [`rescued`]; a row with an unreadable column is failed
/// with the reason, and one whose id or attempt does not decode is left (logged), so one bad
/// row never stops the rescue of the others.
pub(crate) fn rescue_row<'r, R: sqlx::Row>(row: &'r R, policy: &RescuePolicy) -> Option<Finished>
where
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<Stamp>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let (id, attempt) = match id_and_attempt(row) {
        Ok(head) => head,
        Err(error) => {
            tracing::error!(%error, "a job whose lease expired cannot be read; an admin must repair it");
            return None;
        }
    };
    let f = Fields::new(row, "jobq_jobs", id);
    let read = (|| {
        let kind: String = f.get("kind")?;
        let max_attempts: i32 = f.get("max_attempts")?;
        let worker: Option<String> = f.get("attempted_by")?;
        Ok::<_, DbError>((kind, max_attempts, worker))
    })();
    // When the attempt started only sets the error's duration: an unreadable time is no reason
    // to hold the rescue.
    let elapsed_ms = f
        .get::<Option<Stamp>>("attempted_at")
        .ok()
        .flatten()
        .map(|t| (Utc::now() - t.0).num_milliseconds());
    Some(match read {
        Ok((kind, max_attempts, worker)) => {
            rescued(id, &kind, attempt, max_attempts, worker, elapsed_ms, policy)
        }
        Err(error) => unreadable(id, attempt, "rescuer", &error),
    })
}

/// One failed attempt, kept on the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptError {
    pub attempt: i32,
    pub at: DateTime<Utc>,
    pub worker: String,
    pub duration_ms: u64,
    pub error: String,
}

/// How an attempt ended, as the completer writes it.
#[derive(Debug, Clone)]
pub enum Finish {
    Completed,
    /// Back to the schedule: `run_at = now + delay`.
    Retry {
        delay: Duration,
        error: AttemptError,
    },
    /// Kept in `failed` with its error until an admin acts.
    Failed {
        error: AttemptError,
    },
    Cancelled {
        error: AttemptError,
    },
    /// Not now, and not a failure: back to the schedule at `now + delay` with the attempt
    /// given back and one more snooze counted; no error is recorded.
    Snooze {
        delay: Duration,
    },
}

impl Finish {
    pub fn state(&self) -> JobState {
        match self {
            Finish::Completed => JobState::Completed,
            Finish::Snooze { .. } => JobState::Scheduled,
            Finish::Retry { .. } => JobState::Retrying,
            Finish::Failed { .. } => JobState::Failed,
            Finish::Cancelled { .. } => JobState::Cancelled,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Finished {
    pub id: i64,
    /// The attempt that ran: a completion from an attempt that lost its lease is ignored.
    pub attempt: i32,
    pub finish: Finish,
}

/// A job as admins see it.
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    pub id: i64,
    pub kind: String,
    pub queue: String,
    pub payload: Value,
    pub state: JobState,
    pub priority: i16,
    pub attempts: i32,
    pub max_attempts: i32,
    /// Waits without spending an attempt so far.
    pub snoozes: i32,
    pub key: Option<String>,
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub attempted_at: Option<DateTime<Utc>>,
    pub attempted_by: Option<String>,
    pub locked_until: Option<DateTime<Utc>>,
    pub finalized_at: Option<DateTime<Utc>>,
    pub errors: Vec<AttemptError>,
    pub last_error: Option<String>,
}

/// One row of a listing: the job, or why its row cannot be read. Listings read rows one by one,
/// so a value written by hand or by something else hides only its own job, never the others.
#[derive(Debug, Clone)]
pub enum Listed {
    Job(Box<JobRecord>),
    Unreadable(Unreadable),
}

/// A job row holding a value jobq cannot read: the job's id, the column and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    pub id: i64,
    pub column: &'static str,
    pub detail: String,
}

impl Listed {
    pub fn id(&self) -> i64 {
        match self {
            Listed::Job(job) => job.id,
            Listed::Unreadable(row) => row.id,
        }
    }

    /// The job, for code that needs every field: an unreadable row is the error naming it.
    pub fn readable(self) -> Result<JobRecord, DbError> {
        match self {
            Listed::Job(job) => Ok(*job),
            Listed::Unreadable(row) => Err(row.error()),
        }
    }
}

impl Unreadable {
    pub fn error(&self) -> DbError {
        DbError::Corrupt {
            table: "jobq_jobs",
            row: self.id.to_string(),
            column: self.column,
            detail: self.detail.clone(),
        }
    }
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "column {} holds a value jobq cannot read: {}",
            self.column, self.detail
        )
    }
}

/// Which jobs an admin means. Every field narrows; `None` matches all.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub queue: Option<String>,
    pub kind: Option<String>,
    /// Only jobs with an id below this one (paging, newest first).
    pub before_id: Option<i64>,
}

/// The live worker processes, from their heartbeats.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerInfo {
    pub id: String,
    pub host: String,
    pub pid: i32,
    pub queues: String,
    pub concurrency: i32,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
}

/// Outcomes of one minute for one queue and kind, added to what is already counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatKey {
    pub minute: DateTime<Utc>,
    pub queue: String,
    pub kind: String,
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct StatCount {
    pub count: i64,
    pub duration_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StateCount {
    pub queue: String,
    pub state: JobState,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueInfo {
    pub name: String,
    pub paused: bool,
    /// Age in seconds of the oldest job that is due and not yet running.
    pub oldest_available_age_s: Option<f64>,
}

/// The jobs a worker leaves for other workers when it fetches: every job of the kinds it has
/// no handler for, and the jobs of a kind it runs whose payload asks for something this worker
/// lacks (a DM to a platform it has no token for). They wait, unattempted, for a worker that
/// can run them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeftAlone {
    pub kinds: Vec<String>,
    pub payloads: Vec<PayloadMatch>,
}

/// Jobs of `kind` whose payload holds the string `value` at `path` (object keys from the top,
/// none containing a `.`).
#[derive(Debug, Clone, PartialEq)]
pub struct PayloadMatch {
    pub kind: String,
    pub path: Vec<String>,
    pub value: String,
}

impl PayloadMatch {
    /// The path as the statements take it: keys joined by `.`.
    pub(crate) fn dotted_path(&self) -> String {
        self.path.join(".")
    }
}

/// The result of a repair on a set of jobs: what changed and what was left and why.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Repair {
    pub changed: Vec<i64>,
    pub skipped: Vec<(i64, String)>,
}

/// A job's payload replaced before a retry, as an admin asks. The engine knows no kind's
/// payload: the caller checks it for the job's kind and describes the change for the audit
/// log (redacting what its kind keeps secret), both from the job as read under the lock.
pub struct PayloadEdit<'a> {
    pub id: i64,
    pub payload: &'a Value,
    /// The payload to store (as the kind normalises it), or what is wrong with it for a job
    /// of this kind.
    pub check: &'a (dyn Fn(&str, &Value) -> Result<Value, String> + Send + Sync),
    /// The audit entry, from the job as it was (its kind, its old payload) and the payload
    /// stored.
    pub audit: &'a (dyn Fn(&JobRecord, &Value) -> AuditEntry + Send + Sync),
}

/// What became of a [`PayloadEdit`]: nothing is written unless the job was retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditOutcome {
    Retried,
    /// The caller's check refused the payload.
    Invalid(String),
    /// The job is not in a state a retry applies to (or gone, or its key is held).
    LeftAlone(String),
}

#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Where the data is, with any password masked, for messages.
    fn name(&self) -> &str;
    /// The database the driver runs on: the statements both dialects share run through it.
    fn db(&self) -> &Db;

    // Schema.
    async fn migrate(&self) -> Result<(), QueueError>;
    async fn applied_versions(&self) -> Result<Vec<i64>, QueueError>;

    // Enqueue (one statement for the whole batch, idempotent by key).
    async fn insert(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, QueueError>;
    /// Forwards insert notifications to `wakeups` until the process ends (PostgreSQL only).
    async fn listen(&self, wakeups: Arc<Wakeups>) -> Result<(), QueueError>;

    // The worker runtime.
    /// Claims up to `limit` due jobs of `queue`, leaving alone the jobs `left` names (another
    /// worker runs them).
    async fn fetch(
        &self,
        queue: &str,
        limit: u32,
        worker: &str,
        lease: Duration,
        left: &LeftAlone,
    ) -> Result<Vec<FetchedJob>, QueueError>;
    async fn finish(&self, finished: &[Finished]) -> Result<(), QueueError>;
    /// Extends the leases still held; returns the ids that are (a job cancelled, rescued or
    /// repaired meanwhile is not, and its handler should stop).
    async fn extend_leases(
        &self,
        jobs: &[(i64, i32)],
        lease: Duration,
    ) -> Result<Vec<i64>, QueueError>;
    /// Back to `available` without spending an attempt (graceful shutdown).
    async fn release(&self, jobs: &[(i64, i32)]) -> Result<u64, QueueError>;
    async fn rescue_expired(
        &self,
        policy: &RescuePolicy,
        limit: u32,
    ) -> Result<Vec<Finished>, QueueError>;
    async fn promote_scheduled(&self) -> Result<u64, QueueError>;
    async fn prune(
        &self,
        finished_before: DateTime<Utc>,
        stats_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, QueueError>;
    async fn heartbeat(&self, worker: &WorkerInfo) -> Result<(), QueueError> {
        shared::heartbeat(self.db(), worker).await
    }
    async fn deregister(&self, worker_id: &str) -> Result<(), QueueError> {
        shared::deregister(self.db(), worker_id).await
    }
    async fn add_stats(&self, stats: &[(StatKey, StatCount)]) -> Result<(), QueueError>;

    // Inspection: rows read one by one, an unreadable one listed as such.
    async fn list_jobs(&self, filter: &JobFilter, limit: u32) -> Result<Vec<Listed>, QueueError> {
        shared::list_jobs(self.db(), filter, limit).await
    }
    async fn job(&self, id: i64) -> Result<Option<Listed>, QueueError> {
        shared::job(self.db(), id).await
    }
    async fn job_by_key(&self, key: &str) -> Result<Option<Listed>, QueueError> {
        shared::job_by_key(self.db(), key).await
    }
    /// The newest job whose idempotency key starts with `prefix` (a periodic entry's last job).
    async fn newest_with_key_prefix(&self, prefix: &str) -> Result<Option<JobRecord>, QueueError> {
        shared::newest_with_key_prefix(self.db(), prefix).await
    }
    async fn state_counts(&self) -> Result<Vec<StateCount>, QueueError> {
        shared::state_counts(self.db()).await
    }
    async fn queues(&self) -> Result<Vec<QueueInfo>, QueueError> {
        shared::queues(self.db()).await
    }
    async fn workers(&self) -> Result<Vec<WorkerInfo>, QueueError> {
        shared::workers(self.db()).await
    }
    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditRecord>, QueueError> {
        shared::audit_log(self.db(), &AuditFilter::default(), limit).await
    }
    /// The newest `limit` entries the filter matches.
    async fn audit_log_matching(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, QueueError> {
        shared::audit_log(self.db(), filter, limit).await
    }

    // Repair: each call is one transaction that writes its audit entry with the change.
    async fn retry(&self, ids: &[i64], audit: &AuditEntry) -> Result<Repair, QueueError>;
    /// The job's payload replaced, then retried, in one transaction with its audit entry.
    async fn retry_edited(&self, edit: &PayloadEdit<'_>) -> Result<EditOutcome, QueueError>;
    async fn discard(&self, ids: &[i64], audit: &AuditEntry) -> Result<Repair, QueueError> {
        shared::finish(
            self.db(),
            ids,
            audit,
            RepairAction::Discard,
            JobState::Discarded,
        )
        .await
    }
    async fn cancel(&self, ids: &[i64], audit: &AuditEntry) -> Result<Repair, QueueError> {
        shared::finish(
            self.db(),
            ids,
            audit,
            RepairAction::Cancel,
            JobState::Cancelled,
        )
        .await
    }
    async fn set_paused(
        &self,
        queue: &str,
        paused: bool,
        audit: &AuditEntry,
    ) -> Result<(), QueueError>;
    /// Ids matching the filter above `after_id`, ascending: pages for bulk repairs.
    async fn matching_ids(
        &self,
        filter: &JobFilter,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<i64>, QueueError> {
        shared::matching_ids(self.db(), filter, after_id, limit).await
    }

    // The dashboard.
    /// Outcome counts per minute and queue since `since` (all kinds added up), oldest first.
    async fn outcome_series(&self, since: DateTime<Utc>) -> Result<Vec<OutcomeCount>, QueueError> {
        shared::outcome_series(self.db(), since).await
    }
    /// Attempts that ended each way per queue and kind since the database was created.
    async fn outcome_totals(&self) -> Result<Vec<OutcomeTotal>, QueueError> {
        shared::outcome_totals(self.db()).await
    }
    /// How many jobs match the filter (`before_id` narrows too): the count a bulk action shows.
    async fn count_matching(&self, filter: &JobFilter) -> Result<i64, QueueError> {
        shared::count_matching(self.db(), filter).await
    }
}

/// The error column's last message, for lists.
pub(crate) fn last_error(errors: &[AttemptError]) -> Option<String> {
    errors.last().map(|e| e.error.clone())
}

/// Bad data in the table must not break a listing: unparsable JSON is shown as its text.
pub(crate) fn lenient_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

pub(crate) fn lenient_errors(text: &str) -> Vec<AttemptError> {
    serde_json::from_str(text).unwrap_or_default()
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Why a repair left a job alone, for the admin who asked.
pub fn skip_reason(state: Option<&String>, action: RepairAction) -> String {
    let allowed: Vec<&str> = action.allowed_from().iter().map(|s| s.as_str()).collect();
    match state {
        None => "no such job".to_string(),
        Some(state) if allowed.contains(&state.as_str()) => {
            format!("job is {state} but its idempotency key is now held by another job")
        }
        Some(state) => format!(
            "job is {state}; {} applies to {} jobs",
            action.as_str(),
            allowed.join(", ")
        ),
    }
}

/// What the rescuer writes for a job whose worker stopped renewing its lease: a spent attempt,
/// then the retry schedule, or `failed` when no attempt is left.
pub(crate) fn rescued(
    id: i64,
    kind: &str,
    attempt: i32,
    max_attempts: i32,
    worker: Option<String>,
    elapsed_ms: Option<i64>,
    policy: &RescuePolicy,
) -> Finished {
    let worker = worker.unwrap_or_default();
    let error = AttemptError {
        attempt,
        at: Utc::now(),
        duration_ms: u64::try_from(elapsed_ms.unwrap_or(0)).unwrap_or(0),
        error: format!(
            "lease expired: worker {worker} stopped renewing it (the process died, hung or lost \
             its database connection)"
        ),
        worker,
    };
    let finish = if attempt >= max_attempts {
        Finish::Failed { error }
    } else {
        Finish::Retry {
            delay: policy(kind, attempt),
            error,
        }
    };
    Finished {
        id,
        attempt,
        finish,
    }
}

/// Jobs of one queue that ended one way (`completed`, `retried`, `failed`, `cancelled`) in one
/// minute: the dashboard's throughput chart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutcomeCount {
    pub minute: DateTime<Utc>,
    pub queue: String,
    pub outcome: String,
    pub count: i64,
}

/// Attempts of one queue and kind that ended one way (`completed`, `retried`, `failed`,
/// `cancelled`) since the database was created, all workers: never pruned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutcomeTotal {
    pub queue: String,
    pub kind: String,
    pub outcome: String,
    pub count: i64,
}
