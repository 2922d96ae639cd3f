//! Limits that hold across every worker process together, kept in the queue's database: request
//! rates ("30 calls a second to this API", "1 a second per recipient") and concurrency
//! ("4 calls at once to this server").
//!
//! - **Rates** use GCRA: one row per limited name holds the theoretical arrival time (`tat`) of
//!   the next request. Taking a turn is one upsert that moves `tat` on only when the request
//!   conforms, so two processes can never take the same turn, and no background refill runs.
//! - **Concurrency** uses permit rows `0..N` per name. A permit is held with an expiry, so a
//!   worker that dies mid-call frees its permit when the expiry passes; a live holder releases
//!   it when the call ends.
//!
//! Both take the time from this process's clock: across machines they are as fair as the
//! clocks are in step (NTP keeps that to milliseconds, well under the limits' scale).

use std::time::Duration;

use chrono::Utc;

use crate::Queue;
use crate::db::{Db, DbError, Exec, Stamp, micros, on_conn};
use crate::settings::Backend;

/// A request rate: `per_second` on average, up to `burst` at once after a quiet spell.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    per_second: f64,
    burst: u32,
}

impl Rate {
    /// `per_second` (more than 0) with a burst of one: requests are spaced evenly.
    pub fn per_second(per_second: f64) -> Rate {
        Rate {
            per_second: if per_second.is_finite() && per_second > 0.0 {
                per_second
            } else {
                f64::MIN_POSITIVE
            },
            burst: 1,
        }
    }

    /// Allows up to `burst` requests at once (at least 1).
    pub fn with_burst(self, burst: u32) -> Rate {
        Rate {
            burst: burst.max(1),
            ..self
        }
    }

    /// Microseconds between two requests at the steady rate (at least 1).
    fn interval_us(self) -> i64 {
        let us = (1_000_000.0 / self.per_second).ceil();
        if us >= i64::MAX as f64 {
            i64::MAX / 4
        } else {
            (us as i64).max(1)
        }
    }

    /// How far ahead of now `tat` may be while a request still conforms.
    fn tolerance_us(self) -> i64 {
        self.interval_us()
            .saturating_mul(i64::from(self.burst) - 1)
            .min(i64::MAX / 4)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("rate limit database error: {0}")]
pub struct LimitError(#[from] DbError);

impl From<sqlx::Error> for LimitError {
    fn from(error: sqlx::Error) -> Self {
        LimitError(DbError::Sqlx(error))
    }
}

/// The shared limits of a queue's database. Cheap to clone.
#[derive(Clone)]
pub struct Limits {
    db: Db,
}

/// A held concurrency permit. Release it with [`Permit::release`] when the call ends; one
/// dropped unreleased is released in the background, and one whose process died expires.
pub struct Permit {
    limits: Limits,
    name: String,
    slot: i32,
    holder: String,
    released: bool,
}

// The upsert that takes a turn: only the larger-of-two function (`$max`) and the integer type
// (`$int`) are spelled differently. A name slowed down (`interval_us` set) spaces its turns by
// that interval, never closer than the caller's rate, and each turn taken raises its rate by
// `$5` per second of spacing (additive increase); back at the caller's rate it forgets the
// slow-down.
macro_rules! take_sql {
    ($max:literal, $int:literal) => {
        concat!(
            "INSERT INTO jobq_rate_limits (name, tat) VALUES ($1, $2 + $3)
             ON CONFLICT (name) DO UPDATE
                SET tat = ",
            $max,
            "(jobq_rate_limits.tat, $2)
                          + ",
            $max,
            "($3, COALESCE(jobq_rate_limits.interval_us, $3)),
                    interval_us = CASE
                        WHEN jobq_rate_limits.interval_us IS NULL
                          OR jobq_rate_limits.interval_us <= $3 THEN NULL
                        ELSE ",
            $max,
            "($3, CAST(1000000.0 / (1000000.0 / jobq_rate_limits.interval_us
                            + $5 * jobq_rate_limits.interval_us / 1000000.0) AS ",
            $int,
            ")) END
              WHERE jobq_rate_limits.tat - $4 <= $2
             RETURNING tat"
        )
    };
}
const TAKE_POSTGRES: &str = take_sql!("GREATEST", "BIGINT");
const TAKE_SQLITE: &str = take_sql!("MAX", "INTEGER");

// The other side said "slow down" (a 429): no turn for anyone before `$2` (its Retry-After),
// and the spacing doubles (multiplicative decrease), at most once per Retry-After (the other
// calls refused in the same burst say the same thing once more, not once each), never past
// `$4`. `$3`: the caller's own spacing; `$5`: now. Only the smaller- and larger-of-two
// functions are spelled differently.
macro_rules! slow_down_sql {
    ($min:literal, $max:literal) => {
        concat!(
            "INSERT INTO jobq_rate_limits (name, tat, interval_us, held_until)
             VALUES ($1, $2, ",
            $min,
            "($4, $3 * 2), $2)
             ON CONFLICT (name) DO UPDATE
                SET interval_us = CASE WHEN jobq_rate_limits.held_until > $5
                                           THEN jobq_rate_limits.interval_us
                                       ELSE ",
            $min,
            "($4, ",
            $max,
            "($3,
                                           COALESCE(jobq_rate_limits.interval_us, $3)) * 2)
                                  END,
                    held_until = ",
            $max,
            "(jobq_rate_limits.held_until, $2),
                    tat = ",
            $max,
            "(jobq_rate_limits.tat, $2)"
        )
    };
}
const SLOW_DOWN_POSTGRES: &str = slow_down_sql!("LEAST", "GREATEST");
const SLOW_DOWN_SQLITE: &str = slow_down_sql!("MIN", "MAX");

