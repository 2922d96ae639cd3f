//! The worker process end to end, on both backends: retries and their persisted backoff,
//! Retry-After, permanent failures and admin repairs, exhausted attempts, panics and timeouts,
//! a worker killed mid-job, graceful shutdown (drained, and grace exceeded), paused queues,
//! periodic jobs across processes, garbage rows, the registry of live workers, and the queues a
//! worker works by default (the product's, never the benchmark's).

mod support;

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use jobs::driver::JobRecord;
use jobs::{JobState, Queue};
use support::*;

on_both_backends!(
    backoff_is_persisted_and_survives_a_killed_worker,
    retry_after_is_honoured,
    a_permanent_failure_is_kept_until_an_admin_discards_it,
    a_failed_job_runs_again_when_an_admin_retries_it,
    exhausted_attempts_fail_the_job_with_every_error,
    panics_and_timeouts_are_retried_and_the_worker_keeps_running,
    a_job_whose_worker_is_killed_runs_again_once,
    graceful_shutdown_lets_the_running_job_finish,
    shutdown_past_the_grace_returns_the_job_without_spending_an_attempt,
    a_paused_queue_is_not_fetched_until_resumed,
    a_periodic_job_is_enqueued_once_per_period_by_three_processes,
    garbage_rows_fail_alone_and_the_worker_keeps_running,
    a_worker_is_listed_while_running_and_gone_after_shutdown,
    a_dm_without_its_token_waits_and_the_worker_names_the_variable,
    a_running_job_cannot_be_cancelled_and_runs_to_completion,
    stats_show_the_last_hours_outcomes_per_queue,
    a_default_worker_works_the_product_queues_and_never_bench,
);

// ---------------------------------------------------------------------------------------------
// Helpers

/// Writes the test config with `from` replaced by `to` (a setting of a section it already has).
fn config_with(db: &TestDb, name: &str, from: &str, to: &str) -> PathBuf {
    assert!(
        TEST_CONFIG.contains(from),
        "the test config has no `{from}`"
    );
    let path = db.dir.path().join(name);
    std::fs::write(&path, TEST_CONFIG.replace(from, to)).expect("write config");
    path
}

/// The live workers `jobq --json stats` lists.
fn listed_workers(db: &TestDb) -> Vec<serde_json::Value> {
    json(&db.jobq(&["--json", "stats"]))["workers"]
        .as_array()
        .expect("stats lists workers")
        .clone()
}

/// Waits until the worker with this pid is in `jobq_workers`: its fetch loops are running.
async fn wait_registered(queue: &Queue, worker: &Process) -> String {
    let pid = i32::try_from(worker.pid()).expect("pid fits");
    eventually_showing(
        secs(15),
        &format!("worker {pid} to register"),
        || format!("log:\n{}", worker.shown_log()),
        || async {
            let workers = queue.driver().workers().await.expect("read workers");
            workers.into_iter().find(|w| w.pid == pid).map(|w| w.id)
        },
    )
    .await
}

/// How many times the worker serving metrics at `address` has fetched from queue `test` (0
/// before its fetch loop has started).
async fn test_queue_fetches(address: &str) -> u64 {
    let url = format!("http://{address}/metrics");
    let response = reqwest::get(&url).await.expect("GET /metrics");
    let text = response.text().await.expect("the metrics");
    let count = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"jobq_fetches_total{queue="test"} "#));
    count.map_or(0, |c| c.trim().parse::<f64>().expect("a count") as u64)
}

/// The job's first error is recorded.
fn failed_once() -> Want {
    want("failed once", |j| !j.errors.is_empty())
}

fn ms_between(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    (to - from).num_milliseconds()
}

// ---------------------------------------------------------------------------------------------
// Retries

