//! The PostgreSQL driver: batches as arrays through `unnest`, claims with `FOR UPDATE SKIP
//! LOCKED`, wake-ups with NOTIFY sent inside the inserting transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgListener, PgPool};
use sqlx::{PgConnection, Row};

use super::shared;
use super::{
    Driver, EditOutcome, FetchedJob, Finish, Finished, PayloadEdit, Repair, RescuePolicy,
    StatCount, StatKey, claimed, duration_ms, rescue_row,
};
use crate::audit::AuditEntry;
use crate::db::{Conn, Db, Exec};
use crate::job::NewJob;
use crate::queue::{Enqueued, QueueError, Wakeups};
use crate::state::RepairAction;

/// The channel inserts notify on; the payload is the queue name.
pub const CHANNEL: &str = "jobq_jobs";

pub struct PostgresDriver {
    db: Db,
    pool: PgPool,
    location: String,
}

impl PostgresDriver {
    pub(in crate::db) fn new(db: Db, pool: PgPool, location: String) -> Self {
        PostgresDriver { db, pool, location }
    }
}

pub async fn insert(conn: &mut PgConnection, jobs: &[NewJob]) -> Result<Vec<Enqueued>, QueueError> {
    let mut results: Vec<Option<Enqueued>> = vec![None; jobs.len()];
    // A key whose holder was discarded between our conflict and our look-up is tried again.
    for _ in 0..3 {
        let pending: Vec<usize> = (0..jobs.len()).filter(|i| results[*i].is_none()).collect();
        if pending.is_empty() {
            break;
        }
        let batch: Vec<&NewJob> = pending.iter().map(|i| &jobs[*i]).collect();
        let inserted = insert_rows(conn, &batch).await?;
        let held = held_keys(conn, &batch).await?;
        assign(&pending, &batch, &inserted, &held, &mut results);
    }
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.ok_or_else(|| {
                QueueError::Inconsistent(format!(
                    "job {i} of the batch could neither be inserted nor found by its key"
                ))
            })
        })
        .collect()
}

/// The insert, with the idempotency check only when some job carries a key: `ON CONFLICT`
/// makes every row a speculative insertion, which keyless bulk inserts need not pay for.
fn insert_sql(with_keys: bool) -> String {
    let on_conflict = if with_keys {
        "ON CONFLICT (idempotency_key)
             WHERE idempotency_key IS NOT NULL AND state NOT IN ('cancelled', 'discarded')
             DO NOTHING"
    } else {
        ""
    };
    format!(
        r#"
WITH ins AS (
    INSERT INTO jobq_jobs (kind, queue, payload, state, priority, max_attempts, idempotency_key, run_at)
    SELECT kind, queue, payload::jsonb,
           CASE WHEN run_at IS NOT NULL AND run_at > now() THEN 'scheduled' ELSE 'available' END,
           priority, max_attempts, key, COALESCE(run_at, now())
    FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::int[], $6::text[],
                $7::timestamptz[]) AS t(kind, queue, payload, priority, max_attempts, key, run_at)
    {on_conflict}
    RETURNING id, idempotency_key, queue, state
), notified AS (
    SELECT count(pg_notify('jobq_jobs', q)) AS n
    FROM (SELECT DISTINCT queue AS q FROM ins WHERE state = 'available') d
)
SELECT ins.id, ins.idempotency_key FROM ins CROSS JOIN notified ORDER BY ins.id
"#
    )
}

async fn insert_rows(
    conn: &mut PgConnection,
    jobs: &[&NewJob],
) -> Result<Vec<(i64, Option<String>)>, QueueError> {
    let with_keys = jobs.iter().any(|j| j.key.is_some());
    let sql = insert_sql(with_keys);
    let rows = sqlx::query(&sql)
        .bind(jobs.iter().map(|j| j.kind.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.queue.as_str()).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| j.payload.to_string())
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|j| j.priority).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| i32::try_from(j.max_attempts).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|j| j.key.as_deref()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.run_at).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

