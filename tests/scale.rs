//! Many jobs through many worker processes on PostgreSQL: every job completes and its effect
//! happens exactly once. Not a timed test: the deadline is generous.

mod support;

use std::collections::HashSet;

use jobs::{EnqueueOptions, NewJob};
use support::*;
use workers::testkit::{TestEffect, create_effects_table};

const JOBS: usize = 20_000;
const BATCH: usize = 1_000;
const WORKERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_twenty_thousand_jobs_through_four_workers_run_exactly_once() {
    let db = TestDb::new(Backend::Postgres).await;
    let queue = db.queue().await;
    // Workers create the effects table at start-up; four PostgreSQL workers doing so at once
    // can fail (a CREATE TABLE IF NOT EXISTS race), so it is created here first.
    create_effects_table(&queue)
        .await
        .expect("create the effects table");

    let workers: Vec<Process> = (0..WORKERS)
        .map(|_| db.spawn_worker(&["--concurrency", "16"]))
        .collect();
    let all: Vec<&Process> = workers.iter().collect();
    let pids: HashSet<i32> = workers
        .iter()
        .map(|w| i32::try_from(w.pid()).expect("pid fits"))
        .collect();
    eventually_showing(
        secs(30),
        "the workers to start",
        || logs(&all),
        || async {
            let registered = queue.driver().workers().await.expect("read workers");
            let ours = registered.iter().filter(|w| pids.contains(&w.pid)).count();
            (ours == WORKERS).then_some(())
        },
    )
    .await;

    // Enqueued while the workers run, in batches, each job under its own key.
    let mut ids = Vec::with_capacity(JOBS);
    for batch in 0..JOBS / BATCH {
        let jobs: Vec<NewJob> = (0..BATCH)
            .map(|i| {
                let options = EnqueueOptions {
                    key: Some(format!("scale-{}", batch * BATCH + i)),
                    ..EnqueueOptions::default()
                };
                NewJob::new(&TestEffect { sleep_ms: 0 }, options).expect("a valid job")
            })
            .collect();
        let enqueued = queue.enqueue_many(&jobs).await.expect("enqueue a batch");
        assert_eq!(enqueued.len(), BATCH);
        assert!(enqueued.iter().all(|e| e.created), "a key was already held");
        ids.extend(enqueued.iter().map(|e| e.id));
    }
    let distinct: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), JOBS, "enqueue returned repeated ids");

    let pool = queue.db().postgres_pool().expect("a PostgreSQL pool");
    let completed = std::sync::atomic::AtomicI64::new(0);
    eventually_showing(
        secs(180),
        "every job to complete",
        || {
            let done = completed.load(std::sync::atomic::Ordering::Relaxed);
            format!("{done} of {JOBS} jobs completed\nlogs:\n{}", logs(&all))
        },
        || async {
            let count: i64 =
                sqlx::query_scalar("SELECT count(*) FROM jobq_jobs WHERE state = 'completed'")
                    .fetch_one(pool)
                    .await
                    .expect("count completed jobs");
            completed.store(count, std::sync::atomic::Ordering::Relaxed);
            (count == JOBS as i64).then_some(())
        },
    )
    .await;

    let effects = db.effects(&queue).await;
    assert_eq!(
        effects.len(),
        JOBS,
        "effects recorded for {} jobs",
        effects.len()
    );
    let repeated: Vec<&(i64, i64)> = effects.iter().filter(|(_, runs)| *runs != 1).collect();
    assert!(
        repeated.is_empty(),
        "{} jobs' effects happened more than once, e.g. {:?}",
        repeated.len(),
        &repeated[..repeated.len().min(10)]
    );
    let recorded: HashSet<i64> = effects.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        recorded, distinct,
        "effects recorded for other jobs than enqueued"
    );
    for worker in &workers {
        assert!(
            !worker.log_text().contains("panic"),
            "a worker panicked:\n{}",
            worker.log_text()
        );
    }
}