/// How fast a slowed-down rate comes back: requests per second gained per second of turns.
const RECOVERY_PER_SECOND: f64 = 0.25;
/// The slowest a slow-down goes: one turn per this many microseconds (10 s).
const SLOWEST_INTERVAL_US: i64 = 10_000_000;

// Permit rows `0..slots`: PostgreSQL counts with `generate_series`, SQLite with a recursive CTE.
const SLOTS_POSTGRES: &str = "INSERT INTO jobq_permits (name, slot)
     SELECT $1, s FROM generate_series(0, $2 - 1) AS s
     ON CONFLICT DO NOTHING";
const SLOTS_SQLITE: &str =
    "WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n + 1 < $2)
     INSERT INTO jobq_permits (name, slot) SELECT $1, n FROM s WHERE true
     ON CONFLICT DO NOTHING";

// A permit is free when nobody holds it, its expiry (`$5`, now in microseconds) has passed, or
// the job attempt it was taken for no longer holds its lease (`$8`, now as the jobs' time).
macro_rules! permit_is_free {
    () => {
        "(holder IS NULL OR expires_at <= $5
          OR (job_id IS NOT NULL AND NOT EXISTS (
              SELECT 1 FROM jobq_jobs j
               WHERE j.id = jobq_permits.job_id AND j.attempt = jobq_permits.job_attempt
                 AND j.state = 'running' AND j.locked_until > $8)))"
    };
}

// A free permit, claimed (for the job attempt `$6`, `$7`, or none): PostgreSQL skips rows other
// transactions hold; SQLite has one writer at a time (the transaction is IMMEDIATE), so there is
// nothing to skip.
const CLAIM_POSTGRES: &str = concat!(
    "UPDATE jobq_permits SET holder = $3, expires_at = $4, job_id = $6, job_attempt = $7
      WHERE (name, slot) = (
        SELECT name, slot FROM jobq_permits
         WHERE name = $1 AND slot < $2 AND ",
    permit_is_free!(),
    "
         ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED)
     RETURNING slot"
);
const CLAIM_SQLITE: &str = concat!(
    "UPDATE jobq_permits SET holder = $3, expires_at = $4, job_id = $6, job_attempt = $7
      WHERE name = $1 AND slot = (
        SELECT slot FROM jobq_permits
         WHERE name = $1 AND slot < $2 AND ",
    permit_is_free!(),
    "
         ORDER BY slot LIMIT 1)
     RETURNING slot"
);

/// The job attempt a permit is taken for: the permit lasts no longer than that attempt's lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseOf {
    pub job_id: i64,
    pub attempt: i32,
}

impl Limits {
    pub fn new(queue: &Queue) -> Limits {
        Limits {
            db: queue.db().clone(),
        }
    }

    /// Takes one turn of `name` at `rate`: `None` when the request may go now, else how long
    /// until the next turn could be free (nothing was taken; ask again then).
    pub async fn try_take(&self, name: &str, rate: Rate) -> Result<Option<Duration>, LimitError> {
        let now = Utc::now().timestamp_micros();
        let interval = rate.interval_us();
        let tolerance = rate.tolerance_us();
        let sql = pick(&self.db, TAKE_POSTGRES, TAKE_SQLITE);
        let taken: Option<i64> = on_conn!(self.db.exec(), |c| {
            sqlx::query_scalar(sql)
                .bind(name)
                .bind(now)
                .bind(interval)
                .bind(tolerance)
                .bind(RECOVERY_PER_SECOND)
                .fetch_optional(&mut *c)
                .await?
        });
        if taken.is_some() {
            return Ok(None);
        }
        let tat = self.tat(name).await?.unwrap_or(now);
        let wait_us = (tat - tolerance - now).max(1);
        Ok(Some(Duration::from_micros(wait_us.unsigned_abs())))
    }