async fn backoff_is_persisted_and_survives_a_killed_worker(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let id = db.enqueue("test_fail", r#"{"mode":"retry","times":2}"#, &[]);

    let mut a = db.spawn_worker(&[]);
    let first = db
        .wait_job(&queue, id, secs(15), &[&a], failed_once())
        .await;
    // Killed while the job waits for its backoff: nothing in this process remembers it.
    a.kill_hard();

    assert_eq!(first.state, JobState::Retrying, "{first:#?}");
    assert_eq!(first.attempts, 1, "{first:#?}");
    assert_eq!(first.errors.len(), 1, "{first:#?}");
    let error = &first.errors[0];
    assert_eq!(error.attempt, 1);
    assert!(!error.worker.is_empty(), "the error names no worker");
    assert_eq!(Some(&error.worker), first.attempted_by.as_ref());
    assert!(
        error.error.contains("test failure retry of attempt 1"),
        "error text: {}",
        error.error
    );
    // test_fail's backoff: base 1 s, ±20% jitter.
    let delay = ms_between(error.at, first.run_at);
    assert!(
        (780..=1_500).contains(&delay),
        "run_at is {delay} ms after the failure, not the 0.8-1.2 s backoff: {first:#?}"
    );

    let after_kill = db.job(&queue, id).await;
    assert_eq!(after_kill.state, JobState::Retrying, "{after_kill:#?}");
    assert_eq!(
        after_kill.attempts, 1,
        "the second attempt began before the kill"
    );

    let b = db.spawn_worker(&[]);
    let done = db
        .wait_job(&queue, id, secs(20), &[&b], is(JobState::Completed))
        .await;
    assert_eq!(done.attempts, 3, "{done:#?}");
    assert_eq!(done.errors.len(), 2, "{done:#?}");
    assert_eq!(
        &done.errors[0], error,
        "the first error was not kept as it was"
    );
    assert_eq!(done.errors[1].attempt, 2);
    assert_ne!(
        done.errors[1].worker, error.worker,
        "attempt 2 ran on the new worker"
    );
    assert!(done.errors[1].error.contains("of attempt 2"));
    // The schedule outlived the worker, and the second backoff doubled (2 s ±20%).
    let retried_at = done.attempted_at.expect("attempted_at");
    assert!(
        done.errors[1].at >= first.run_at,
        "attempt 2 ran before the persisted run_at: {done:#?}"
    );
    let second_wait = ms_between(done.errors[1].at, retried_at);
    assert!(
        second_wait >= 1_590,
        "attempt 3 began {second_wait} ms after attempt 2 failed; the backoff is 1.6-2.4 s"
    );
}

async fn retry_after_is_honoured(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let id = db.enqueue(
        "test_fail",
        r#"{"mode":"retry_after","times":1,"retry_after_ms":1500}"#,
        &[],
    );
    let worker = db.spawn_worker(&[]);
    let first = db
        .wait_job(&queue, id, secs(15), &[&worker], failed_once())
        .await;
    let first_at = first.attempted_at.expect("attempted_at");
    assert_eq!(first.state, JobState::Retrying, "{first:#?}");
    assert!(
        first.errors[0].error.contains("retry no sooner than"),
        "{}",
        first.errors[0].error
    );
    // No sooner than Retry-After, which is longer than the kind's own backoff (at most 1.2 s).
    let scheduled = ms_between(first.errors[0].at, first.run_at);
    assert!(
        scheduled >= 1_500,
        "run_at is {scheduled} ms after the failure"
    );

    let done = db
        .wait_job(&queue, id, secs(15), &[&worker], is(JobState::Completed))
        .await;
    assert_eq!(done.attempts, 2, "{done:#?}");
    let second_at = done.attempted_at.expect("attempted_at");
    assert!(
        ms_between(first_at, second_at) >= 1_500,
        "attempt 2 began {} ms after attempt 1",
        ms_between(first_at, second_at)
    );
}

async fn a_permanent_failure_is_kept_until_an_admin_discards_it(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let (id, _worker, failed) = permanently_failed(&db, &queue, 0).await;

    db.jobq_ok(&["jobs", "discard", &id.to_string()]);
    let discarded = db.job(&queue, id).await;
    assert_eq!(discarded.state, JobState::Discarded, "{discarded:#?}");
    assert_eq!(
        discarded.attempts, 1,
        "a failed job ran again before the discard"
    );
    assert_eq!(discarded.errors, failed.errors, "the error was not kept");
}

async fn a_failed_job_runs_again_when_an_admin_retries_it(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    // Fails permanently once, so the admin's retry succeeds.
    let (id, worker, failed) = permanently_failed(&db, &queue, 1).await;

    db.jobq_ok(&["jobs", "retry", &id.to_string()]);
    let done = db
        .wait_job(&queue, id, secs(10), &[&worker], is(JobState::Completed))
        .await;
    assert_eq!(done.attempts, 2, "{done:#?}");
    assert_eq!(
        done.errors, failed.errors,
        "the failure's error was not kept"
    );
}

/// A `test_fail` job failing for good `times` times (0: every time), and a worker; waits for
/// its first attempt to fail for good and checks what that recorded.
async fn permanently_failed(db: &TestDb, queue: &Queue, times: u32) -> (i64, Process, JobRecord) {
    let payload = format!(r#"{{"mode":"permanent","times":{times}}}"#);
    let id = db.enqueue("test_fail", &payload, &[]);
    let worker = db.spawn_worker(&[]);
    let failed = db
        .wait_job(queue, id, secs(15), &[&worker], is(JobState::Failed))
        .await;
    assert_eq!(failed.attempts, 1, "a permanent failure was retried");
    assert_eq!(failed.errors.len(), 1, "{failed:#?}");
    let error = &failed.errors[0];
    assert_eq!(error.attempt, 1);
    assert!(
        error.error.contains("test failure permanent of attempt 1"),
        "{failed:#?}"
    );
    assert_eq!(failed.last_error.as_deref(), Some(error.error.as_str()));
    assert!(failed.finalized_at.is_some(), "{failed:#?}");
    (id, worker, failed)
}

async fn exhausted_attempts_fail_the_job_with_every_error(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let id = db.enqueue(
        "test_fail",
        r#"{"mode":"retry","times":0}"#,
        &["--max-attempts", "2"],
    );
    let worker = db.spawn_worker(&[]);
    let failed = db
        .wait_job(&queue, id, secs(15), &[&worker], is(JobState::Failed))
        .await;
    assert_eq!(failed.attempts, 2, "{failed:#?}");
    assert_eq!(failed.max_attempts, 2);
    let attempts: Vec<i32> = failed.errors.iter().map(|e| e.attempt).collect();
    assert_eq!(attempts, [1, 2], "{failed:#?}");
    assert!(
        failed.errors[1].error.contains("no attempts left"),
        "{}",
        failed.errors[1].error
    );
}

async fn panics_and_timeouts_are_retried_and_the_worker_keeps_running(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let panics = db.enqueue("test_fail", r#"{"mode":"panic","times":1}"#, &[]);
    let times_out = db.enqueue("test_fail", r#"{"mode":"timeout","times":1}"#, &[]);
    let mut worker = db.spawn_worker(&[]);
    for (id, says) in [(panics, "panicked"), (times_out, "timed out")] {
        let done = db
            .wait_job(&queue, id, secs(20), &[&worker], is(JobState::Completed))
            .await;
        assert_eq!(done.attempts, 2, "{done:#?}");
        assert_eq!(done.errors.len(), 1, "{done:#?}");
        assert!(
            done.errors[0].error.contains(says),
            "error should say {says}: {}",
            done.errors[0].error
        );
    }
    worker.assert_alive();
    let next = db.enqueue("test_effect", "{}", &[]);
    db.wait_job(&queue, next, secs(10), &[&worker], is(JobState::Completed))
        .await;
    worker.assert_alive();
}

// ---------------------------------------------------------------------------------------------
// Leases and shutdown

async fn a_job_whose_worker_is_killed_runs_again_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let id = db.enqueue("test_effect", r#"{"sleep_ms":3000}"#, &[]);
    let mut a = db.spawn_worker(&[]);
    let running = db
        .wait_job(&queue, id, secs(15), &[&a], is(JobState::Running))
        .await;
    a.kill_hard();
    let killed_at = Utc::now();
    let a_id = running.attempted_by.clone().expect("attempted_by");

    let b = db.spawn_worker(&[]);
    // Lease (2 s) + 5 s: the rescuer's tick, the backoff and a new claim fit well within.
    let again = db
        .wait_job(
            &queue,
            id,
            secs(7),
            &[&b],
            want("claimed by the second worker", |j| j.attempts >= 2),
        )
        .await;
    let delay = ms_between(killed_at, again.attempted_at.expect("attempted_at"));
    assert!(
        delay <= 7_000,
        "ran again {delay} ms after the kill: {again:#?}"
    );
    let done = db
        .wait_job(&queue, id, secs(15), &[&b], is(JobState::Completed))
        .await;
    assert_eq!(done.attempts, 2, "{done:#?}");
    assert_eq!(done.errors.len(), 1, "{done:#?}");
    assert!(
        done.errors[0].error.contains("lease expired"),
        "{}",
        done.errors[0].error
    );
    assert_eq!(done.errors[0].worker, a_id);
    assert_ne!(done.attempted_by.as_deref(), Some(a_id.as_str()));
    assert_eq!(
        db.effects(&queue).await,
        [(id, 1)],
        "the effect happened once"
    );
}

async fn graceful_shutdown_lets_the_running_job_finish(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let id = db.enqueue("test_effect", r#"{"sleep_ms":1000}"#, &[]);
    let mut worker = db.spawn_worker(&[]);
    db.wait_job(&queue, id, secs(15), &[&worker], is(JobState::Running))
        .await;
    worker.terminate();
    let status = worker.wait_exit(secs(10)).await;
    assert!(
        status.success(),
        "worker exited with {status}; log:\n{}",
        worker.log_text()
    );
    // No other worker: whatever is recorded now was done before the process exited.
    let job = db.job(&queue, id).await;
    assert_eq!(job.state, JobState::Completed, "{job:#?}");
    assert_eq!(job.attempts, 1);
    assert_eq!(db.effects(&queue).await, [(id, 1)]);
}

async fn shutdown_past_the_grace_returns_the_job_without_spending_an_attempt(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let config = config_with(
        &db,
        "grace.toml",
        r#"shutdown_grace = "10s""#,
        r#"shutdown_grace = "500ms""#,
    );
    let id = db.enqueue("test_effect", r#"{"sleep_ms":5000}"#, &[]);
    let mut worker = db.test_worker().config(&config).start();
    db.wait_job(&queue, id, secs(15), &[&worker], is(JobState::Running))
        .await;
    let signalled = Instant::now();
    worker.terminate();
    let status = worker.wait_exit(secs(4)).await;
    let took = signalled.elapsed();
    assert!(
        status.success(),
        "worker exited with {status}; log:\n{}",
        worker.log_text()
    );
    assert!(
        took < Duration::from_secs(3),
        "exit took {took:?} with a 500 ms grace"
    );
    let job = db.job(&queue, id).await;
    assert_eq!(job.state, JobState::Available, "{job:#?}");
    assert_eq!(job.attempts, 0, "the returned job's attempt was spent");
    assert!(job.errors.is_empty(), "{job:#?}");
    assert_eq!(job.locked_until, None);
    assert!(
        db.effects(&queue).await.is_empty(),
        "the aborted job's effect happened"
    );
}

// ---------------------------------------------------------------------------------------------
// Queues, periodic jobs, bad data, the worker registry

async fn a_paused_queue_is_not_fetched_until_resumed(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    db.jobq_ok(&["queues", "pause", "test"]);
    let id = db.enqueue("test_effect", "{}", &[]);
    let mut worker = db.spawn_worker(&["--metrics-bind", "127.0.0.1:0"]);
    wait_registered(&queue, &worker).await;
    let address = worker.metrics_address().await;

    // Proves an absence: the worker looks at the paused queue again and again (its fallback
    // poll, every 200 ms), and seven more of those looks must all leave the job alone.
    let looked = test_queue_fetches(&address).await;
    eventually_showing(
        secs(15),
        "seven more fetches from the paused queue",
        || format!("log:\n{}", worker.shown_log()),
        || async { (test_queue_fetches(&address).await >= looked + 7).then_some(()) },
    )
    .await;
    let job = db.job(&queue, id).await;
    assert_eq!(job.state, JobState::Available, "a paused queue was fetched");
    assert_eq!(job.attempts, 0);
    assert!(db.effects(&queue).await.is_empty());
    worker.assert_alive();

    db.jobq_ok(&["queues", "resume", "test"]);
    db.wait_job(&queue, id, secs(5), &[&worker], is(JobState::Completed))
        .await;
    assert_eq!(db.effects(&queue).await, [(id, 1)]);
}

const EVERY_MS: i64 = 2_000;

async fn a_periodic_job_is_enqueued_once_per_period_by_three_processes(backend: Backend) {
    let db = TestDb::with_config(backend, &periodic_effect("tick", "2s")).await;
    let queue = db.queue().await;
    // Workers create the effects table at start-up, and three PostgreSQL workers doing so at
    // once can fail (a CREATE TABLE IF NOT EXISTS race): created here first.
    workers::testkit::create_effects_table(&queue)
        .await
        .expect("create the effects table");
    let started = Utc::now();
    let mut workers: Vec<Process> = (0..3).map(|_| db.spawn_worker(&[])).collect();
    for w in &workers {
        wait_registered(&queue, w).await;
    }
    // The window the processes run together: a duration of the test, not a synchronisation.
    let window_end = started + chrono::Duration::milliseconds(5_000);
    if let Ok(left) = (window_end - Utc::now()).to_std() {
        tokio::time::sleep(left).await;
    }
    for w in &workers {
        w.terminate();
    }
    for w in &mut workers {
        let status = w.wait_exit(secs(15)).await;
        assert!(
            status.success(),
            "worker exited with {status}; log:\n{}",
            w.log_text()
        );
    }
    let stopped = Utc::now();

    let jobs: Vec<JobRecord> = jobs_of(&queue, "test_effect").await;
    let keys: Vec<&str> = jobs.iter().filter_map(|j| j.key.as_deref()).collect();
    assert_eq!(keys.len(), jobs.len(), "a periodic job without a key");
    let unique: HashSet<&str> = keys.iter().copied().collect();
    assert_eq!(unique.len(), keys.len(), "duplicate keys: {keys:?}");

    let mut periods: Vec<i64> = keys
        .iter()
        .map(|k| {
            let at = k
                .strip_prefix("periodic:tick:")
                .unwrap_or_else(|| panic!("key {k} lacks the periodic:tick: prefix"));
            DateTime::parse_from_rfc3339(at)
                .unwrap_or_else(|e| panic!("key {k}: period {at} does not parse: {e}"))
                .timestamp_millis()
        })
        .collect();
    periods.sort_unstable();
    let first_period = started.timestamp_millis() - started.timestamp_millis() % EVERY_MS;
    let last_period = stopped.timestamp_millis() - stopped.timestamp_millis() % EVERY_MS;
    let elapsed = (last_period - first_period) / EVERY_MS + 1;
    for p in &periods {
        assert_eq!(
            p % EVERY_MS,
            0,
            "period {p} is not aligned to 2 s: {keys:?}"
        );
        assert!(
            (first_period..=last_period).contains(p),
            "period {p} is outside the run {first_period}..={last_period}"
        );
    }
    for pair in periods.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            EVERY_MS,
            "a period was skipped: {keys:?}"
        );
    }
    assert!(
        (2..=elapsed).contains(&i64::try_from(periods.len()).unwrap_or(0)),
        "{} periodic jobs over {elapsed} periods: {keys:?}",
        periods.len()
    );

    // A worker without the periodic entry finishes any job of the last period.
    let plain = db.dir.path().join("plain.toml");
    std::fs::write(&plain, TEST_CONFIG).expect("write config");
    let drainer = db.test_worker().config(&plain).start();
    for job in &jobs {
        db.wait_job(
            &queue,
            job.id,
            secs(10),
            &[&drainer],
            is(JobState::Completed),
        )
        .await;
    }
    let effects = db.effects(&queue).await;
    let mut expected: Vec<(i64, i64)> = jobs.iter().map(|j| (j.id, 1)).collect();
    expected.sort_unstable();
    assert_eq!(effects, expected, "each periodic job ran once");
    let after = jobs_of(&queue, "test_effect").await;
    assert_eq!(
        after.len(),
        jobs.len(),
        "the drainer enqueued periodic jobs"
    );
}

async fn garbage_rows_fail_alone_and_the_worker_keeps_running(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    // (kind, payload, what the error must say)
    let mut rows = vec![
        ("no_such_kind", "{}", "unknown job kind 'no_such_kind'"),
        (
            "test_effect",
            r#"{"sleep_ms": "abc"}"#,
            "payload of test_effect does not parse",
        ),
    ];
    if backend == Backend::Sqlite {
        rows.push((
            "test_effect",
            "this is not JSON {",
            "payload of test_effect does not parse",
        ));
    }
    let mut bad = Vec::new();
    for (kind, payload, says) in rows {
        let id: i64 = if let Some(pool) = queue.db().postgres_pool() {
            sqlx::query_scalar(
                "INSERT INTO jobq_jobs (kind, queue, payload, state, max_attempts)
                 VALUES ($1, 'test', $2::jsonb, 'available', 3) RETURNING id",
            )
            .bind(kind)
            .bind(payload)
            .fetch_one(pool)
            .await
            .expect("insert a bad row")
        } else {
            let pool = queue.db().sqlite_pool().expect("a SQLite pool");
            let now = Utc::now().timestamp_micros();
            sqlx::query_scalar(
                "INSERT INTO jobq_jobs (kind, queue, payload, state, max_attempts, run_at, created_at)
                 VALUES (?1, 'test', ?2, 'available', 3, ?3, ?3) RETURNING id",
            )
            .bind(kind)
            .bind(payload)
            .bind(now)
            .fetch_one(pool)
            .await
            .expect("insert a bad row")
        };
        bad.push((id, says));
    }
    let good = db.enqueue("test_effect", "{}", &[]);

    let mut worker = db.spawn_worker(&[]);
    for (id, says) in &bad {
        let failed = db
            .wait_job(&queue, *id, secs(15), &[&worker], is(JobState::Failed))
            .await;
        assert_eq!(failed.attempts, 1, "{failed:#?}");
        assert_eq!(failed.errors.len(), 1, "{failed:#?}");
        assert!(
            failed.errors[0].error.contains(says),
            "error of job {id} should say {says:?}: {}",
            failed.errors[0].error
        );
    }
    db.wait_job(&queue, good, secs(10), &[&worker], is(JobState::Completed))
        .await;
    worker.assert_alive();
    let later = db.enqueue("test_effect", "{}", &[]);
    db.wait_job(&queue, later, secs(10), &[&worker], is(JobState::Completed))
        .await;
    assert_eq!(db.effects(&queue).await, [(good, 1), (later, 1)]);
    worker.assert_alive();
}

async fn a_worker_is_listed_while_running_and_gone_after_shutdown(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut worker = db.spawn_worker(&[]);
    let pid = u64::from(worker.pid());
    let db_ref = &db;
    let listed = eventually(
        Duration::from_secs(15),
        "the worker in jobq stats",
        move || async move {
            listed_workers(db_ref)
                .into_iter()
                .find(|w| w["pid"].as_u64() == Some(pid))
        },
    )
    .await;
    assert!(
        listed["queues"]
            .as_str()
            .is_some_and(|q| q.contains("test")),
        "{listed}"
    );
    assert!(
        listed["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{listed}"
    );

    worker.terminate();
    let status = worker.wait_exit(secs(10)).await;
    assert!(
        status.success(),
        "worker exited with {status}; log:\n{}",
        worker.log_text()
    );
    let left: Vec<_> = listed_workers(&db)
        .into_iter()
        .filter(|w| w["pid"].as_u64() == Some(pid))
        .collect();
    assert!(left.is_empty(), "still listed after shutdown: {left:?}");
}

async fn a_dm_without_its_token_waits_and_the_worker_names_the_variable(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    // A worker that lacks what a job needs (here the Telegram token) leaves it for a worker
    // that has it, rather than failing it for good, and says so at start.
    let dm = db.enqueue(
        "send_dm",
        r#"{"user":{"platform":"telegram","id":42},"text":"hi"}"#,
        &["--queue", "test"],
    );
    let after = db.enqueue("test_effect", "{}", &[]);
    let worker = db.spawn_worker(&[]);
    // Claimed after the DM was due: the DM was passed over.
    db.wait_job(&queue, after, secs(15), &[&worker], is(JobState::Completed))
        .await;
    let job = db.job(&queue, dm).await;
    assert_eq!(
        (job.state, job.attempts, job.errors.len()),
        (JobState::Available, 0, 0),
        "{job:#?}"
    );
    let log = worker.log_text();
    assert!(
        log.contains("JOBQ_TELEGRAM_TOKEN is not set: send_dm jobs to Telegram users wait"),
        "{log}"
    );
}

async fn a_running_job_cannot_be_cancelled_and_runs_to_completion(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let id = db.enqueue("test_effect", r#"{"sleep_ms":1000}"#, &[]);
    let worker = db.spawn_worker(&[]);
    db.wait_job(&queue, id, secs(15), &[&worker], is(JobState::Running))
        .await;
    let out = db.jobq(&["jobs", "cancel", &id.to_string()]);
    assert!(!out.status.success(), "cancel of a running job succeeded");
    assert!(
        support::stderr(&out).contains("running"),
        "{}",
        support::stderr(&out)
    );
    let job = db
        .wait_job(&queue, id, secs(15), &[&worker], is(JobState::Completed))
        .await;
    assert_eq!(job.attempts, 1);
    assert_eq!(db.effects(&queue).await, [(id, 1)]);
}

async fn stats_show_the_last_hours_outcomes_per_queue(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let ok1 = db.enqueue("test_effect", "{}", &[]);
    let ok2 = db.enqueue("test_effect", "{}", &[]);
    let bad = db.enqueue("test_fail", r#"{"mode":"permanent"}"#, &[]);
    let mut worker = db.spawn_worker(&[]);
    for id in [ok1, ok2] {
        db.wait_job(&queue, id, secs(15), &[&worker], is(JobState::Completed))
            .await;
    }
    db.wait_job(&queue, bad, secs(15), &[&worker], is(JobState::Failed))
        .await;
    // A graceful stop writes the counts still in memory.
    worker.terminate();
    assert!(worker.wait_exit(secs(15)).await.success());
    let stats = json(&db.jobq(&["--json", "stats"]));
    let test_queue = stats["queues"]
        .as_array()
        .and_then(|queues| queues.iter().find(|q| q["queue"] == "test"))
        .unwrap_or_else(|| panic!("no test queue in {stats}"));
    assert_eq!(
        test_queue["last_hour"],
        serde_json::json!({"completed": 2, "failed": 1}),
        "{stats}"
    );
}

async fn a_default_worker_works_the_product_queues_and_never_bench(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    // No --queues, no --test-kinds: what a production worker works by default (with the
    // Discord token it reads transcripts with; without it, it leaves `transcripts` alone).
    let worker = db
        .spawn(&["worker"])
        .env(
            "JOBQ_DISCORD_TOKEN",
            "MTIzNDU2.DCsecretNEVERinLOGS.xyz_0123456789",
        )
        .start();
    let id = wait_registered(&queue, &worker).await;
    let workers = queue.driver().workers().await.expect("read workers");
    let registered = workers.iter().find(|w| w.id == id).expect("registered");
    let worked: BTreeSet<&str> = registered
        .queues
        .split(',')
        .filter_map(|q| q.split('=').next())
        .collect();
    let product: BTreeSet<&str> = jobs::kinds::specs().iter().map(|s| s.queue).collect();
    assert_eq!(worked, product, "{registered:?}");
    assert!(!worked.contains("bench"), "{registered:?}");
    // The start-up line says the same.
    let log = worker.log_text();
    let started = log
        .lines()
        .find(|l| l.contains("worker started"))
        .unwrap_or_else(|| panic!("no start-up line:\n{log}"));
    assert!(!started.contains("bench"), "{started}");
}
