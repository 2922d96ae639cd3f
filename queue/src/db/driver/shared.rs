//! The queue's statements that read the same on both databases: listings, counts, the worker
//! registry, the audit log and the repairs that need no wake-up. One text each, bound with
//! [`Stamp`] times; a fragment differs only where the dialects do (a list of ids: an array on
//! PostgreSQL, a JSON array on SQLite), and it says so.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{
    EditOutcome, JobFilter, JobRecord, Listed, OutcomeCount, OutcomeTotal, PayloadEdit, QueueInfo,
    Repair, StateCount, Unreadable, WorkerInfo, last_error, lenient_errors, lenient_json,
};
use crate::audit::{AuditEntry, AuditFilter, AuditRecord};
use crate::db::{Conn, Db, DbError, Exec, Fields, Stamp, on_conn, row_id};
use crate::queue::QueueError;
use crate::state::{JobState, RepairAction};

const JOB_COLUMNS: &str = "id, kind, queue, CAST(payload AS TEXT) AS payload, state, priority, \
    attempt, max_attempts, snoozes, idempotency_key, run_at, created_at, attempted_at, attempted_by, \
    locked_until, finalized_at, CAST(errors AS TEXT) AS errors";

/// sqlx sends each parameter's type, so `$1 IS NULL` needs no cast on PostgreSQL either.
const FILTER: &str =
    "($1 IS NULL OR state = $1) AND ($2 IS NULL OR queue = $2) AND ($3 IS NULL OR kind = $3)";

/// A list of ids bound as one parameter `$1`: PostgreSQL takes an array, SQLite a JSON array.
fn ids_in(conn: &Conn<'_>) -> &'static str {
    match conn {
        Conn::Postgres(_) => "= ANY($1)",
        Conn::Sqlite(_) => "IN (SELECT value FROM json_each($1))",
    }
}

fn json_ids(ids: &[i64]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

/// Binds `ids` as [`ids_in`] expects them on each backend.
macro_rules! bind_ids {
    (postgres, $query:expr, $ids:expr) => {
        $query.bind($ids.to_vec())
    };
    (sqlite, $query:expr, $ids:expr) => {
        $query.bind(json_ids($ids))
    };
}

/// One row of a listing: a value that does not decode makes the row [`Listed::Unreadable`],
/// naming the column; only a failure of the database itself is an error.
fn listed<'r, R: Row>(row: &'r R) -> Result<Listed, DbError>
where
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i16: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Stamp: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<Stamp>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let id = row_id(row, "jobq_jobs")?;
    let f = Fields::new(row, "jobq_jobs", id);
    let job = || -> Result<JobRecord, DbError> {
        let errors = lenient_errors(&f.get::<String>("errors")?);
        let time = |column| f.get::<Stamp>(column).map(DateTime::from);
        let maybe = |column| Ok::<_, DbError>(f.get::<Option<Stamp>>(column)?.map(DateTime::from));
        Ok(JobRecord {
            id,
            kind: f.get("kind")?,
            queue: f.get("queue")?,
            payload: lenient_json(&f.get::<String>("payload")?),
            state: f.parse("state", |s: String| s.parse::<JobState>())?,
            priority: f.get("priority")?,
            attempts: f.get("attempt")?,
            max_attempts: f.get("max_attempts")?,
            snoozes: f.get("snoozes")?,
            key: f.get("idempotency_key")?,
            run_at: time("run_at")?,
            created_at: time("created_at")?,
            attempted_at: maybe("attempted_at")?,
            attempted_by: f.get("attempted_by")?,
            locked_until: maybe("locked_until")?,
            finalized_at: maybe("finalized_at")?,
            last_error: last_error(&errors),
            errors,
        })
    };
    match job() {
        Ok(job) => Ok(Listed::Job(Box::new(job))),
        Err(DbError::Corrupt { column, detail, .. }) => {
            Ok(Listed::Unreadable(Unreadable { id, column, detail }))
        }
        Err(error) => Err(error),
    }
}