    /// Takes a turn, waiting for it up to `max_wait`; `Err(wait)` (nothing taken) when the next
    /// turn is further off than that, so a job can be rescheduled instead of holding a slot.
    pub async fn take_within(
        &self,
        name: &str,
        rate: Rate,
        max_wait: Duration,
    ) -> Result<Result<(), Duration>, LimitError> {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let Some(wait) = self.try_take(name, rate).await? else {
                return Ok(Ok(()));
            };
            if tokio::time::Instant::now() + wait > deadline {
                return Ok(Err(wait));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// The other side refused a request of `name` for going too fast (a 429): every process
    /// waits out `retry_after`, and the rate of `name` halves below `rate` (the caller's own),
    /// to come back a little with each turn taken (see [`Limits::try_take`]).
    pub async fn slow_down(
        &self,
        name: &str,
        rate: Rate,
        retry_after: Duration,
    ) -> Result<(), LimitError> {
        let now = Utc::now().timestamp_micros();
        let until = now.saturating_add(micros(retry_after).min(i64::MAX / 4));
        let interval = rate.interval_us().min(SLOWEST_INTERVAL_US);
        let sql = pick(&self.db, SLOW_DOWN_POSTGRES, SLOW_DOWN_SQLITE);
        on_conn!(self.db.exec(), |c| {
            sqlx::query(sql)
                .bind(name)
                .bind(until)
                .bind(interval)
                .bind(SLOWEST_INTERVAL_US)
                .bind(now)
                .execute(&mut *c)
                .await?;
        });
        Ok(())
    }

    /// The rate `name` runs at now, per second: `rate`'s own, or lower while slowed down.
    pub async fn current_rate(&self, name: &str, rate: Rate) -> Result<f64, LimitError> {
        let slowed: Option<Option<i64>> = on_conn!(self.db.exec(), |c| {
            sqlx::query_scalar("SELECT interval_us FROM jobq_rate_limits WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *c)
                .await?
        });
        let interval = slowed.flatten().unwrap_or(0).max(rate.interval_us());
        Ok(1_000_000.0 / interval as f64)
    }

    async fn tat(&self, name: &str) -> Result<Option<i64>, LimitError> {
        Ok(on_conn!(self.db.exec(), |c| {
            sqlx::query_scalar("SELECT tat FROM jobq_rate_limits WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *c)
                .await?
        }))
    }

    /// One of `slots` permits of `name`, held for at most `hold` (then it expires), or `None`
    /// when all are held.
    pub async fn try_acquire(
        &self,
        name: &str,
        slots: u32,
        hold: Duration,
    ) -> Result<Option<Permit>, LimitError> {
        self.try_claim(name, slots, hold, None).await
    }

    /// Like [`Limits::try_acquire`], for the job attempt `lease`: the permit is free again as
    /// soon as that attempt no longer holds its lease (it finished, was rescued, or its worker
    /// died and the lease ran out), whatever is left of `hold`.
    pub async fn try_acquire_for(
        &self,
        name: &str,
        slots: u32,
        hold: Duration,
        lease: LeaseOf,
    ) -> Result<Option<Permit>, LimitError> {
        self.try_claim(name, slots, hold, Some(lease)).await
    }

    async fn try_claim(
        &self,
        name: &str,
        slots: u32,
        hold: Duration,
        lease: Option<LeaseOf>,
    ) -> Result<Option<Permit>, LimitError> {
        let slots = i32::try_from(slots.max(1)).unwrap_or(i32::MAX);
        let now = Utc::now().timestamp_micros();
        let expires = now.saturating_add(micros(hold).min(i64::MAX / 4));
        let holder = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let add_slots = pick(&self.db, SLOTS_POSTGRES, SLOTS_SQLITE);
        let claim = pick(&self.db, CLAIM_POSTGRES, CLAIM_SQLITE);
        let mut tx = self.db.begin().await?;
        let slot: Option<i32> = on_conn!(Exec::from(&mut tx), |c| {
            sqlx::query(add_slots)
                .bind(name)
                .bind(slots)
                .execute(&mut *c)
                .await?;
            sqlx::query_scalar(claim)
                .bind(name)
                .bind(slots)
                .bind(&holder)
                .bind(expires)
                .bind(now)
                .bind(lease.map(|l| l.job_id))
                .bind(lease.map(|l| l.attempt))
                .bind(Stamp::now())
                .fetch_optional(&mut *c)
                .await?
        });
        tx.commit().await?;
        Ok(slot.map(|slot| Permit {
            limits: self.clone(),
            name: name.to_string(),
            slot,
            holder,
            released: false,
        }))
    }

    /// A permit, waiting for one up to `max_wait` (asking again every `poll`, since a permit
    /// freed by another process sends no signal); `None` when none came free in time.
    pub async fn acquire_within(
        &self,
        name: &str,
        slots: u32,
        hold: Duration,
        max_wait: Duration,
    ) -> Result<Option<Permit>, LimitError> {
        self.claim_within(name, slots, hold, None, max_wait).await
    }

    /// [`Limits::try_acquire_for`], waiting up to `max_wait` as [`Limits::acquire_within`].
    pub async fn acquire_for_within(
        &self,
        name: &str,
        slots: u32,
        hold: Duration,
        lease: LeaseOf,
        max_wait: Duration,
    ) -> Result<Option<Permit>, LimitError> {
        self.claim_within(name, slots, hold, Some(lease), max_wait)
            .await
    }

    async fn claim_within(
        &self,
        name: &str,
        slots: u32,
        hold: Duration,
        lease: Option<LeaseOf>,
        max_wait: Duration,
    ) -> Result<Option<Permit>, LimitError> {
        let deadline = tokio::time::Instant::now() + max_wait;
        let mut poll = Duration::from_millis(5);
        loop {
            if let Some(permit) = self.try_claim(name, slots, hold, lease).await? {
                return Ok(Some(permit));
            }
            if tokio::time::Instant::now() + poll > deadline {
                return Ok(None);
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(Duration::from_millis(100));
        }
    }

    async fn release(&self, name: &str, slot: i32, holder: &str) -> Result<(), LimitError> {
        on_conn!(self.db.exec(), |c| {
            sqlx::query(
                "UPDATE jobq_permits SET holder = NULL, expires_at = 0, job_id = NULL,
                        job_attempt = NULL
                  WHERE name = $1 AND slot = $2 AND holder = $3",
            )
            .bind(name)
            .bind(slot)
            .bind(holder)
            .execute(&mut *c)
            .await?;
        });
        Ok(())
    }

    /// Forgets limits nobody has used for `idle`: rate rows whose next turn is that far in the
    /// past (a fresh row behaves the same) and permits free or expired that long. Per-chat and
    /// per-entity names would otherwise pile up. Returns the rows deleted.
    pub async fn prune(&self, idle: Duration) -> Result<u64, LimitError> {
        let before = Utc::now().timestamp_micros().saturating_sub(micros(idle));
        Ok(on_conn!(self.db.exec(), |c| {
            let rates = sqlx::query("DELETE FROM jobq_rate_limits WHERE tat < $1")
                .bind(before)
                .execute(&mut *c)
                .await?;
            let permits = sqlx::query("DELETE FROM jobq_permits WHERE expires_at < $1")
                .bind(before)
                .execute(&mut *c)
                .await?;
            rates.rows_affected() + permits.rows_affected()
        }))
    }

    /// How many permits of `name` are held now (for tests and inspection).
    pub async fn held(&self, name: &str) -> Result<i64, LimitError> {
        let now = Utc::now().timestamp_micros();
        Ok(on_conn!(self.db.exec(), |c| {
            sqlx::query_scalar(
                "SELECT count(*) FROM jobq_permits
                  WHERE name = $1 AND holder IS NOT NULL AND expires_at > $2",
            )
            .bind(name)
            .bind(now)
            .fetch_one(&mut *c)
            .await?
        }))
    }
}

fn pick(db: &Db, postgres: &'static str, sqlite: &'static str) -> &'static str {
    match db.backend() {
        Backend::Postgres => postgres,
        Backend::Sqlite => sqlite,
    }
}

impl Permit {
    /// Frees the permit for the next caller.
    pub async fn release(mut self) -> Result<(), LimitError> {
        self.released = true;
        self.limits
            .release(&self.name, self.slot, &self.holder)
            .await
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Dropped on an error path or a cancelled call: release in the background; if that
        // cannot run (no runtime), the permit's expiry frees it.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let limits = self.limits.clone();
            let (name, slot, holder) = (self.name.clone(), self.slot, self.holder.clone());
            handle.spawn(async move {
                if let Err(error) = limits.release(&name, slot, &holder).await {
                    tracing::warn!(%error, permit = %name, "could not release a permit; it expires");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_intervals() {
        assert_eq!(Rate::per_second(1.0).interval_us(), 1_000_000);
        assert_eq!(Rate::per_second(30.0).interval_us(), 33_334);
        assert_eq!(Rate::per_second(30.0).tolerance_us(), 0);
        assert_eq!(
            Rate::per_second(2.0).with_burst(3).tolerance_us(),
            1_000_000
        );
        assert!(Rate::per_second(0.0).interval_us() > 1_000_000_000);
        assert!(Rate::per_second(f64::NAN).interval_us() > 1_000_000_000);
    }
}
