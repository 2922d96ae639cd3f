//! The queue handle: one per process (or per worker runtime), cheap to clone.
//!
//! Producers enqueue through it; the worker runtime fetches and finishes through
//! [`Queue::driver`]; admins inspect and repair through it.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use crate::audit::AuditEntry;
use crate::db::{Conn, Db, DbError, Exec, Tx};
use crate::driver::{Driver, EditOutcome, JobFilter, PayloadEdit, Repair};
use crate::job::{EnqueueOptions, InvalidJob, Job, NewJob};
use crate::settings::{Backend, DatabaseSettings};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot open the database at {location} within {timeout:?}: {reason}")]
    Connect {
        location: String,
        timeout: Duration,
        reason: String,
    },
    #[error("{0}")]
    Schema(String),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    InvalidJob(#[from] InvalidJob),
    #[error("no job with id {0}")]
    NotFound(i64),
    /// The database answered against its own rules (an insert with no row for a job, a key
    /// neither inserted nor found): a bug or a damaged database, never the caller's input.
    #[error("the database answered inconsistently: {0}")]
    Inconsistent(String),
}

impl QueueError {
    /// The database refused the data itself (a value it cannot store, a constraint): trying the
    /// same statement again cannot help, unlike a lost connection or a busy database.
    pub fn is_bad_data(&self) -> bool {
        matches!(self, QueueError::Database(error) if error.is_bad_data())
    }

    /// An insert that answered no row for a job it was given: the database broke its promise.
    fn no_row() -> QueueError {
        QueueError::Inconsistent("the insert returned no row for a job".into())
    }
}

impl From<sqlx::Error> for QueueError {
    fn from(error: sqlx::Error) -> Self {
        QueueError::Database(DbError::Sqlx(error))
    }
}

/// The result of one enqueue: the job's id, and whether this call created it (`false` when
/// the idempotency key was already held by a live job, whose id this is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    pub id: i64,
    pub created: bool,
}

/// Wake-ups for fetch loops in this process, per queue: local inserts on SQLite, forwarded
/// LISTEN/NOTIFY on PostgreSQL. A wake with no one waiting is kept for the next wait.
#[derive(Default)]
pub struct Wakeups {
    subscribers: Mutex<HashMap<String, Vec<Arc<Notify>>>>,
}

impl Wakeups {
    /// One set of wake-ups per SQLite database in this process, so that an enqueue through any
    /// `Queue` wakes the fetch loops of every other `Queue` on the same file.
    fn shared_for(url: &str) -> Arc<Wakeups> {
        static BY_DATABASE: LazyLock<Mutex<HashMap<String, Weak<Wakeups>>>> =
            LazyLock::new(Mutex::default);
        let Ok(mut by_database) = BY_DATABASE.lock() else {
            return Arc::new(Wakeups::default());
        };
        by_database.retain(|_, w| w.strong_count() > 0);
        if let Some(existing) = by_database.get(url).and_then(Weak::upgrade) {
            return existing;
        }
        let wakeups = Arc::new(Wakeups::default());
        by_database.insert(url.to_string(), Arc::downgrade(&wakeups));
        wakeups
    }

    pub fn subscribe(&self, queue: &str) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        if let Ok(mut subscribers) = self.subscribers.lock() {
            subscribers
                .entry(queue.to_string())
                .or_default()
                .push(notify.clone());
        }
        notify
    }

    pub fn wake(&self, queue: &str) {
        if let Ok(subscribers) = self.subscribers.lock()
            && let Some(list) = subscribers.get(queue)
        {
            list.iter().for_each(|n| n.notify_one());
        }
    }
}

#[derive(Clone)]
pub struct Queue {
    db: Db,
    driver: Arc<dyn Driver>,
    wakeups: Arc<Wakeups>,
}

impl Queue {
    /// Connects within `database.connect_timeout` and checks the schema version.
    pub async fn open(settings: &DatabaseSettings) -> Result<Queue, QueueError> {
        let queue = Self::connect(settings).await?;
        queue.check_schema().await?;
        Ok(queue)
    }

    /// Connects within `database.connect_timeout`, without looking at the schema (for `migrate`).
    #[tracing::instrument(skip_all, fields(database = %settings.url))]
    pub async fn connect(settings: &DatabaseSettings) -> Result<Queue, QueueError> {
        let db = Db::connect(settings).await?;
        let wakeups = match db.backend() {
            Backend::Sqlite => Wakeups::shared_for(settings.url.as_str()),
            Backend::Postgres => Arc::new(Wakeups::default()),
        };
        Ok(Queue {
            driver: db.driver(),
            db,
            wakeups,
        })
    }

    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    pub fn driver(&self) -> &dyn Driver {
        self.driver.as_ref()
    }

    /// The database, for the repositories that keep their rows beside the queue's.
    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn wakeups(&self) -> &Arc<Wakeups> {
        &self.wakeups
    }

    pub async fn migrate(&self) -> Result<(), QueueError> {
        self.driver.migrate().await
    }

    pub async fn check_schema(&self) -> Result<(), QueueError> {
        let applied = self.driver.applied_versions().await?;
        let known = match self.backend() {
            Backend::Postgres => &crate::schema::POSTGRES,
            Backend::Sqlite => &crate::schema::SQLITE,
        };
        crate::schema::compare(&applied, known, self.driver.name()).map_err(QueueError::Schema)
    }

