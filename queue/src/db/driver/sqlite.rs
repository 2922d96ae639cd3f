//! The SQLite driver: the embedded default. One file in WAL mode, `synchronous=FULL` unless
//! configured otherwise; batches travel as one JSON array read with `json_each`; every write of
//! more than one statement is a `BEGIN IMMEDIATE` transaction (a deferred one could fail to
//! upgrade to a write lock without waiting for it).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::sqlite::SqlitePool;
use sqlx::{Row, SqliteConnection};

use super::shared;
use super::{
    Driver, EditOutcome, FetchedJob, Finish, Finished, PayloadEdit, Repair, RescuePolicy,
    StatCount, StatKey, claimed, rescue_row,
};
use crate::audit::AuditEntry;
use crate::db::{Conn, Db, Exec};
use crate::job::NewJob;
use crate::queue::{Enqueued, QueueError, Wakeups};
use crate::state::RepairAction;

pub struct SqliteDriver {
    db: Db,
    pool: SqlitePool,
    location: String,
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn now() -> i64 {
    micros(Utc::now())
}

impl SqliteDriver {
    pub(in crate::db) fn new(db: Db, pool: SqlitePool, location: String) -> Self {
        SqliteDriver { db, pool, location }
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, QueueError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

const INSERT: &str = r#"
INSERT INTO jobq_jobs (kind, queue, payload, state, priority, max_attempts, idempotency_key,
                       run_at, created_at)
SELECT json_extract(value, '$.kind'), json_extract(value, '$.queue'),
       json_extract(value, '$.payload'),
       CASE WHEN json_extract(value, '$.run_at') > ?2 THEN 'scheduled' ELSE 'available' END,
       json_extract(value, '$.priority'), json_extract(value, '$.max_attempts'),
       json_extract(value, '$.key'), COALESCE(json_extract(value, '$.run_at'), ?2), ?2
FROM json_each(?1) WHERE true
ON CONFLICT (idempotency_key)
    WHERE idempotency_key IS NOT NULL AND state NOT IN ('cancelled', 'discarded')
    DO NOTHING
RETURNING id, idempotency_key
"#;

/// Inserts a batch in one statement, inside the caller's (immediate) transaction.
pub async fn insert(
    conn: &mut SqliteConnection,
    jobs: &[NewJob],
) -> Result<Vec<Enqueued>, QueueError> {
    let rows: Vec<serde_json::Value> = jobs
        .iter()
        .map(|j| {
            json!({
                "kind": j.kind, "queue": j.queue, "payload": j.payload.to_string(),
                "priority": j.priority, "max_attempts": j.max_attempts, "key": j.key,
                "run_at": j.run_at.map(micros),
            })
        })
        .collect();
    let returned = sqlx::query(INSERT)
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(now())
        .fetch_all(&mut *conn)
        .await?;
    let mut inserted: Vec<(i64, Option<String>)> = returned
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()?;
    inserted.sort_by_key(|(id, _)| *id);
    let keys: Vec<&str> = jobs.iter().filter_map(|j| j.key.as_deref()).collect();
    let held: HashMap<String, i64> = if keys.is_empty() {
        HashMap::new()
    } else {
        let rows = sqlx::query(
            "SELECT idempotency_key, id FROM jobq_jobs
             WHERE idempotency_key IN (SELECT value FROM json_each(?1))
               AND state NOT IN ('cancelled', 'discarded')",
        )
        .bind(serde_json::to_string(&keys).unwrap_or_default())
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?
    };
    let positions: Vec<usize> = (0..jobs.len()).collect();
    let batch: Vec<&NewJob> = jobs.iter().collect();
    let mut results = vec![None; jobs.len()];
    super::postgres::assign(&positions, &batch, &inserted, &held, &mut results);
    results
        .into_iter()
        .map(|r| {
            r.ok_or_else(|| {
                QueueError::Inconsistent(
                    "a job could neither be inserted nor found by its key".into(),
                )
            })
        })
        .collect()
}

const FETCH: &str = r#"
UPDATE jobq_jobs
SET state = 'running', attempt = min(attempt, 2147483646) + 1, attempted_at = ?3, attempted_by = ?4,
    locked_until = ?5
WHERE id IN (
    SELECT id FROM jobq_jobs
    WHERE queue = ?1 AND state IN ('available', 'scheduled', 'retrying') AND run_at <= ?3
      AND kind NOT IN (SELECT value FROM json_each(?6))
      AND NOT EXISTS (SELECT 1 FROM jobq_queues WHERE name = ?1 AND paused)
    ORDER BY priority DESC, run_at, id
    LIMIT ?2)
RETURNING id, kind, queue, payload, attempt, max_attempts, idempotency_key, snoozes, run_at,
          attempted_at
"#;

const COMPLETE: &str = r#"
UPDATE jobq_jobs SET state = 'completed', finalized_at = ?2, locked_until = NULL
FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS attempt
      FROM json_each(?1)) AS u
WHERE jobq_jobs.id = u.id AND jobq_jobs.attempt = u.attempt AND jobq_jobs.state = 'running'
"#;

/// A snooze (`scheduled`, no error) gives its attempt back and counts one more snooze.
const FINISH_WITH_ERROR: &str = r#"
UPDATE jobq_jobs
SET state = u.state,
    run_at = CASE WHEN u.state IN ('retrying', 'scheduled') THEN ?2 + u.delay_us
                  ELSE jobq_jobs.run_at END,
    finalized_at = CASE WHEN u.state IN ('retrying', 'scheduled') THEN NULL ELSE ?2 END,
    locked_until = NULL,
    attempt = CASE WHEN u.state = 'scheduled' THEN jobq_jobs.attempt - 1 ELSE jobq_jobs.attempt END,
    snoozes = CASE WHEN u.state = 'scheduled' THEN jobq_jobs.snoozes + 1 ELSE jobq_jobs.snoozes END,
    errors = CASE WHEN u.error IS NULL THEN jobq_jobs.errors
                  ELSE json_insert(CASE WHEN json_valid(jobq_jobs.errors) THEN jobq_jobs.errors
                                        ELSE '[]' END,
                                   '$[#]', json(u.error)) END
FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.attempt') AS attempt,
             json_extract(value, '$.state') AS state, json_extract(value, '$.delay_us') AS delay_us,
             json_extract(value, '$.error') AS error
      FROM json_each(?1)) AS u
WHERE jobq_jobs.id = u.id AND jobq_jobs.attempt = u.attempt AND jobq_jobs.state = 'running'
"#;

async fn finish_with_error(
    conn: &mut SqliteConnection,
    finished: &[&Finished],
) -> Result<(), QueueError> {
    let rows: Vec<serde_json::Value> = finished
        .iter()
        .filter_map(|f| {
            let (delay, error) = match &f.finish {
                Finish::Completed => return None,
                Finish::Snooze { delay } => (crate::db::micros(*delay), None),
                Finish::Retry { delay, error } => (crate::db::micros(*delay), Some(error)),
                Finish::Failed { error } | Finish::Cancelled { error } => (0, Some(error)),
            };
            Some(json!({
                "id": f.id, "attempt": f.attempt, "state": f.finish.state().as_str(),
                "delay_us": delay, "error": error,
            }))
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(FINISH_WITH_ERROR)
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(now())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn id_pairs(jobs: &[(i64, i32)]) -> String {
    serde_json::to_string(jobs).unwrap_or_else(|_| "[]".into())
}

#[async_trait]
impl Driver for SqliteDriver {
    fn name(&self) -> &str {
        &self.location
    }

    fn db(&self) -> &Db {
        &self.db
    }

    async fn migrate(&self) -> Result<(), QueueError> {
        crate::schema::SQLITE.run(&self.pool).await?;
        Ok(())
    }

    async fn applied_versions(&self) -> Result<Vec<i64>, QueueError> {
        let exists: bool = sqlx::query_scalar(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_one(&self.pool)
        .await?;
        if !exists {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn insert(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, QueueError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let results = insert(&mut tx, jobs).await?;
        tx.commit().await?;
        Ok(results)
    }

    async fn listen(&self, _wakeups: Arc<Wakeups>) -> Result<(), QueueError> {
        // No NOTIFY in SQLite: local inserts wake directly, other processes are polled for.
        std::future::pending().await
    }

    async fn fetch(
        &self,
        queue: &str,
        limit: u32,
        worker: &str,
        lease: Duration,
        skip_kinds: &[String],
    ) -> Result<Vec<FetchedJob>, QueueError> {
        let now = now();
        let rows = sqlx::query(FETCH)
            .bind(queue)
            .bind(i64::from(limit))
            .bind(now)
            .bind(worker)
            .bind(now + crate::db::micros(lease))
            .bind(serde_json::to_string(skip_kinds).unwrap_or_else(|_| "[]".into()))
            .fetch_all(&self.pool)
            .await?;
        Ok(claimed(&rows, worker).settle(self).await)
    }

    async fn finish(&self, finished: &[Finished]) -> Result<(), QueueError> {
        let (completed, others): (Vec<&Finished>, Vec<&Finished>) = finished
            .iter()
            .partition(|f| matches!(f.finish, Finish::Completed));
        let mut tx = self.begin().await?;
        if !completed.is_empty() {
            let pairs: Vec<(i64, i32)> = completed.iter().map(|f| (f.id, f.attempt)).collect();
            sqlx::query(COMPLETE)
                .bind(id_pairs(&pairs))
                .bind(now())
                .execute(&mut *tx)
                .await?;
        }
        finish_with_error(&mut tx, &others).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn extend_leases(
        &self,
        jobs: &[(i64, i32)],
        lease: Duration,
    ) -> Result<Vec<i64>, QueueError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let held = sqlx::query_scalar(
            "UPDATE jobq_jobs SET locked_until = ?2
             FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS attempt
                   FROM json_each(?1)) AS u
             WHERE jobq_jobs.id = u.id AND jobq_jobs.attempt = u.attempt
               AND jobq_jobs.state = 'running'
             RETURNING id",
        )
        .bind(id_pairs(jobs))
        .bind(now() + crate::db::micros(lease))
        .fetch_all(&self.pool)
        .await?;
        Ok(held)
    }

    async fn release(&self, jobs: &[(i64, i32)]) -> Result<u64, QueueError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let done = sqlx::query(
            "UPDATE jobq_jobs SET state = 'available', attempt = jobq_jobs.attempt - 1,
                    locked_until = NULL, run_at = ?2
             FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS attempt
                   FROM json_each(?1)) AS u
             WHERE jobq_jobs.id = u.id AND jobq_jobs.attempt = u.attempt
               AND jobq_jobs.state = 'running'",
        )
        .bind(id_pairs(jobs))
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn rescue_expired(
        &self,
        policy: &RescuePolicy,
        limit: u32,
    ) -> Result<Vec<Finished>, QueueError> {
        let mut tx = self.begin().await?;
        let now = now();
        let rows = sqlx::query(
            "SELECT id, kind, attempt, max_attempts, attempted_by, attempted_at
             FROM jobq_jobs WHERE state = 'running' AND locked_until < ?1
             ORDER BY locked_until LIMIT ?2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let rescued: Vec<Finished> = rows
            .iter()
            .filter_map(|row| rescue_row(row, policy))
            .collect();
        let refs: Vec<&Finished> = rescued.iter().collect();
        finish_with_error(&mut tx, &refs).await?;
        tx.commit().await?;
        Ok(rescued)
    }

    async fn promote_scheduled(&self) -> Result<u64, QueueError> {
        let done = sqlx::query(
            "UPDATE jobq_jobs SET state = 'available'
             WHERE id IN (SELECT id FROM jobq_jobs
                          WHERE state IN ('scheduled', 'retrying') AND run_at <= ?1
                          ORDER BY run_at LIMIT 1000)",
        )
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn prune(
        &self,
        finished_before: DateTime<Utc>,
        stats_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, QueueError> {
        let jobs = sqlx::query(
            "DELETE FROM jobq_jobs WHERE id IN (
                 SELECT id FROM jobq_jobs
                 WHERE state IN ('completed', 'cancelled', 'discarded') AND finalized_at < ?1
                 LIMIT ?2)",
        )
        .bind(micros(finished_before))
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM jobq_stats WHERE minute < ?1")
            .bind(micros(stats_before))
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM jobq_workers WHERE heartbeat_at < ?1")
            .bind(now() - 3_600_000_000)
            .execute(&self.pool)
            .await?;
        Ok(jobs.rows_affected())
    }

    async fn add_stats(&self, stats: &[(StatKey, StatCount)]) -> Result<(), QueueError> {
        if stats.is_empty() {
            return Ok(());
        }
        let rows: Vec<serde_json::Value> = stats
            .iter()
            .map(|(k, c)| {
                json!([
                    micros(k.minute),
                    k.queue,
                    k.kind,
                    k.outcome,
                    c.count,
                    c.duration_ms
                ])
            })
            .collect();
        let rows = serde_json::Value::Array(rows).to_string();
        // The per-minute counts and the totals move together: one transaction.
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO jobq_stats (minute, queue, kind, outcome, count, duration_ms)
             SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                    json_extract(value, '$[2]'), json_extract(value, '$[3]'),
                    json_extract(value, '$[4]'), json_extract(value, '$[5]')
             FROM json_each(?1) WHERE true
             ON CONFLICT (minute, queue, kind, outcome) DO UPDATE
             SET count = jobq_stats.count + excluded.count,
                 duration_ms = jobq_stats.duration_ms + excluded.duration_ms",
        )
        .bind(&rows)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO jobq_outcome_totals (queue, kind, outcome, count)
             SELECT json_extract(value, '$[1]'), json_extract(value, '$[2]'),
                    json_extract(value, '$[3]'), sum(json_extract(value, '$[4]'))
             FROM json_each(?1) GROUP BY 1, 2, 3
             ON CONFLICT (queue, kind, outcome) DO UPDATE
             SET count = jobq_outcome_totals.count + excluded.count",
        )
        .bind(&rows)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn retry(&self, ids: &[i64], entry: &AuditEntry) -> Result<Repair, QueueError> {
        shared::repair(&self.db, ids, entry, retry_update, RepairAction::Retry).await
    }

    async fn retry_edited(&self, edit: &PayloadEdit<'_>) -> Result<EditOutcome, QueueError> {
        shared::retry_edited(&self.db, edit, retry_update).await
    }

    async fn set_paused(
        &self,
        queue: &str,
        paused: bool,
        entry: &AuditEntry,
    ) -> Result<(), QueueError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO jobq_queues (name, paused, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at",
        )
        .bind(queue)
        .bind(paused)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        shared::audit(Exec::Conn(Conn::Sqlite(&mut tx)), entry, 0).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The retry repair's statement (ids bound per `ids`, the time as `$2`), for `retry` and
/// `retry_edited`.
fn retry_update(ids: &str) -> String {
    format!(
        "UPDATE jobq_jobs AS j SET state = 'available', run_at = $2, finalized_at = NULL,
                locked_until = NULL, max_attempts = max(j.max_attempts, j.attempt + 1)
         WHERE j.id {ids} AND j.state IN ({})
           AND (j.idempotency_key IS NULL OR j.state NOT IN ('cancelled', 'discarded')
                OR NOT EXISTS (SELECT 1 FROM jobq_jobs o
                               WHERE o.idempotency_key = j.idempotency_key AND o.id <> j.id
                                 AND o.state NOT IN ('cancelled', 'discarded')))
         RETURNING id",
        RepairAction::Retry.sql_states()
    )
}
