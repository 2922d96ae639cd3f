//! `jobq bench`: bulk insert, drain and pickup latency against the database JOBQ_DATABASE_URL
//! names, in a schema (PostgreSQL) or a file (SQLite) of its own that it removes afterwards.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_trait::async_trait;
use clap::Args;
use jobs::configuration::{Backend, Settings};
use jobs::{EnqueueOptions, JobState, NewJob, Queue};
use serde_json::json;
use tokio::sync::{Notify, mpsc, oneshot};
use workers::testkit::Noop;
use workers::{Handler, JobContext, JobError, Registry, Runtime, RuntimeOptions};

#[derive(Args)]
pub struct BenchArgs {
    /// Jobs to insert and drain.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    jobs: u32,
    /// Worker runtimes, each with its own fetch loop, completer and connection pool.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    workers: u32,
    /// Executor slots per worker.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    concurrency: u32,
    /// Jobs enqueued one at a time for the pickup latency.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(10..=100_000))]
    pickup_samples: u32,
    /// Instead of the queue: the shared limits every panel call and DM pays, this many rate
    /// turns and permit cycles from each of 8 concurrent tasks.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    limits: Option<u32>,
}

const INSERT_BATCH: usize = 5_000;

/// Counts executions; during the pickup phase also reports when each job started.
struct BenchCounters {
    executed: AtomicU64,
    target: AtomicU64,
    all_done: Notify,
    timing: AtomicBool,
    started: mpsc::UnboundedSender<Instant>,
}

#[derive(Clone)]
struct BenchHandler(Arc<BenchCounters>);

impl std::ops::Deref for BenchHandler {
    type Target = BenchCounters;
    fn deref(&self) -> &BenchCounters {
        &self.0
    }
}

#[async_trait]
impl Handler<Noop> for BenchHandler {
    async fn handle(&self, _job: Noop, _ctx: &JobContext) -> Result<(), JobError> {
        if self.timing.load(Ordering::Relaxed) {
            let _ = self.started.send(Instant::now());
        }
        let executed = self.executed.fetch_add(1, Ordering::AcqRel) + 1;
        if executed == self.target.load(Ordering::Acquire) {
            self.all_done.notify_one();
        }
        Ok(())
    }
}

pub async fn run(config: Option<&Path>, args: BenchArgs, json: bool) -> anyhow::Result<()> {
    let settings = crate::startup::settings(config, &[])?;
    let place = BenchPlace::create(config, &settings).await?;
    let Some(per_task) = args.limits else {
        let result = measure(&place.settings, &args).await;
        place.remove().await;
        return print_report(&result?, json, |report| {
            format!(
                "backend {}: {} jobs, {} workers x {} slots\n  bulk insert {:.0} jobs/s\n  drain       {:.0} jobs/s\n  pickup      p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
                report["backend"],
                args.jobs,
                args.workers,
                args.concurrency,
                figure(&report["insert_jobs_per_s"]),
                figure(&report["drain_jobs_per_s"]),
                figure(&report["pickup_ms"]["p50"]),
                figure(&report["pickup_ms"]["p90"]),
                figure(&report["pickup_ms"]["p99"]),
            )
        });
    };
    let result = measure_limits(&place.settings, per_task).await;
    place.remove().await;
    print_report(&result?, json, |report| {
        format!(
            "backend {}: 8 tasks x {per_task}\n  rate turns    {:.0}/s\n  permit cycles {:.0}/s (acquire + release)",
            report["backend"],
            figure(&report["turns_per_s"]),
            figure(&report["permit_cycles_per_s"]),
        )
    })
}

/// Prints `report` as JSON, or as `human` words it.
fn print_report(
    report: &serde_json::Value,
    json: bool,
    human: impl FnOnce(&serde_json::Value) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!("{}", human(report));
    }
    Ok(())
}

/// A measured figure of a report (0 where it is missing).
fn figure(value: &serde_json::Value) -> f64 {
    value.as_f64().unwrap_or(0.0)
}

