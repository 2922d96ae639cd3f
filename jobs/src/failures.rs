//! Jobs that failed for good since the admins were last told: read and acknowledged inside one
//! transaction, with the alert it enqueues, so every failure is reported once however many
//! worker processes look.
//!
//! A cursor row (`jobq_cursors`, name `failure_alerts`) holds the `finalized_at` up to which
//! failures were reported and, in `updated_at`, when the last alert went out. The row is locked
//! for the transaction (PostgreSQL `FOR UPDATE`; SQLite transactions are `IMMEDIATE`), so two
//! processes never report the same window.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::driver::{last_error, lenient_errors};
use crate::queue::{JobTx, QueueError};

const CURSOR: &str = "failure_alerts";
/// A job's `finalized_at` is taken when its completion transaction starts, and it becomes
/// visible when that commits: the window stops this far before now so none is passed over
/// unseen (a completion slower than this to commit would be; they take milliseconds).
const SETTLE_US: i64 = 10_000_000;
/// At most this many failures are listed in one alert (the rest are counted).
const LISTED: i64 = 50;

/// A job that failed for good.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedJob {
    pub id: i64,
    pub kind: String,
    pub queue: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub failed_at: DateTime<Utc>,
}

/// What [`take_new_failures`] found to report.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFailures {
    /// The oldest failures of the window, at most [`LISTED`].
    pub listed: Vec<FailedJob>,
    /// All failures in the window, listed or not.
    pub total: i64,
    /// Where the window started: a key for the alert (unique per window).
    pub since_us: i64,
}

/// In `tx`: the jobs that failed since the cursor, and the cursor moved past them, when at
/// least `every` has passed since the last alert (times on the database's clock). `None` when there is nothing to report yet
/// (nothing new, or too soon: the failures wait for the next window, gathered). The first call
/// on a database starts the cursor at now: history is not reported.
///
/// Alerts about alerts are left out: a failed `send_dm` keyed `failure_digest:...` is not
/// reported again (an admin who blocked the bot would otherwise get an endless stream).
pub async fn take_new_failures(
    tx: &mut JobTx,
    every: Duration,
) -> Result<Option<NewFailures>, QueueError> {
    let now_us = clock_us(tx).await?;
    let every_us = i64::try_from(every.as_micros()).unwrap_or(i64::MAX);
    let Some((since_us, last_alert_us)) = cursor(tx, now_us).await? else {
        return Ok(None);
    };
    if now_us.saturating_sub(last_alert_us) < every_us {
        return Ok(None);
    }
    let until_us = now_us - SETTLE_US;
    if until_us <= since_us {
        return Ok(None);
    }
    let (listed, total) = failed_between(tx, since_us, until_us).await?;
    if total == 0 {
        return Ok(None);
    }
    advance(tx, until_us, now_us).await?;
    Ok(Some(NewFailures {
        listed,
        total,
        since_us,
    }))
}

/// Now, on the clock that wrote `finalized_at`: the database's on PostgreSQL, this process's on
/// SQLite (whose times the workers write).
async fn clock_us(tx: &mut JobTx) -> Result<i64, QueueError> {
    if let Some(c) = tx.postgres() {
        let now: i64 =
            sqlx::query_scalar("SELECT (extract(epoch from clock_timestamp()) * 1000000)::bigint")
                .fetch_one(&mut *c)
                .await?;
        return Ok(now);
    }
    Ok(Utc::now().timestamp_micros())
}