pub(super) async fn list_jobs(
    db: &Db,
    filter: &JobFilter,
    limit: u32,
) -> Result<Vec<Listed>, QueueError> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobq_jobs WHERE {FILTER}
         AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5"
    );
    Ok(on_conn!(db.exec(), |c| {
        let rows = sqlx::query(&sql)
            .bind(filter.state.map(|s| s.as_str()))
            .bind(filter.queue.as_deref())
            .bind(filter.kind.as_deref())
            .bind(filter.before_id)
            .bind(i64::from(limit))
            .fetch_all(&mut *c)
            .await?;
        rows.iter().map(listed).collect::<Result<Vec<_>, _>>()?
    }))
}

pub(super) async fn job(db: &Db, id: i64) -> Result<Option<Listed>, QueueError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobq_jobs WHERE id = $1");
    Ok(on_conn!(db.exec(), |c| {
        let row = sqlx::query(&sql).bind(id).fetch_optional(&mut *c).await?;
        row.as_ref().map(listed).transpose()?
    }))
}

pub(super) async fn job_by_key(db: &Db, key: &str) -> Result<Option<Listed>, QueueError> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobq_jobs WHERE idempotency_key = $1 ORDER BY id DESC LIMIT 1"
    );
    Ok(on_conn!(db.exec(), |c| {
        let row = sqlx::query(&sql).bind(key).fetch_optional(&mut *c).await?;
        row.as_ref().map(listed).transpose()?
    }))
}

pub(super) async fn newest_with_key_prefix(
    db: &Db,
    prefix: &str,
) -> Result<Option<JobRecord>, QueueError> {
    // LIKE's wildcards in the prefix are escaped: it matches only itself.
    let pattern = format!(
        "{}%",
        prefix
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobq_jobs WHERE idempotency_key LIKE $1 ESCAPE '\\'
         ORDER BY id DESC LIMIT 1"
    );
    Ok(on_conn!(db.exec(), |c| {
        let row = sqlx::query(&sql)
            .bind(&pattern)
            .fetch_optional(&mut *c)
            .await?;
        row.as_ref()
            .map(listed)
            .transpose()?
            .map(Listed::readable)
            .transpose()?
    }))
}

pub(super) async fn count_matching(db: &Db, filter: &JobFilter) -> Result<i64, QueueError> {
    let sql = format!("SELECT count(*) FROM jobq_jobs WHERE {FILTER} AND ($4 IS NULL OR id < $4)");
    Ok(on_conn!(db.exec(), |c| {
        sqlx::query_scalar(&sql)
            .bind(filter.state.map(|s| s.as_str()))
            .bind(filter.queue.as_deref())
            .bind(filter.kind.as_deref())
            .bind(filter.before_id)
            .fetch_one(&mut *c)
            .await?
    }))
}

pub(super) async fn matching_ids(
    db: &Db,
    filter: &JobFilter,
    after_id: i64,
    limit: u32,
) -> Result<Vec<i64>, QueueError> {
    let sql = format!("SELECT id FROM jobq_jobs WHERE {FILTER} AND id > $4 ORDER BY id LIMIT $5");
    Ok(on_conn!(db.exec(), |c| {
        sqlx::query_scalar(&sql)
            .bind(filter.state.map(|s| s.as_str()))
            .bind(filter.queue.as_deref())
            .bind(filter.kind.as_deref())
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(&mut *c)
            .await?
    }))
}

