//! The ledger of sent messages (`jobq_sent_messages`, migration 0003): one row per message a
//! job sent, keyed by the job's idempotency key (else `job:<id>`, [`ledger_key`]). A sending
//! handler looks its key up first and sends nothing when it is there; after a send it records
//! the key (insert-if-absent, so a second record of the same key changes nothing).
//!
//! One SQL text per statement for both backends (see [`crate::db`]).

use chrono::{DateTime, Utc};

use crate::Queue;
use crate::db::{Db, DbError, Fields, Stamp, on_conn};
use crate::kinds::Platform;

/// The ledger key of a job: its idempotency key, else `job:<id>` (unique per job, so a
/// retried attempt of the same job finds its own send).
pub fn ledger_key(job_key: Option<&str>, job_id: i64) -> String {
    crate::job::key_or_id(job_key, job_id)
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
#[error("sent-message ledger: {0}")]
pub struct LedgerError(#[from] DbError);

impl From<sqlx::Error> for LedgerError {
    fn from(error: sqlx::Error) -> Self {
        LedgerError(DbError::Sqlx(error))
    }
}

/// The ledger of the queue's database. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    db: Db,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("backend", &self.db.backend())
            .finish()
    }
}

impl Ledger {
    pub fn new(queue: &Queue) -> Ledger {
        Ledger {
            db: queue.db().clone(),
        }
    }

    /// The send recorded under `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<SentRecord>, LedgerError> {
        const SQL: &str = "SELECT key, platform, user_id, message_id, job_id, sent_at
                             FROM jobq_sent_messages WHERE key = $1";
        on_conn!(self.db.exec(), |c| {
            let row = sqlx::query(SQL).bind(key).fetch_optional(&mut *c).await?;
            row.as_ref()
                .map(|r| {
                    let f = Fields::new(r, "jobq_sent_messages", key);
                    Ok(SentRecord {
                        key: f.get("key")?,
                        platform: f.get("platform")?,
                        user_id: f.get("user_id")?,
                        message_id: f.get("message_id")?,
                        job_id: f.get("job_id")?,
                        sent_at: f.get::<Stamp>("sent_at")?.into(),
                    })
                })
                .transpose()
        })
    }

    /// Records a send unless its key is already there; true when this call recorded it.
    pub async fn record(&self, entry: &SentEntry) -> Result<bool, LedgerError> {
        const SQL: &str =
            "INSERT INTO jobq_sent_messages (key, platform, user_id, message_id, job_id, sent_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (key) DO NOTHING";
        let inserted = on_conn!(self.db.exec(), |c| {
            sqlx::query(SQL)
                .bind(&entry.key)
                .bind(entry.platform.as_str())
                .bind(entry.user_id)
                .bind(&entry.message_id)
                .bind(entry.job_id)
                .bind(Stamp::now())
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
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