/// The cursor, locked: (reported up to, last alert at), in microseconds. Created at `now`
/// (and `None` returned) on first use.
async fn cursor(tx: &mut JobTx, now_us: i64) -> Result<Option<(i64, i64)>, QueueError> {
    if let Some(c) = tx.postgres() {
        let row = sqlx::query(
            "SELECT value, (extract(epoch from updated_at) * 1000000)::bigint AS updated_us
               FROM jobq_cursors WHERE name = $1 FOR UPDATE",
        )
        .bind(CURSOR)
        .fetch_optional(&mut *c)
        .await?;
        if let Some(row) = row {
            return Ok(Some((row.try_get("value")?, row.try_get("updated_us")?)));
        }
        sqlx::query(
            "INSERT INTO jobq_cursors (name, value, updated_at)
             VALUES ($1, $2, to_timestamp(0)) ON CONFLICT (name) DO NOTHING",
        )
        .bind(CURSOR)
        .bind(now_us)
        .execute(&mut *c)
        .await?;
        return Ok(None);
    }
    let c = tx.sqlite().ok_or_else(no_connection)?;
    let row = sqlx::query("SELECT value, updated_at FROM jobq_cursors WHERE name = ?1")
        .bind(CURSOR)
        .fetch_optional(&mut *c)
        .await?;
    if let Some(row) = row {
        return Ok(Some((row.try_get("value")?, row.try_get("updated_at")?)));
    }
    sqlx::query(
        "INSERT INTO jobq_cursors (name, value, updated_at) VALUES (?1, ?2, 0)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(CURSOR)
    .bind(now_us)
    .execute(&mut *c)
    .await?;
    Ok(None)
}

/// Failed jobs finalized in `(since, until]`, oldest first, at most [`LISTED`], and their count.
async fn failed_between(
    tx: &mut JobTx,
    since_us: i64,
    until_us: i64,
) -> Result<(Vec<FailedJob>, i64), QueueError> {
    const NOT_AN_ALERT: &str = "NOT (kind = 'send_dm' AND idempotency_key LIKE 'failure_digest:%' \
                                AND idempotency_key IS NOT NULL)";
    if let Some(c) = tx.postgres() {
        let window = "state = 'failed' AND finalized_at > to_timestamp($1 / 1000000.0)
                      AND finalized_at <= to_timestamp($2 / 1000000.0)";
        let rows = sqlx::query(&format!(
            "SELECT id, kind, queue, attempt, errors::text AS errors, finalized_at
               FROM jobq_jobs WHERE {window} AND {NOT_AN_ALERT}
              ORDER BY finalized_at, id LIMIT $3"
        ))
        .bind(since_us)
        .bind(until_us)
        .bind(LISTED)
        .fetch_all(&mut *c)
        .await?;
        let total: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM jobq_jobs WHERE {window} AND {NOT_AN_ALERT}"
        ))
        .bind(since_us)
        .bind(until_us)
        .fetch_one(&mut *c)
        .await?;
        let listed = rows
            .iter()
            .map(|r| {
                Ok(FailedJob {
                    id: r.try_get("id")?,
                    kind: r.try_get("kind")?,
                    queue: r.try_get("queue")?,
                    attempts: r.try_get("attempt")?,
                    last_error: last_error(&lenient_errors(r.try_get("errors")?)),
                    failed_at: r.try_get("finalized_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        return Ok((listed, total));
    }
    let c = tx.sqlite().ok_or_else(no_connection)?;
    let window = "state = 'failed' AND finalized_at > ?1 AND finalized_at <= ?2";
    let rows = sqlx::query(&format!(
        "SELECT id, kind, queue, attempt, errors, finalized_at
           FROM jobq_jobs WHERE {window} AND {NOT_AN_ALERT}
          ORDER BY finalized_at, id LIMIT ?3"
    ))
    .bind(since_us)
    .bind(until_us)
    .bind(LISTED)
    .fetch_all(&mut *c)
    .await?;
    let total: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM jobq_jobs WHERE {window} AND {NOT_AN_ALERT}"
    ))
    .bind(since_us)
    .bind(until_us)
    .fetch_one(&mut *c)
    .await?;
    let listed = rows
        .iter()
        .map(|r| {
            let at: i64 = r.try_get("finalized_at")?;
            Ok(FailedJob {
                id: r.try_get("id")?,
                kind: r.try_get("kind")?,
                queue: r.try_get("queue")?,
                attempts: r.try_get("attempt")?,
                last_error: last_error(&lenient_errors(r.try_get("errors")?)),
                failed_at: DateTime::from_timestamp_micros(at).unwrap_or_default(),
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok((listed, total))
}

/// Moves the cursor to `until` and records the alert's time, `now`.
async fn advance(tx: &mut JobTx, until_us: i64, now_us: i64) -> Result<(), QueueError> {
    if let Some(c) = tx.postgres() {
        sqlx::query(
            "UPDATE jobq_cursors SET value = $2, updated_at = to_timestamp($3 / 1000000.0)
              WHERE name = $1",
        )
        .bind(CURSOR)
        .bind(until_us)
        .bind(now_us)
        .execute(&mut *c)
        .await?;
        return Ok(());
    }
    let c = tx.sqlite().ok_or_else(no_connection)?;
    sqlx::query("UPDATE jobq_cursors SET value = ?2, updated_at = ?3 WHERE name = ?1")
        .bind(CURSOR)
        .bind(until_us)
        .bind(now_us)
        .execute(&mut *c)
        .await?;
    Ok(())
}

fn no_connection() -> QueueError {
    QueueError::Database(sqlx::Error::Protocol(
        "transaction has no connection".into(),
    ))
}