pub(super) async fn state_counts(db: &Db) -> Result<Vec<StateCount>, QueueError> {
    const SQL: &str = "SELECT queue, state, count(*) AS count FROM jobq_jobs GROUP BY queue, state \
         ORDER BY queue, state";
    Ok(on_conn!(db.exec(), |c| {
        let rows = sqlx::query(SQL).fetch_all(&mut *c).await?;
        rows.iter()
            .map(|r| {
                let queue: String = r.try_get("queue")?;
                let f = Fields::new(r, "jobq_jobs", format!("of queue {queue}"));
                Ok(StateCount {
                    state: f.parse("state", |s: String| s.parse::<JobState>())?,
                    count: f.get("count")?,
                    queue,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?
    }))
}

pub(super) async fn queues(db: &Db) -> Result<Vec<QueueInfo>, QueueError> {
    const SQL: &str = "WITH names AS (SELECT DISTINCT queue AS name FROM jobq_jobs
                                      UNION SELECT name FROM jobq_queues),
              oldest AS (SELECT queue, min(run_at) AS run_at FROM jobq_jobs
                         WHERE state IN ('available', 'scheduled', 'retrying') AND run_at <= $1
                         GROUP BY queue)
         SELECT n.name, COALESCE(q.paused, false) AS paused, o.run_at
         FROM names n LEFT JOIN jobq_queues q ON q.name = n.name
                      LEFT JOIN oldest o ON o.queue = n.name
         ORDER BY n.name";
    let now = Stamp::now();
    Ok(on_conn!(db.exec(), |c| {
        let rows = sqlx::query(SQL).bind(now).fetch_all(&mut *c).await?;
        rows.iter()
            .map(|r| {
                let name: String = r.try_get("name")?;
                let f = Fields::new(r, "jobq_queues", &name);
                let oldest: Option<Stamp> = match f.get("run_at") {
                    Ok(oldest) => oldest,
                    // A time jobq cannot hold (PostgreSQL's `-infinity`, written by hand) is
                    // no age to show; its job is listed as unreadable, and the queue still is.
                    Err(error @ DbError::Corrupt { .. }) => {
                        tracing::warn!(%error, "the oldest due job's time cannot be read");
                        None
                    }
                    Err(error) => return Err(error),
                };
                Ok(QueueInfo {
                    paused: f.get("paused")?,
                    oldest_available_age_s: oldest
                        .map(|t| (now.0 - t.0).num_microseconds().unwrap_or(0) as f64 / 1e6),
                    name,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?
    }))
}

pub(super) async fn workers(db: &Db) -> Result<Vec<WorkerInfo>, QueueError> {
    const SQL: &str = "SELECT id, host, pid, queues, concurrency, started_at, heartbeat_at
                       FROM jobq_workers ORDER BY started_at";
    Ok(on_conn!(db.exec(), |c| {
        let rows = sqlx::query(SQL).fetch_all(&mut *c).await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                let f = Fields::new(r, "jobq_workers", &id);
                Ok(WorkerInfo {
                    host: f.get("host")?,
                    pid: f.get("pid")?,
                    queues: f.get("queues")?,
                    concurrency: f.get("concurrency")?,
                    started_at: f.get::<Stamp>("started_at")?.into(),
                    heartbeat_at: f.get::<Stamp>("heartbeat_at")?.into(),
                    id,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?
    }))
}

pub(super) async fn heartbeat(db: &Db, w: &WorkerInfo) -> Result<(), QueueError> {
    const SQL: &str =
        "INSERT INTO jobq_workers (id, host, pid, queues, concurrency, started_at, heartbeat_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at";
    on_conn!(db.exec(), |c| {
        sqlx::query(SQL)
            .bind(&w.id)
            .bind(&w.host)
            .bind(w.pid)
            .bind(&w.queues)
            .bind(w.concurrency)
            .bind(Stamp(w.started_at))
            .bind(Stamp::now())
            .execute(&mut *c)
            .await?;
    });
    Ok(())
}

pub(super) async fn deregister(db: &Db, worker_id: &str) -> Result<(), QueueError> {
    on_conn!(db.exec(), |c| {
        sqlx::query("DELETE FROM jobq_workers WHERE id = $1")
            .bind(worker_id)
            .execute(&mut *c)
            .await?;
    });
    Ok(())
}

pub(super) async fn audit_log(
    db: &Db,
    filter: &AuditFilter,
    limit: u32,
) -> Result<Vec<AuditRecord>, QueueError> {
    const SQL: &str = "SELECT id, at, actor, surface, action, target, count FROM jobq_audit
                       WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR action = $2)
                       ORDER BY id DESC LIMIT $3";
    Ok(on_conn!(db.exec(), |c| {
        let rows = sqlx::query(SQL)
            .bind(filter.actor.as_deref())
            .bind(filter.action.as_deref())
            .bind(i64::from(limit))
            .fetch_all(&mut *c)
            .await?;
        rows.iter()
            .map(|r| {
                let id = row_id(r, "jobq_audit")?;
                let f = Fields::new(r, "jobq_audit", id);
                Ok(AuditRecord {
                    id,
                    at: f.get::<Stamp>("at")?.into(),
                    actor: f.get("actor")?,
                    surface: f.get("surface")?,
                    action: f.get("action")?,
                    target: f.get("target")?,
                    count: f.get("count")?,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?
    }))
}

pub(super) async fn outcome_series(
    db: &Db,
    since: DateTime<Utc>,
) -> Result<Vec<OutcomeCount>, QueueError> {
    const SQL: &str = "SELECT minute, queue, outcome, CAST(sum(count) AS BIGINT) AS count
                       FROM jobq_stats WHERE minute >= $1
                       GROUP BY minute, queue, outcome ORDER BY minute, queue, outcome";
    Ok(on_conn!(db.exec(), |c| {
        let rows = sqlx::query(SQL)
            .bind(Stamp(since))
            .fetch_all(&mut *c)
            .await?;
        rows.iter()
            .map(|r| {
                let queue: String = r.try_get("queue")?;
                let f = Fields::new(r, "jobq_stats", format!("of queue {queue}"));
                Ok(OutcomeCount {
                    minute: f.get::<Stamp>("minute")?.into(),
                    outcome: f.get("outcome")?,
                    count: f.get("count")?,
                    queue,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?
    }))
}

pub(super) async fn outcome_totals(db: &Db) -> Result<Vec<OutcomeTotal>, QueueError> {
    const SQL: &str = "SELECT queue, kind, outcome, count FROM jobq_outcome_totals
                       ORDER BY queue, kind, outcome";
    Ok(on_conn!(db.exec(), |c| {
        let rows = sqlx::query(SQL).fetch_all(&mut *c).await?;
        rows.iter()
            .map(|r| {
                let queue: String = r.try_get("queue")?;
                let f = Fields::new(r, "jobq_outcome_totals", format!("of queue {queue}"));
                Ok(OutcomeTotal {
                    kind: f.get("kind")?,
                    outcome: f.get("outcome")?,
                    count: f.get("count")?,
                    queue,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?
    }))
}

/// Writes the audit entry of an action that changed `count` jobs, inside the caller's
/// transaction.
pub(super) async fn audit(
    exec: Exec<'_>,
    entry: &AuditEntry,
    count: usize,
) -> Result<(), QueueError> {
    const SQL: &str = "INSERT INTO jobq_audit (at, actor, surface, action, target, count)
                       VALUES ($1, $2, $3, $4, $5, $6)";
    on_conn!(exec, |c| {
        sqlx::query(SQL)
            .bind(Stamp::now())
            .bind(&entry.actor)
            .bind(entry.surface)
            .bind(entry.action)
            .bind(&entry.target)
            .bind(i64::try_from(count).unwrap_or(i64::MAX))
            .execute(&mut *c)
            .await?;
    });
    Ok(())
}

/// A repair that ends the jobs it may change: `action` moves them to the final state `to`.
pub(super) async fn finish(
    db: &Db,
    ids: &[i64],
    entry: &AuditEntry,
    action: RepairAction,
    to: JobState,
) -> Result<Repair, QueueError> {
    let update = |ids: &str| {
        format!(
            "UPDATE jobq_jobs SET state = '{}', finalized_at = $2, locked_until = NULL
             WHERE id {ids} AND state IN ({}) RETURNING id",
            to.as_str(),
            action.sql_states()
        )
    };
    repair(db, ids, entry, update, action).await
}

/// A repair in one transaction: `update` (its ids bound as `$1` per [`ids_in`], its time as
/// `$2`, returning the ids it changed), why each other id was left alone, and the audit entry;
/// a repair refused for every job writes nothing.
/// `update` is built from [`ids_in`] by the caller, once per backend.
pub(super) async fn repair(
    db: &Db,
    ids: &[i64],
    entry: &AuditEntry,
    update: impl Fn(&str) -> String,
    action: RepairAction,
) -> Result<Repair, QueueError> {
    let mut tx = db.begin().await?;
    let repair = repair_in(tx.conn(), ids, entry, &update, action).await?;
    if repair.changed.is_empty() {
        // Refused for every job: nothing is written, not even the audit entry.
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(repair)
}

/// A new payload, then a retry, in one transaction: the job read under a lock, the caller's
/// check of the payload for its kind, the payload written, [`repair`]'s retry and the audit
/// entry the caller describes from the job as it was. Anything refused writes nothing.
pub(super) async fn retry_edited(
    db: &Db,
    edit: &PayloadEdit<'_>,
    retry: impl Fn(&str) -> String,
) -> Result<EditOutcome, QueueError> {
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    // SQLite's transaction holds the database's write lock already (`BEGIN IMMEDIATE`).
    let lock = match conn {
        Conn::Postgres(_) => " FOR UPDATE",
        Conn::Sqlite(_) => "",
    };
    let read = format!("SELECT {JOB_COLUMNS} FROM jobq_jobs WHERE id = $1{lock}");
    let job = on_conn!(Exec::Conn(conn.reborrow()), |c| {
        let row = sqlx::query(&read)
            .bind(edit.id)
            .fetch_optional(&mut *c)
            .await?;
        row.as_ref()
            .map(listed)
            .transpose()?
            .map(Listed::readable)
            .transpose()?
    });
    let Some(job) = job else {
        return Ok(EditOutcome::LeftAlone("no such job".to_string()));
    };
    if !RepairAction::Retry.allows(job.state) {
        let state = job.state.as_str().to_string();
        return Ok(EditOutcome::LeftAlone(super::skip_reason(
            Some(&state),
            RepairAction::Retry,
        )));
    }
    let payload = match (edit.check)(&job.kind, edit.payload) {
        Ok(payload) => payload,
        Err(problem) => return Ok(EditOutcome::Invalid(problem)),
    };
    const WRITE: &str = "UPDATE jobq_jobs SET payload = $2 WHERE id = $1";
    on_conn!(Exec::Conn(conn.reborrow()), |c| {
        sqlx::query(WRITE)
            .bind(edit.id)
            .bind(sqlx::types::Json(&payload))
            .execute(&mut *c)
            .await?;
    });
    let entry = (edit.audit)(&job, &payload);
    let repair = repair_in(conn, &[edit.id], &entry, &retry, RepairAction::Retry).await?;
    if let Some((_, reason)) = repair.skipped.first() {
        let reason = reason.clone();
        tx.rollback().await?;
        return Ok(EditOutcome::LeftAlone(reason));
    }
    tx.commit().await?;
    Ok(EditOutcome::Retried)
}

/// [`repair`] on the caller's transaction, which it leaves to the caller to commit (when
/// something changed: the audit entry is written then) or roll back.
async fn repair_in(
    mut conn: Conn<'_>,
    ids: &[i64],
    entry: &AuditEntry,
    update: &impl Fn(&str) -> String,
    action: RepairAction,
) -> Result<Repair, QueueError> {
    let update = update(ids_in(&conn));
    let explain = format!("SELECT id, state FROM jobq_jobs WHERE id {}", ids_in(&conn));
    let (mut changed, rest, states) = match conn.reborrow() {
        Conn::Postgres(c) => {
            let changed: Vec<i64> = bind_ids!(postgres, sqlx::query_scalar(&update), ids)
                .bind(Stamp::now())
                .fetch_all(&mut *c)
                .await?;
            let rest = left_alone(ids, &changed);
            let rows = bind_ids!(postgres, sqlx::query(&explain), &rest)
                .fetch_all(&mut *c)
                .await?;
            (changed, rest, states_of(&rows)?)
        }
        Conn::Sqlite(c) => {
            let changed: Vec<i64> = bind_ids!(sqlite, sqlx::query_scalar(&update), ids)
                .bind(Stamp::now())
                .fetch_all(&mut *c)
                .await?;
            let rest = left_alone(ids, &changed);
            let rows = bind_ids!(sqlite, sqlx::query(&explain), &rest)
                .fetch_all(&mut *c)
                .await?;
            (changed, rest, states_of(&rows)?)
        }
    };
    changed.sort_unstable();
    let skipped = rest
        .into_iter()
        .map(|id| (id, super::skip_reason(states.get(&id), action)))
        .collect();
    if !changed.is_empty() {
        audit(Exec::Conn(conn), entry, changed.len()).await?;
    }
    Ok(Repair { changed, skipped })
}

fn left_alone(ids: &[i64], changed: &[i64]) -> Vec<i64> {
    ids.iter()
        .copied()
        .filter(|id| !changed.contains(id))
        .collect()
}

fn states_of<R: Row>(rows: &[R]) -> Result<HashMap<i64, String>, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}