async fn held_keys(
    conn: &mut PgConnection,
    jobs: &[&NewJob],
) -> Result<HashMap<String, i64>, QueueError> {
    let keys: Vec<&str> = jobs.iter().filter_map(|j| j.key.as_deref()).collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(
        "SELECT idempotency_key, id FROM jobq_jobs
         WHERE idempotency_key = ANY($1) AND state NOT IN ('cancelled', 'discarded')",
    )
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// Matches inserted rows back to the batch: keyed jobs by key, keyless ones in id order (ids
/// come from one sequence in the order the rows were inserted).
pub(crate) fn assign(
    positions: &[usize],
    batch: &[&NewJob],
    inserted: &[(i64, Option<String>)],
    held: &HashMap<String, i64>,
    results: &mut [Option<Enqueued>],
) {
    let mut created_by_key: HashMap<&str, i64> = inserted
        .iter()
        .filter_map(|(id, key)| key.as_deref().map(|k| (k, *id)))
        .collect();
    let mut keyless = inserted
        .iter()
        .filter(|(_, key)| key.is_none())
        .map(|(id, _)| *id);
    for (position, job) in positions.iter().zip(batch) {
        results[*position] = match job.key.as_deref() {
            None => keyless.next().map(|id| Enqueued { id, created: true }),
            Some(key) => match created_by_key.remove(key) {
                Some(id) => Some(Enqueued { id, created: true }),
                None => held.get(key).map(|id| Enqueued {
                    id: *id,
                    created: false,
                }),
            },
        };
    }
}

const FETCH: &str = r#"
WITH claimed AS (
    SELECT id FROM jobq_jobs
    WHERE queue = $1 AND state IN ('available', 'scheduled', 'retrying') AND run_at <= now()
      AND kind <> ALL($5::text[])
      AND NOT EXISTS (SELECT 1 FROM jobq_queues WHERE name = $1 AND paused)
    ORDER BY priority DESC, run_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE jobq_jobs j
SET state = 'running', attempt = LEAST(j.attempt, 2147483646) + 1, attempted_at = now(), attempted_by = $3,
    locked_until = now() + $4 * interval '1 millisecond'
FROM claimed
WHERE j.id = claimed.id
RETURNING j.id, j.kind, j.queue, j.payload::text AS payload, j.attempt, j.max_attempts,
          j.idempotency_key, j.snoozes, j.run_at, j.attempted_at
"#;

const COMPLETE: &str = r#"
-- Rows are locked in id order first: every statement that updates a set of running jobs
-- (completion, lease extension, release) locks the same way, so they cannot deadlock.
WITH u AS (SELECT * FROM unnest($1::bigint[], $2::int[]) AS u(id, attempt)),
locked AS (SELECT j.id FROM jobq_jobs j JOIN u ON j.id = u.id
           WHERE j.attempt = u.attempt AND j.state = 'running' ORDER BY j.id FOR UPDATE OF j)
UPDATE jobq_jobs j SET state = 'completed', finalized_at = now(), locked_until = NULL
FROM locked WHERE j.id = locked.id
"#;

const FINISH_WITH_ERROR: &str = r#"
-- Rows are locked in id order first: every statement that updates a set of running jobs
-- (completion, lease extension, release) locks the same way, so they cannot deadlock.
-- A snooze (`scheduled`, no error) gives its attempt back and counts one more snooze.
WITH u AS (SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::bigint[], $5::text[])
                AS u(id, attempt, state, delay_ms, error)),
locked AS (SELECT j.id FROM jobq_jobs j JOIN u ON j.id = u.id
           WHERE j.attempt = u.attempt AND j.state = 'running' ORDER BY j.id FOR UPDATE OF j)
UPDATE jobq_jobs j
SET state = u.state,
    run_at = CASE WHEN u.state IN ('retrying', 'scheduled')
                  THEN now() + u.delay_ms * interval '1 millisecond' ELSE j.run_at END,
    finalized_at = CASE WHEN u.state IN ('retrying', 'scheduled') THEN NULL ELSE now() END,
    locked_until = NULL,
    attempt = CASE WHEN u.state = 'scheduled' THEN j.attempt - 1 ELSE j.attempt END,
    snoozes = CASE WHEN u.state = 'scheduled' THEN j.snoozes + 1 ELSE j.snoozes END,
    errors = CASE WHEN u.error IS NULL THEN j.errors
                  ELSE j.errors || jsonb_build_array(u.error::jsonb) END
FROM u, locked
WHERE j.id = u.id AND j.id = locked.id
"#;

async fn finish_with_error(
    conn: &mut PgConnection,
    finished: &[&Finished],
) -> Result<(), QueueError> {
    let mut ids = Vec::new();
    let mut attempts = Vec::new();
    let mut states = Vec::new();
    let mut delays = Vec::new();
    let mut errors = Vec::new();
    for f in finished {
        let (delay, error) = match &f.finish {
            Finish::Completed => continue,
            Finish::Snooze { delay } => (duration_ms(*delay), None),
            Finish::Retry { delay, error } => (duration_ms(*delay), Some(error)),
            Finish::Failed { error } | Finish::Cancelled { error } => (0, Some(error)),
        };
        ids.push(f.id);
        attempts.push(f.attempt);
        states.push(f.finish.state().as_str());
        delays.push(delay);
        errors.push(error.map(|e| serde_json::to_string(e).unwrap_or_else(|_| "{}".into())));
    }
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(FINISH_WITH_ERROR)
        .bind(&ids)
        .bind(&attempts)
        .bind(&states)
        .bind(&delays)
        .bind(&errors)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[async_trait]
impl Driver for PostgresDriver {
    fn name(&self) -> &str {
        &self.location
    }

    fn db(&self) -> &Db {
        &self.db
    }

    async fn migrate(&self) -> Result<(), QueueError> {
        crate::schema::POSTGRES.run(&self.pool).await?;
        Ok(())
    }

    async fn applied_versions(&self) -> Result<Vec<i64>, QueueError> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
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
        let mut conn = self.pool.acquire().await?;
        insert(&mut conn, jobs).await
    }

    async fn listen(&self, wakeups: Arc<Wakeups>) -> Result<(), QueueError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        loop {
            // `recv` reconnects by itself after a lost connection; wake-ups missed meanwhile
            // are covered by the fetch loops' fallback poll.
            let notification = listener.recv().await?;
            wakeups.wake(notification.payload());
        }
    }

    async fn fetch(
        &self,
        queue: &str,
        limit: u32,
        worker: &str,
        lease: Duration,
        skip_kinds: &[String],
    ) -> Result<Vec<FetchedJob>, QueueError> {
        let rows = sqlx::query(FETCH)
            .bind(queue)
            .bind(i64::from(limit))
            .bind(worker)
            .bind(duration_ms(lease) as f64)
            .bind(skip_kinds)
            .fetch_all(&self.pool)
            .await?;
        Ok(claimed(&rows, worker).settle(self).await)
    }

    async fn finish(&self, finished: &[Finished]) -> Result<(), QueueError> {
        let (completed, others): (Vec<&Finished>, Vec<&Finished>) = finished
            .iter()
            .partition(|f| matches!(f.finish, Finish::Completed));
        let mut tx = self.pool.begin().await?;
        if !completed.is_empty() {
            sqlx::query(COMPLETE)
                .bind(completed.iter().map(|f| f.id).collect::<Vec<_>>())
                .bind(completed.iter().map(|f| f.attempt).collect::<Vec<_>>())
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
            "WITH locked AS (
                 SELECT j.id FROM jobq_jobs j
                 JOIN unnest($1::bigint[], $2::int[]) AS u(id, attempt) ON j.id = u.id
                 WHERE j.attempt = u.attempt AND j.state = 'running'
                 ORDER BY j.id FOR UPDATE OF j)
             UPDATE jobq_jobs j SET locked_until = now() + $3 * interval '1 millisecond'
             FROM locked WHERE j.id = locked.id
             RETURNING j.id",
        )
        .bind(jobs.iter().map(|j| j.0).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.1).collect::<Vec<_>>())
        .bind(duration_ms(lease) as f64)
        .fetch_all(&self.pool)
        .await?;
        Ok(held)
    }

    async fn release(&self, jobs: &[(i64, i32)]) -> Result<u64, QueueError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let done: i64 = sqlx::query_scalar(
            "WITH locked AS (
                 SELECT j.id FROM jobq_jobs j
                 JOIN unnest($1::bigint[], $2::int[]) AS u(id, attempt) ON j.id = u.id
                 WHERE j.attempt = u.attempt AND j.state = 'running'
                 ORDER BY j.id FOR UPDATE OF j),
             released AS (
                 UPDATE jobq_jobs j SET state = 'available', attempt = j.attempt - 1,
                        locked_until = NULL, run_at = now()
                 FROM locked WHERE j.id = locked.id
                 RETURNING j.queue)
             , notified AS (SELECT count(pg_notify('jobq_jobs', q)) AS n
                            FROM (SELECT DISTINCT queue AS q FROM released) d)
             SELECT (SELECT count(*) FROM released) FROM notified",
        )
        .bind(jobs.iter().map(|j| j.0).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.1).collect::<Vec<_>>())
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(done).unwrap_or(0))
    }

    async fn rescue_expired(
        &self,
        policy: &RescuePolicy,
        limit: u32,
    ) -> Result<Vec<Finished>, QueueError> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT id, kind, attempt, max_attempts, attempted_by, attempted_at
             FROM jobq_jobs WHERE state = 'running' AND locked_until < now()
             ORDER BY locked_until LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
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
                          WHERE state IN ('scheduled', 'retrying') AND run_at <= now()
                          ORDER BY run_at LIMIT 1000 FOR UPDATE SKIP LOCKED)",
        )
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
                 WHERE state IN ('completed', 'cancelled', 'discarded') AND finalized_at < $1
                 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(finished_before)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM jobq_stats WHERE minute < $1")
            .bind(stats_before)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM jobq_workers WHERE heartbeat_at < now() - interval '1 hour'")
            .execute(&self.pool)
            .await?;
        Ok(jobs.rows_affected())
    }

    async fn add_stats(&self, stats: &[(StatKey, StatCount)]) -> Result<(), QueueError> {
        if stats.is_empty() {
            return Ok(());
        }
        // One statement writes the per-minute counts and the totals, so they move together.
        sqlx::query(
            "WITH input AS (
                 SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[],
                                      $5::bigint[], $6::bigint[])
                     AS i(minute, queue, kind, outcome, count, duration_ms)),
             per_minute AS (
                 INSERT INTO jobq_stats (minute, queue, kind, outcome, count, duration_ms)
                 SELECT * FROM input
                 ON CONFLICT (minute, queue, kind, outcome) DO UPDATE
                 SET count = jobq_stats.count + excluded.count,
                     duration_ms = jobq_stats.duration_ms + excluded.duration_ms)
             INSERT INTO jobq_outcome_totals (queue, kind, outcome, count)
             SELECT queue, kind, outcome, sum(count) FROM input GROUP BY queue, kind, outcome
             ON CONFLICT (queue, kind, outcome) DO UPDATE
             SET count = jobq_outcome_totals.count + excluded.count",
        )
        .bind(stats.iter().map(|(k, _)| k.minute).collect::<Vec<_>>())
        .bind(
            stats
                .iter()
                .map(|(k, _)| k.queue.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            stats
                .iter()
                .map(|(k, _)| k.kind.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(stats.iter().map(|(k, _)| k.outcome).collect::<Vec<_>>())
        .bind(stats.iter().map(|(_, c)| c.count).collect::<Vec<_>>())
        .bind(stats.iter().map(|(_, c)| c.duration_ms).collect::<Vec<_>>())
        .execute(&self.pool)
        .await?;
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO jobq_queues (name, paused, updated_at) VALUES ($1, $2, now())
             ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = now()",
        )
        .bind(queue)
        .bind(paused)
        .execute(&mut *tx)
        .await?;
        if !paused {
            sqlx::query("SELECT pg_notify('jobq_jobs', $1)")
                .bind(queue)
                .execute(&mut *tx)
                .await?;
        }
        shared::audit(Exec::Conn(Conn::Postgres(&mut tx)), entry, 0).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The retry repair's statement (ids bound per `ids`, the time as `$2`), for `retry` and
/// `retry_edited`.
fn retry_update(ids: &str) -> String {
    format!(
        "WITH retried AS (
             UPDATE jobq_jobs j SET state = 'available', run_at = LEAST(now(), $2), finalized_at = NULL,
                    locked_until = NULL, max_attempts = GREATEST(j.max_attempts, j.attempt + 1)
             WHERE j.id {ids} AND j.state IN ({})
               AND (j.idempotency_key IS NULL OR j.state NOT IN ('cancelled', 'discarded')
                    OR NOT EXISTS (SELECT 1 FROM jobq_jobs o
                                   WHERE o.idempotency_key = j.idempotency_key AND o.id <> j.id
                                     AND o.state NOT IN ('cancelled', 'discarded')))
             RETURNING j.id, j.queue),
         notified AS (SELECT count(pg_notify('jobq_jobs', q)) AS n
                      FROM (SELECT DISTINCT queue AS q FROM retried) d)
         SELECT retried.id FROM retried CROSS JOIN notified ORDER BY retried.id",
            RepairAction::Retry.sql_states()
        )
}