    /// Enqueues a typed job.
    pub async fn enqueue<J: Job>(
        &self,
        job: &J,
        options: EnqueueOptions,
    ) -> Result<Enqueued, QueueError> {
        let new = NewJob::new(job, options)?;
        self.enqueue_new(new).await
    }

    pub async fn enqueue_new(&self, job: NewJob) -> Result<Enqueued, QueueError> {
        let mut results = self.enqueue_many(std::slice::from_ref(&job)).await?;
        results.pop().ok_or_else(QueueError::no_row)
    }

    /// Enqueues many jobs in one statement (chunked only past the database's parameter limits).
    /// Results are in the order of `jobs`.
    #[tracing::instrument(skip_all, fields(count = jobs.len()))]
    pub async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, QueueError> {
        let results = self.driver.insert(jobs).await?;
        self.wake_local(jobs);
        crate::metrics::count_enqueued(created(jobs, &results));
        Ok(results)
    }

    /// Begins a transaction in which the caller may write its own rows and enqueue jobs:
    /// rolled back, nothing is enqueued.
    pub async fn begin(&self) -> Result<JobTx, QueueError> {
        Ok(JobTx {
            inner: self.db.begin().await?,
            wakeups: self.wakeups.clone(),
            queues: Vec::new(),
            created: Vec::new(),
        })
    }

    /// SQLite has no NOTIFY: wake this process's fetch loops; other processes poll.
    /// On PostgreSQL the insert itself notifies every listener, this process included.
    fn wake_local(&self, jobs: &[NewJob]) {
        if self.backend() == Backend::Sqlite {
            for job in jobs {
                self.wakeups.wake(&job.queue);
            }
        }
    }

    // Repairs, each audited.

    pub async fn retry(&self, ids: &[i64], audit: &AuditEntry) -> Result<Repair, QueueError> {
        self.driver.retry(ids, audit).await
    }

    /// Replaces a job's payload and retries it, in one audited transaction; see [`PayloadEdit`].
    pub async fn retry_edited(&self, edit: &PayloadEdit<'_>) -> Result<EditOutcome, QueueError> {
        self.driver.retry_edited(edit).await
    }

    pub async fn discard(&self, ids: &[i64], audit: &AuditEntry) -> Result<Repair, QueueError> {
        self.driver.discard(ids, audit).await
    }

    pub async fn cancel(&self, ids: &[i64], audit: &AuditEntry) -> Result<Repair, QueueError> {
        self.driver.cancel(ids, audit).await
    }

    pub async fn set_paused(
        &self,
        queue: &str,
        paused: bool,
        audit: &AuditEntry,
    ) -> Result<(), QueueError> {
        self.driver.set_paused(queue, paused, audit).await
    }

    /// Ids matching the filter above `after_id`, oldest first, `page` at a time (bulk repairs).
    pub async fn matching_ids(
        &self,
        filter: &JobFilter,
        after_id: i64,
        page: u32,
    ) -> Result<Vec<i64>, QueueError> {
        self.driver.matching_ids(filter, after_id, page).await
    }
}

/// Each job's kind and queue, with whether the insert created it.
fn created<'a>(
    jobs: &'a [NewJob],
    results: &'a [Enqueued],
) -> impl Iterator<Item = (&'a str, &'a str, bool)> {
    jobs.iter()
        .zip(results)
        .map(|(job, result)| (job.kind.as_str(), job.queue.as_str(), result.created))
}

/// A caller's transaction with enqueue in it.
pub struct JobTx {
    inner: Tx,
    wakeups: Arc<Wakeups>,
    queues: Vec<String>,
    /// (kind, queue) of each job created, counted as enqueued when the transaction commits.
    created: Vec<(String, String)>,
}

impl JobTx {
    pub async fn enqueue<J: Job>(
        &mut self,
        job: &J,
        options: EnqueueOptions,
    ) -> Result<Enqueued, QueueError> {
        let new = NewJob::new(job, options)?;
        let mut results = self.enqueue_many(std::slice::from_ref(&new)).await?;
        results.pop().ok_or_else(QueueError::no_row)
    }

    pub async fn enqueue_many(&mut self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, QueueError> {
        let results = crate::driver::insert(self.inner.conn(), jobs).await?;
        self.queues.extend(jobs.iter().map(|j| j.queue.clone()));
        self.created.extend(
            created(jobs, &results)
                .filter(|(_, _, created)| *created)
                .map(|(kind, queue, _)| (kind.to_string(), queue.to_string())),
        );
        Ok(results)
    }

    /// This transaction's connection, for the caller's own statements.
    pub fn conn(&mut self) -> Conn<'_> {
        self.inner.conn()
    }

    /// Operations of the repositories inside this transaction.
    pub fn exec(&mut self) -> Exec<'_> {
        Exec::Conn(self.inner.conn())
    }

    pub async fn commit(self) -> Result<(), QueueError> {
        let sqlite = matches!(self.inner, Tx::Sqlite(_));
        self.inner.commit().await?;
        if sqlite {
            self.queues.iter().for_each(|q| self.wakeups.wake(q));
        }
        crate::metrics::count_enqueued(
            self.created
                .iter()
                .map(|(k, q)| (k.as_str(), q.as_str(), true)),
        );
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), QueueError> {
        Ok(self.inner.rollback().await?)
    }
}

impl<'c> From<&'c mut JobTx> for Exec<'c> {
    fn from(tx: &'c mut JobTx) -> Self {
        tx.exec()
    }
}
