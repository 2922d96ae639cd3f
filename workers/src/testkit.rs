//! Job kinds for the engine's own tests and for `jobq bench`: the engine is generic over kinds,
//! and these exercise it without a panel, S3 or a chat API. A worker runs them only when started
//! with `--test-kinds`; `noop` runs only in the runtimes `jobq bench` starts for itself.
//!
//! `test_effect` records each run in `jobq_test_effects` (job id unique, runs counted), so a test
//! can prove a job's effect happened exactly once.

use std::time::Duration;

use async_trait::async_trait;
use jobs::{Job, Queue, Rules};
use serde::{Deserialize, Serialize};

use crate::handler::{Handler, JobContext, JobError, Registry};

/// Does nothing: the benchmark's job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Noop {}

impl Job for Noop {
    const RULES: Rules = Rules::new("noop", "bench", 3, Duration::from_secs(10))
        .backoff(Duration::from_millis(100), Duration::from_secs(1));
    fn example() -> Self {
        Noop {}
    }
}

/// Sleeps, then records that it ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestEffect {
    #[serde(default)]
    pub sleep_ms: u64,
}

impl Job for TestEffect {
    const RULES: Rules = Rules::new("test_effect", "test", 5, Duration::from_secs(60))
        .backoff(Duration::from_secs(1), Duration::from_secs(4));
    fn example() -> Self {
        TestEffect { sleep_ms: 0 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    Retry,
    RetryAfter,
    Permanent,
    Panic,
    Cancel,
    Timeout,
}

/// Fails its first `times` attempts (every attempt when 0) the way `mode` says, then succeeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFail {
    pub mode: FailMode,
    #[serde(default)]
    pub times: u32,
    #[serde(default)]
    pub retry_after_ms: u64,
}

impl Job for TestFail {
    const RULES: Rules = Rules::new("test_fail", "test", 3, Duration::from_secs(2))
        .backoff(Duration::from_secs(1), Duration::from_secs(4));
    fn example() -> Self {
        TestFail {
            mode: FailMode::Retry,
            times: 1,
            retry_after_ms: 0,
        }
    }
}

struct NoopHandler;

#[async_trait]
impl Handler<Noop> for NoopHandler {
    async fn handle(&self, _job: Noop, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

struct EffectHandler;

#[async_trait]
impl Handler<TestEffect> for EffectHandler {
    async fn handle(&self, job: TestEffect, ctx: &JobContext) -> Result<(), JobError> {
        tokio::time::sleep(Duration::from_millis(job.sleep_ms)).await;
        record_effect(&ctx.queue, ctx.id)
            .await
            .map_err(JobError::retry)
    }
}

struct FailHandler;

#[async_trait]
impl Handler<TestFail> for FailHandler {
    async fn handle(&self, job: TestFail, ctx: &JobContext) -> Result<(), JobError> {
        let fails = job.times == 0 || ctx.attempt <= i32::try_from(job.times).unwrap_or(i32::MAX);
        if !fails {
            return Ok(());
        }
        let reason = format!(
            "test failure {} of attempt {}",
            mode_name(job.mode),
            ctx.attempt
        );
        match job.mode {
            FailMode::Retry => Err(JobError::Retry(reason)),
            FailMode::RetryAfter => Err(JobError::RetryAfter {
                after: Duration::from_millis(job.retry_after_ms),
                reason,
            }),
            FailMode::Permanent => Err(JobError::Permanent(reason)),
            FailMode::Cancel => Err(JobError::Cancel(reason)),
            FailMode::Panic => panic!("{reason}"),
            FailMode::Timeout => {
                tokio::time::sleep(TestFail::RULES.timeout * 5).await;
                Ok(())
            }
        }
    }
}

fn mode_name(mode: FailMode) -> &'static str {
    match mode {
        FailMode::Retry => "retry",
        FailMode::RetryAfter => "retry_after",
        FailMode::Permanent => "permanent",
        FailMode::Panic => "panic",
        FailMode::Cancel => "cancel",
        FailMode::Timeout => "timeout",
    }
}

/// The benchmark's kind: registered by `jobq bench` and known to the admin commands, never
/// run by a worker.
pub fn register_bench(registry: &mut Registry) {
    registry.register::<Noop, _>(NoopHandler);
}

/// The test kinds, for `jobq worker --test-kinds`.
pub fn register_tests(registry: &mut Registry) {
    registry
        .register::<TestEffect, _>(EffectHandler)
        .register::<TestFail, _>(FailHandler);
}

/// Creates the table `test_effect` writes to.
pub async fn create_effects_table(queue: &Queue) -> Result<(), sqlx::Error> {
    const SQL: &str = "CREATE TABLE IF NOT EXISTS jobq_test_effects (
        job_id BIGINT PRIMARY KEY, runs INTEGER NOT NULL)";
    if let Some(pool) = queue.db().postgres_pool() {
        // Workers starting together would race on the catalog (CREATE TABLE IF NOT EXISTS is
        // not atomic in PostgreSQL): one at a time.
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(7305846019)")
            .execute(&mut *tx)
            .await?;
        sqlx::query(SQL).execute(&mut *tx).await?;
        tx.commit().await?;
    } else if let Some(pool) = queue.db().sqlite_pool() {
        sqlx::query(SQL).execute(pool).await?;
    }
    Ok(())
}

async fn record_effect(queue: &Queue, job_id: i64) -> Result<(), sqlx::Error> {
    const SQL: &str = "INSERT INTO jobq_test_effects (job_id, runs) VALUES ($1, 1)
        ON CONFLICT (job_id) DO UPDATE SET runs = jobq_test_effects.runs + 1";
    if let Some(pool) = queue.db().postgres_pool() {
        sqlx::query(SQL).bind(job_id).execute(pool).await?;
    } else if let Some(pool) = queue.db().sqlite_pool() {
        sqlx::query(SQL).bind(job_id).execute(pool).await?;
    }
    Ok(())
}
