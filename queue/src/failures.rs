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

use crate::db::{Conn, DbError, Fields, Stamp, micros, on_conn, row_id};
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

/// Failed jobs that are not reported: the alerts themselves (jobs of `kind` whose key starts
/// with `key_prefix`), so that an alert that fails for good (an admin who blocked the bot)
/// does not start an endless stream of alerts about alerts.
#[derive(Debug, Clone, Copy)]
pub struct NotReported<'a> {
    pub kind: &'a str,
    pub key_prefix: &'a str,
}

/// In `tx`: the jobs that failed since the cursor, and the cursor moved past them, when at
/// least `every` has passed since the last alert (times on the database's clock). `None` when
/// there is nothing to report yet (nothing new, or too soon: the failures wait for the next
/// window, gathered). The first call on a database starts the cursor at now: history is not
/// reported.
pub async fn take_new_failures(
    tx: &mut JobTx,
    every: Duration,
    not_reported: NotReported<'_>,
) -> Result<Option<NewFailures>, QueueError> {
    let now_us = clock_us(tx.conn()).await?;
    let Some((since_us, last_alert_us)) = cursor(tx.conn(), now_us).await? else {
        return Ok(None);
    };
    if now_us.saturating_sub(last_alert_us) < micros(every) {
        return Ok(None);
    }
    let until_us = now_us - SETTLE_US;
    if until_us <= since_us {
        return Ok(None);
    }
    let (listed, total) = failed_between(tx.conn(), since_us, until_us, not_reported).await?;
    if total == 0 {
        return Ok(None);
    }
    advance(tx.conn(), until_us, now_us).await?;
    Ok(Some(NewFailures {
        listed,
        total,
        since_us,
    }))
}

/// Now, on the clock that wrote `finalized_at`: the database's on PostgreSQL (whose completer
/// stamps rows with it), this process's on SQLite (whose times the workers write).
async fn clock_us(conn: Conn<'_>) -> Result<i64, QueueError> {
    match conn {
        Conn::Postgres(c) => {
            let now: Stamp = sqlx::query_scalar("SELECT clock_timestamp()")
                .fetch_one(&mut *c)
                .await?;
            Ok(now.0.timestamp_micros())
        }
        Conn::Sqlite(_) => Ok(Utc::now().timestamp_micros()),
    }
}

fn stamp(us: i64) -> Stamp {
    Stamp(DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MIN_UTC))
}

/// The cursor, locked: (reported up to, last alert at), in microseconds. Created at `now`
/// (and `None` returned) on first use.
async fn cursor(conn: Conn<'_>, now_us: i64) -> Result<Option<(i64, i64)>, QueueError> {
    // PostgreSQL locks the row for the transaction; on SQLite the IMMEDIATE transaction
    // already holds the only write lock.
    let select = match conn {
        Conn::Postgres(_) => {
            "SELECT value, updated_at FROM jobq_cursors WHERE name = $1 FOR UPDATE"
        }
        Conn::Sqlite(_) => "SELECT value, updated_at FROM jobq_cursors WHERE name = $1",
    };
    Ok(on_conn!(conn.into(), |c| {
        let row = sqlx::query(select)
            .bind(CURSOR)
            .fetch_optional(&mut *c)
            .await?;
        if let Some(row) = row {
            let f = Fields::new(&row, "jobq_cursors", CURSOR);
            let updated: Stamp = f.get("updated_at")?;
            Some((f.get("value")?, updated.0.timestamp_micros()))
        } else {
            sqlx::query(
                "INSERT INTO jobq_cursors (name, value, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(CURSOR)
            .bind(now_us)
            .bind(stamp(0))
            .execute(&mut *c)
            .await?;
            None
        }
    }))
}

/// Failed jobs finalized in `(since, until]`, oldest first, at most [`LISTED`], and their count.
async fn failed_between(
    conn: Conn<'_>,
    since_us: i64,
    until_us: i64,
    not_reported: NotReported<'_>,
) -> Result<(Vec<FailedJob>, i64), QueueError> {
    const WHERE: &str = "state = 'failed' AND finalized_at > $1 AND finalized_at <= $2
        AND NOT (kind = $3 AND idempotency_key IS NOT NULL
                 AND substr(idempotency_key, 1, length($4)) = $4)";
    let listed = format!(
        "SELECT id, kind, queue, attempt, CAST(errors AS TEXT) AS errors, finalized_at
           FROM jobq_jobs WHERE {WHERE} ORDER BY finalized_at, id LIMIT $5"
    );
    let count = format!("SELECT count(*) FROM jobq_jobs WHERE {WHERE}");
    let (since, until) = (stamp(since_us), stamp(until_us));
    Ok(on_conn!(conn.into(), |c| {
        let rows = sqlx::query(&listed)
            .bind(since)
            .bind(until)
            .bind(not_reported.kind)
            .bind(not_reported.key_prefix)
            .bind(LISTED)
            .fetch_all(&mut *c)
            .await?;
        let total: i64 = sqlx::query_scalar(&count)
            .bind(since)
            .bind(until)
            .bind(not_reported.kind)
            .bind(not_reported.key_prefix)
            .fetch_one(&mut *c)
            .await?;
        let listed = rows
            .iter()
            .map(|r| {
                let id = row_id(r, "jobq_jobs")?;
                let f = Fields::new(r, "jobq_jobs", id);
                Ok(FailedJob {
                    id,
                    kind: f.get("kind")?,
                    queue: f.get("queue")?,
                    attempts: f.get("attempt")?,
                    last_error: last_error(&lenient_errors(&f.get::<String>("errors")?)),
                    failed_at: f.get::<Stamp>("finalized_at")?.into(),
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        (listed, total)
    }))
}

/// Moves the cursor to `until` and records the alert's time, `now`.
async fn advance(conn: Conn<'_>, until_us: i64, now_us: i64) -> Result<(), QueueError> {
    on_conn!(conn.into(), |c| {
        sqlx::query("UPDATE jobq_cursors SET value = $2, updated_at = $3 WHERE name = $1")
            .bind(CURSOR)
            .bind(until_us)
            .bind(stamp(now_us))
            .execute(&mut *c)
            .await?;
    });
    Ok(())
}
