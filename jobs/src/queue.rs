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
use crate::configuration::{Backend, DatabaseSettings};
use crate::driver::{Driver, JobFilter, Repair, postgres::PostgresDriver, sqlite::SqliteDriver};
use crate::job::{EnqueueOptions, InvalidJob, Job, NewJob};

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
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    InvalidJob(#[from] InvalidJob),
    #[error("no job with id {0}")]
    NotFound(i64),
}

impl QueueError {
    /// The database refused the data itself (a value it cannot store, a constraint): trying the
    /// same statement again cannot help, unlike a lost connection or a busy database.
    pub fn is_bad_data(&self) -> bool {
        let QueueError::Database(sqlx::Error::Database(error)) = self else {
            return false;
        };
        let code = error.code().unwrap_or_default();
        // PostgreSQL SQLSTATE classes 22 (data exception) and 23 (integrity constraint);
        // SQLite primary codes 19 (constraint), 20 (type mismatch) and 25 (range).
        code.starts_with("22")
            || code.starts_with("23")
            || matches!(code.parse::<i32>().map(|c| c & 0xff), Ok(19 | 20 | 25))
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
    driver: Arc<dyn Driver>,
    wakeups: Arc<Wakeups>,
    backend: Backend,
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
        let backend = settings.url.backend();
        let driver: Arc<dyn Driver> = match backend {
            Backend::Postgres => Arc::new(PostgresDriver::connect(settings).await?),
            Backend::Sqlite => Arc::new(SqliteDriver::connect(settings).await?),
        };
        let wakeups = match backend {
            Backend::Sqlite => Wakeups::shared_for(settings.url.as_str()),
            Backend::Postgres => Arc::new(Wakeups::default()),
        };
        Ok(Queue {
            driver,
            wakeups,
            backend,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn driver(&self) -> &dyn Driver {
        self.driver.as_ref()
    }

    /// The PostgreSQL pool, for code that keeps its own rows beside the queue's.
    pub fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
        self.driver
            .as_any()
            .downcast_ref::<PostgresDriver>()
            .map(PostgresDriver::pool)
    }

    /// The SQLite pool, for code that keeps its own rows beside the queue's.
    pub fn sqlite_pool(&self) -> Option<&sqlx::SqlitePool> {
        self.driver
            .as_any()
            .downcast_ref::<SqliteDriver>()
            .map(SqliteDriver::pool)
    }

    pub fn wakeups(&self) -> &Arc<Wakeups> {
        &self.wakeups
    }

    pub async fn migrate(&self) -> Result<(), QueueError> {
        self.driver.migrate().await
    }

    pub async fn check_schema(&self) -> Result<(), QueueError> {
        let applied = self.driver.applied_versions().await?;
        let known = match self.backend {
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
        results.pop().ok_or_else(|| {
            QueueError::Database(sqlx::Error::Protocol("insert returned no row".into()))
        })
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
        let inner = match self.backend {
            Backend::Postgres => TxInner::Postgres(
                self.driver
                    .as_any()
                    .downcast_ref::<PostgresDriver>()
                    .ok_or_else(driver_mismatch)?
                    .begin()
                    .await?,
            ),
            Backend::Sqlite => TxInner::Sqlite(
                self.driver
                    .as_any()
                    .downcast_ref::<SqliteDriver>()
                    .ok_or_else(driver_mismatch)?
                    .begin()
                    .await?,
            ),
        };
        Ok(JobTx {
            inner,
            wakeups: self.wakeups.clone(),
            queues: Vec::new(),
            created: Vec::new(),
        })
    }

    /// SQLite has no NOTIFY: wake this process's fetch loops; other processes poll.
    /// On PostgreSQL the insert itself notifies every listener, this process included.
    fn wake_local(&self, jobs: &[NewJob]) {
        if self.backend == Backend::Sqlite {
            for job in jobs {
                self.wakeups.wake(&job.queue);
            }
        }
    }

    // Repairs, each audited.

    pub async fn retry(&self, ids: &[i64], audit: &AuditEntry) -> Result<Repair, QueueError> {
        self.driver.retry(ids, audit).await
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

fn driver_mismatch() -> QueueError {
    QueueError::Database(sqlx::Error::Protocol(
        "queue backend and driver disagree".into(),
    ))
}

enum TxInner {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

/// A caller's transaction with enqueue in it.
pub struct JobTx {
    inner: TxInner,
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
        results.pop().ok_or_else(|| {
            QueueError::Database(sqlx::Error::Protocol("insert returned no row".into()))
        })
    }

    pub async fn enqueue_many(&mut self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, QueueError> {
        let results = match &mut self.inner {
            TxInner::Postgres(tx) => crate::driver::postgres::insert(tx, jobs).await?,
            TxInner::Sqlite(tx) => crate::driver::sqlite::insert(tx, jobs).await?,
        };
        self.queues.extend(jobs.iter().map(|j| j.queue.clone()));
        self.created.extend(
            created(jobs, &results)
                .filter(|(_, _, created)| *created)
                .map(|(kind, queue, _)| (kind.to_string(), queue.to_string())),
        );
        Ok(results)
    }

    /// The PostgreSQL connection of this transaction, for the caller's own statements.
    pub fn postgres(&mut self) -> Option<&mut sqlx::PgConnection> {
        match &mut self.inner {
            TxInner::Postgres(tx) => Some(tx),
            TxInner::Sqlite(_) => None,
        }
    }

    /// The SQLite connection of this transaction, for the caller's own statements.
    pub fn sqlite(&mut self) -> Option<&mut sqlx::SqliteConnection> {
        match &mut self.inner {
            TxInner::Sqlite(tx) => Some(tx),
            TxInner::Postgres(_) => None,
        }
    }

    pub async fn commit(self) -> Result<(), QueueError> {
        let sqlite = matches!(self.inner, TxInner::Sqlite(_));
        match self.inner {
            TxInner::Postgres(tx) => tx.commit().await?,
            TxInner::Sqlite(tx) => tx.commit().await?,
        }
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
        match self.inner {
            TxInner::Postgres(tx) => tx.rollback().await?,
            TxInner::Sqlite(tx) => tx.rollback().await?,
        }
        Ok(())
    }
}
