//! The ledger of sent messages (`jobq_sent_messages`, migration 0003): one row per message a
//! job sent, keyed by the job's idempotency key (else `job:<id>`, [`ledger_key`]). A sending
//! handler looks its key up first and sends nothing when it is there; after a send it records
//! the key (insert-if-absent, so a second record of the same key changes nothing).
//!
//! The same behaviour on both backends; the SQL of each is below (PostgreSQL `TIMESTAMPTZ`,
//! SQLite INTEGER microseconds since the epoch).

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::Queue;
use crate::configuration::Backend;
use crate::kinds::Platform;

/// The ledger key of a job: its idempotency key, else `job:<id>` (unique per job, so a
/// retried attempt of the same job finds its own send).
pub fn ledger_key(job_key: Option<&str>, job_id: i64) -> String {
    match job_key {
        Some(key) if !key.is_empty() => key.to_owned(),
        _ => format!("job:{job_id}"),
    }
}

/// A message to record as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEntry {
    pub key: String,
    pub platform: Platform,
    pub user_id: i64,
    /// The platform's id of the message, when it said one.
    pub message_id: Option<String>,
    pub job_id: Option<i64>,
}

/// A recorded send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRecord {
    pub key: String,
    pub platform: String,
    pub user_id: i64,
    pub message_id: Option<String>,
    pub job_id: Option<i64>,
    pub sent_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("sent-message ledger: {0}")]
    Database(#[from] sqlx::Error),
    #[error("sent-message ledger: the queue's backend has no pool of its kind")]
    Backend,
    #[error("sent-message ledger: row {key:?} has a bad sent_at ({us})")]
    Corrupt { key: String, us: i64 },
}

#[derive(Clone)]
enum Pool {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

/// The ledger of the queue's database. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    pool: Pool,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match self.pool {
            Pool::Postgres(_) => "postgres",
            Pool::Sqlite(_) => "sqlite",
        };
        f.debug_struct("Ledger").field("backend", &backend).finish()
    }
}

impl Ledger {
    pub fn new(queue: &Queue) -> Result<Ledger, LedgerError> {
        let pool = match queue.backend() {
            Backend::Postgres => queue.postgres_pool().cloned().map(Pool::Postgres),
            Backend::Sqlite => queue.sqlite_pool().cloned().map(Pool::Sqlite),
        };
        pool.map(|pool| Ledger { pool }).ok_or(LedgerError::Backend)
    }

    /// The send recorded under `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<SentRecord>, LedgerError> {
        match &self.pool {
            Pool::Postgres(pool) => {
                let row = sqlx::query(
                    "SELECT key, platform, user_id, message_id, job_id, sent_at
                       FROM jobq_sent_messages WHERE key = $1",
                )
                .bind(key)
                .fetch_optional(pool)
                .await?;
                row.map(|r| {
                    Ok(SentRecord {
                        key: r.try_get("key")?,
                        platform: r.try_get("platform")?,
                        user_id: r.try_get("user_id")?,
                        message_id: r.try_get("message_id")?,
                        job_id: r.try_get("job_id")?,
                        sent_at: r.try_get("sent_at")?,
                    })
                })
                .transpose()
            }
            Pool::Sqlite(pool) => {
                let row = sqlx::query(
                    "SELECT key, platform, user_id, message_id, job_id, sent_at
                       FROM jobq_sent_messages WHERE key = ?1",
                )
                .bind(key)
                .fetch_optional(pool)
                .await?;
                row.map(|r| {
                    let key: String = r.try_get("key")?;
                    let us: i64 = r.try_get("sent_at")?;
                    let sent_at = DateTime::from_timestamp_micros(us).ok_or_else(|| {
                        LedgerError::Corrupt {
                            key: key.clone(),
                            us,
                        }
                    })?;
                    Ok(SentRecord {
                        key,
                        platform: r.try_get("platform")?,
                        user_id: r.try_get("user_id")?,
                        message_id: r.try_get("message_id")?,
                        job_id: r.try_get("job_id")?,
                        sent_at,
                    })
                })
                .transpose()
            }
        }
    }

    /// Records a send unless its key is already there; true when this call recorded it.
    pub async fn record(&self, entry: &SentEntry) -> Result<bool, LedgerError> {
        let inserted = match &self.pool {
            Pool::Postgres(pool) => sqlx::query(
                "INSERT INTO jobq_sent_messages (key, platform, user_id, message_id, job_id)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(&entry.key)
            .bind(entry.platform.as_str())
            .bind(entry.user_id)
            .bind(&entry.message_id)
            .bind(entry.job_id)
            .execute(pool)
            .await?
            .rows_affected(),
            Pool::Sqlite(pool) => sqlx::query(
                "INSERT INTO jobq_sent_messages (key, platform, user_id, message_id, job_id, sent_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(&entry.key)
            .bind(entry.platform.as_str())
            .bind(entry.user_id)
            .bind(&entry.message_id)
            .bind(entry.job_id)
            .bind(Utc::now().timestamp_micros())
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(inserted == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_jobs_key_else_its_id() {
        assert_eq!(ledger_key(Some("provision:7:dm"), 3), "provision:7:dm");
        assert_eq!(ledger_key(None, 3), "job:3");
        assert_eq!(ledger_key(Some(""), 3), "job:3");
    }
}