/// A schema (PostgreSQL) or a file (SQLite) of the benchmark's own.
struct BenchPlace {
    settings: Settings,
    admin: Option<(Queue, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl BenchPlace {
    async fn create(config: Option<&Path>, settings: &Settings) -> anyhow::Result<Self> {
        match settings.database.url.backend() {
            Backend::Postgres => {
                let schema = format!("jobq_bench_{}", std::process::id());
                let admin = Queue::connect(&settings.database).await?;
                let pool = admin.db().postgres_pool().context("no PostgreSQL pool")?;
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(pool)
                    .await?;
                let url = settings.database.url.as_str();
                let separator = if url.contains('?') { '&' } else { '?' };
                let url = format!("{url}{separator}options=-c%20search_path%3D{schema}");
                let settings = crate::startup::settings(config, &[("database.url", url)])?;
                Ok(BenchPlace {
                    settings,
                    admin: Some((admin, schema)),
                    _dir: None,
                })
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().context("creating a directory for the bench file")?;
                let url = format!("sqlite://{}", dir.path().join("bench.db").display());
                let settings = crate::startup::settings(config, &[("database.url", url)])?;
                Ok(BenchPlace {
                    settings,
                    admin: None,
                    _dir: Some(dir),
                })
            }
        }
    }

    async fn remove(self) {
        if let Some((admin, schema)) = self.admin
            && let Some(pool) = admin.db().postgres_pool()
        {
            let drop = format!("DROP SCHEMA {schema} CASCADE");
            if let Err(error) = sqlx::query(&drop).execute(pool).await {
                eprintln!("warning: could not drop the bench schema {schema}: {error}");
            }
        }
    }
}

async fn measure(settings: &Settings, args: &BenchArgs) -> anyhow::Result<serde_json::Value> {
    let queue = Queue::connect(&settings.database).await?;
    queue.migrate().await?;
    let backend = match queue.backend() {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    };
    let total = u64::from(args.jobs);
    let insert_jobs_per_s = insert(&queue, args.jobs).await?;

    let (started_tx, mut started_rx) = mpsc::unbounded_channel();
    let handler = BenchHandler(Arc::new(BenchCounters {
        executed: AtomicU64::new(0),
        target: AtomicU64::new(total),
        all_done: Notify::new(),
        timing: AtomicBool::new(false),
        started: started_tx,
    }));
    let drain_started = Instant::now();
    let mut stops = Vec::new();
    let mut runs = Vec::new();
    for _ in 0..args.workers {
        let (stop, stopped) = oneshot::channel::<()>();
        let worker_queue = Queue::connect(&settings.database).await?;
        let mut registry = Registry::new();
        registry.register::<Noop, _>(handler.clone());
        let mut options = RuntimeOptions::from_settings(settings, &registry);
        options.queues = vec![("bench".to_string(), args.concurrency as usize)];
        let runtime = Runtime::new(worker_queue, registry, options)?;
        runs.push(tokio::spawn(runtime.run(async {
            let _ = stopped.await;
        })));
        stops.push(stop);
    }
    handler.all_done.notified().await;
    wait_until_completed(&queue, total).await?;
    let drain_jobs_per_s = total as f64 / drain_started.elapsed().as_secs_f64();

    handler.timing.store(true, Ordering::Release);
    let mut samples = Vec::with_capacity(args.pickup_samples as usize);
    for _ in 0..args.pickup_samples {
        let job = NewJob::new(&Noop {}, EnqueueOptions::default())?;
        handler.target.store(0, Ordering::Release);
        let sent = Instant::now();
        queue.enqueue_new(job).await?;
        let started = tokio::time::timeout(Duration::from_secs(10), started_rx.recv())
            .await
            .context("a job enqueued for the pickup test did not start within 10 s")?
            .context("the bench workers stopped")?;
        samples.push(started.duration_since(sent).as_secs_f64() * 1000.0);
    }
    for stop in stops {
        let _ = stop.send(());
    }
    for run in runs {
        run.await??;
    }
    samples.sort_by(f64::total_cmp);
    Ok(json!({
        "backend": backend,
        "jobs": args.jobs,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "insert_jobs_per_s": insert_jobs_per_s,
        "drain_jobs_per_s": drain_jobs_per_s,
        "pickup_ms": {
            "p50": percentile(&samples, 0.50),
            "p90": percentile(&samples, 0.90),
            "p99": percentile(&samples, 0.99),
        },
    }))
}

async fn insert(queue: &Queue, jobs: u32) -> anyhow::Result<f64> {
    let job = NewJob::new(&Noop {}, EnqueueOptions::default())?;
    let batch: Vec<NewJob> = vec![job; INSERT_BATCH];
    let started = Instant::now();
    let mut left = jobs as usize;
    while left > 0 {
        let n = left.min(INSERT_BATCH);
        queue.enqueue_many(&batch[..n]).await?;
        left -= n;
    }
    Ok(f64::from(jobs) / started.elapsed().as_secs_f64())
}

/// Every job executed; wait for the completer's last batch to land.
async fn wait_until_completed(queue: &Queue, total: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let completed: i64 = queue
            .driver()
            .state_counts()
            .await?
            .iter()
            .filter(|c| c.state == JobState::Completed)
            .map(|c| c.count)
            .sum();
        if u64::try_from(completed).unwrap_or(0) >= total {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {completed} of {total} jobs completed 60 s after the last one ran");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// How many `step`s a second `tasks` concurrent tasks make, each running its step `per_task`
/// times (a step is given the limits and its task's number).
async fn per_second<F, Fut>(
    limits: &jobs::limits::Limits,
    tasks: u32,
    per_task: u32,
    step: F,
) -> anyhow::Result<f64>
where
    F: Fn(jobs::limits::Limits, u32) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), jobs::limits::LimitError>> + Send,
{
    let step = std::sync::Arc::new(step);
    let started = Instant::now();
    let mut running = Vec::new();
    for task in 0..tasks {
        let (limits, step) = (limits.clone(), step.clone());
        running.push(tokio::spawn(async move {
            for _ in 0..per_task {
                step(limits.clone(), task).await?;
            }
            Ok::<_, jobs::limits::LimitError>(())
        }));
    }
    for task in running {
        task.await??;
    }
    Ok(f64::from(tasks * per_task) / started.elapsed().as_secs_f64())
}

/// Throughput of the shared limits (`jobs::limits`): 8 tasks taking rate turns (one name per
/// task, as per-chat limits are, at a rate that never refuses) and cycling a permit of a
/// 64-slot name each.
async fn measure_limits(settings: &Settings, per_task: u32) -> anyhow::Result<serde_json::Value> {
    const TASKS: u32 = 8;
    let queue = Queue::connect(&settings.database).await?;
    queue.migrate().await?;
    let limits = jobs::limits::Limits::new(&queue);
    let rate = jobs::limits::Rate::per_second(1_000_000.0);
    let turns_per_s = per_second(&limits, TASKS, per_task, move |limits, task| async move {
        limits.try_take(&format!("bench:chat:{task}"), rate).await?;
        Ok(())
    })
    .await?;
    let permit_cycles_per_s = per_second(&limits, TASKS, per_task, |limits, _| async move {
        let permit = limits
            .acquire_within(
                "bench:panel",
                64,
                Duration::from_secs(60),
                Duration::from_secs(10),
            )
            .await?;
        if let Some(permit) = permit {
            permit.release().await?;
        }
        Ok(())
    })
    .await?;
    let backend = match queue.backend() {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    };
    Ok(json!({
        "backend": backend,
        "turns_per_s": turns_per_s,
        "permit_cycles_per_s": permit_cycles_per_s,
    }))
}
