//! Rows that a worker cannot read, written by hand or by something else: each fails its own
//! job alone (naming the column) while the rest of its batch and its queue run, and the
//! rescuer goes on past them; listings (`jobq jobs list`/`show`, the dashboard's pages) show
//! such a row as unreadable, naming its column, among the others. On both backends.

mod support;
mod web_support;

use chrono::{Duration as TimeDelta, Utc};
use jobs::driver::JobRecord;
use jobs::{JobState, Queue};
use support::*;
use web_support::*;

on_both_backends!(
    a_poison_row_fails_alone_and_its_batch_runs,
    rescue_goes_on_past_a_poison_row,
    listings_show_unreadable_rows_among_the_others,
);

/// Runs `sql` (one statement, `$1` the job's id) against the test database.
async fn poison(queue: &Queue, id: i64, postgres: &str, sqlite: &str) {
    if let Some(pool) = queue.db().postgres_pool() {
        sqlx::query(postgres)
            .bind(id)
            .execute(pool)
            .await
            .expect("poison the row");
    } else {
        let pool = queue.db().sqlite_pool().expect("a SQLite pool");
        sqlx::query(sqlite)
            .bind(id)
            .execute(pool)
            .await
            .expect("poison the row");
    }
}

/// A row's state and errors read as raw text: a row that does not decode cannot be read
/// through the driver, which is the point of these rows.
async fn raw_outcome(queue: &Queue, id: i64) -> Option<(String, String)> {
    const SQL: &str = "SELECT state, CAST(errors AS TEXT) FROM jobq_jobs WHERE id = $1";
    if let Some(pool) = queue.db().postgres_pool() {
        sqlx::query_as(SQL)
            .bind(id)
            .fetch_optional(pool)
            .await
            .ok()?
    } else {
        let pool = queue.db().sqlite_pool()?;
        sqlx::query_as(SQL)
            .bind(id)
            .fetch_optional(pool)
            .await
            .ok()?
    }
}

/// Waits until the unreadable row `id` is `failed`: its errors, as text.
async fn wait_failed_raw(queue: &Queue, id: i64) -> String {
    eventually(secs(20), &format!("job {id} failed"), || async {
        let (state, errors) = raw_outcome(queue, id).await?;
        (state == "failed").then_some(errors)
    })
    .await
}

fn final_state(job: &JobRecord) -> bool {
    matches!(job.state, JobState::Completed | JobState::Failed)
}

async fn a_poison_row_fails_alone_and_its_batch_runs(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    // Paused while the rows are prepared, so the worker claims them in one batch.
    db.jobq_ok(&["queues", "pause", "test"]);
    let good: Vec<i64> = (0..3)
        .map(|_| db.enqueue("test_effect", "{}", &[]))
        .collect();
    // An attempt counter at the integer limit: claiming it must not overflow and fail the
    // claim of every job of the queue.
    let at_limit = db.enqueue("test_effect", "{}", &[]);
    poison(
        &queue,
        at_limit,
        "UPDATE jobq_jobs SET attempt = 2147483647 WHERE id = $1",
        "UPDATE jobq_jobs SET attempt = 2147483647 WHERE id = $1",
    )
    .await;
    // SQLite stores what it is given: a payload of bytes that are not text.
    let unreadable = if backend == Backend::Sqlite {
        let id = db.enqueue("test_effect", "{}", &[]);
        poison(
            &queue,
            id,
            "",
            "UPDATE jobq_jobs SET payload = X'00FF' WHERE id = $1",
        )
        .await;
        Some(id)
    } else {
        None
    };

    let mut worker = db.spawn_worker(&[]);
    db.jobq_ok(&["queues", "resume", "test"]);
    for id in &good {
        db.wait_job(&queue, *id, secs(15), &[&worker], is(JobState::Completed))
            .await;
    }
    let limit = db
        .wait_job(
            &queue,
            at_limit,
            secs(15),
            &[&worker],
            want("final", final_state),
        )
        .await;
    assert!(limit.attempts >= 1, "{limit:#?}");
    if let Some(id) = unreadable {
        let errors = wait_failed_raw(&queue, id).await;
        assert!(
            errors.contains("column payload"),
            "names the column: {errors}"
        );
    }
    // The queue goes on.
    let later = db.enqueue("test_effect", "{}", &[]);
    db.wait_job(&queue, later, secs(15), &[&worker], is(JobState::Completed))
        .await;
    worker.assert_alive();
}

async fn rescue_goes_on_past_a_poison_row(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    db.jobq_ok(&["queues", "pause", "test"]);
    let abandoned = db.enqueue("test_effect", "{}", &[]);
    let poisoned = db.enqueue("test_effect", "{}", &[]);
    // Both held by a worker that died a minute ago: their leases ran out.
    let started = Utc::now() - TimeDelta::seconds(60);
    for id in [abandoned, poisoned] {
        if let Some(pool) = queue.db().postgres_pool() {
            sqlx::query(
                "UPDATE jobq_jobs SET state = 'running', attempt = 1, attempted_by = 'dead',
                        attempted_at = $2, locked_until = $2 WHERE id = $1",
            )
            .bind(id)
            .bind(started)
            .execute(pool)
            .await
            .expect("abandon the job");
        } else {
            let pool = queue.db().sqlite_pool().expect("a SQLite pool");
            sqlx::query(
                "UPDATE jobq_jobs SET state = 'running', attempt = 1, attempted_by = 'dead',
                        attempted_at = $2, locked_until = $2 WHERE id = $1",
            )
            .bind(id)
            .bind(started.timestamp_micros())
            .execute(pool)
            .await
            .expect("abandon the job");
        }
    }
    // A time PostgreSQL holds and chrono cannot; bytes where SQLite expects the worker's name.
    poison(
        &queue,
        poisoned,
        "UPDATE jobq_jobs SET attempted_at = '-infinity' WHERE id = $1",
        "UPDATE jobq_jobs SET attempted_by = X'00FF' WHERE id = $1",
    )
    .await;

    let mut worker = db.spawn_worker(&[]);
    db.jobq_ok(&["queues", "resume", "test"]);
    let rescued = db
        .wait_job(
            &queue,
            abandoned,
            secs(20),
            &[&worker],
            is(JobState::Completed),
        )
        .await;
    assert_eq!(
        rescued.attempts, 2,
        "the lost attempt was counted: {rescued:#?}"
    );
    assert!(
        rescued.errors[0].error.contains("lease expired"),
        "{rescued:#?}"
    );
    if backend == Backend::Sqlite {
        let errors = wait_failed_raw(&queue, poisoned).await;
        assert!(
            errors.contains("column attempted_by"),
            "names the column: {errors}"
        );
    } else {
        // PostgreSQL's `-infinity` start only loses the error's duration: the job is rescued
        // and runs like the other. Read raw: until it runs again the row cannot be read.
        eventually(secs(20), "the poisoned job completed", || async {
            let (state, _) = raw_outcome(&queue, poisoned).await?;
            (state == "completed").then_some(())
        })
        .await;
    }
    worker.assert_alive();
}

/// Rows no listing can decode, each with the column it names: `-infinity` and `infinity`
/// times on PostgreSQL; on SQLite, which stores what it is given, a priority beyond its type,
/// a text time and a payload of bytes that are not text.
async fn unreadable_rows(db: &TestDb, queue: &Queue) -> Vec<(i64, &'static str)> {
    let poisons: &[(&str, &str)] = match db.backend {
        Backend::Postgres => &[
            (
                "run_at",
                "UPDATE jobq_jobs SET run_at = '-infinity' WHERE id = $1",
            ),
            (
                "run_at",
                "UPDATE jobq_jobs SET run_at = 'infinity' WHERE id = $1",
            ),
        ],
        Backend::Sqlite => &[
            (
                "priority",
                "UPDATE jobq_jobs SET priority = 99999 WHERE id = $1",
            ),
            (
                "run_at",
                "UPDATE jobq_jobs SET run_at = 'soon' WHERE id = $1",
            ),
            (
                "payload",
                "UPDATE jobq_jobs SET payload = X'00FF' WHERE id = $1",
            ),
        ],
    };
    let mut rows = Vec::new();
    for (column, sql) in poisons {
        let id = db.enqueue("test_effect", "{}", &[]);
        poison(queue, id, sql, sql).await;
        rows.push((id, *column));
    }
    rows
}

async fn listings_show_unreadable_rows_among_the_others(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let first = db.enqueue("test_effect", "{}", &[]);
    let bad = unreadable_rows(&db, &queue).await;
    let last = db.enqueue("test_effect", r#"{"sleep_ms": 7}"#, &[]);

    // `jobq jobs list`: every good job on its line, each bad row named with its column.
    let listed = stdout(&db.jobq_ok(&["jobs", "list"]));
    for id in [first, last] {
        assert!(
            listed.lines().any(|l| l.trim_start().starts_with(&format!("{id} ")) && l.contains("test_effect")),
            "job {id} listed: {listed}"
        );
    }
    for (id, column) in &bad {
        assert!(
            listed
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{id} "))
                    && l.contains("unreadable")
                    && l.contains(&format!("column {column}"))),
            "row {id} named with column {column}: {listed}"
        );
    }
    let rows = json(&db.jobq_ok(&["--json", "jobs", "list"]));
    let rows = rows.as_array().expect("a JSON array");
    assert_eq!(rows.len(), bad.len() + 2, "{rows:#?}");
    for (id, column) in &bad {
        let row = rows
            .iter()
            .find(|r| r["id"] == *id)
            .expect("the row listed");
        assert_eq!(row["unreadable"]["column"], *column, "{row}");
        assert!(
            row["unreadable"]["detail"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{row}"
        );
    }
    let good = rows
        .iter()
        .find(|r| r["id"] == last)
        .expect("the last job listed");
    assert_eq!(good["kind"], "test_effect");
    assert_eq!(good["state"], "available");

    // `jobq jobs show`: the bad row said, the good one shown in full.
    for (id, column) in &bad {
        let shown = stdout(&db.jobq_ok(&["jobs", "show", &id.to_string()]));
        assert!(
            shown.contains(&format!("job {id} cannot be read: column {column}")),
            "{shown}"
        );
    }
    let shown = stdout(&db.jobq_ok(&["jobs", "show", &last.to_string()]));
    assert!(
        shown.contains(&format!("job {last} (test_effect)")),
        "{shown}"
    );
    assert!(shown.contains(r#""sleep_ms":7"#), "{shown}");

    // The dashboard: the list (all, and filtered) and each job's page answer 200.
    let server = WebServer::start(&db).await;
    let client = reqwest::Client::new();
    let get = |path: String| {
        let request = client.get(server.url(&path)).bearer_auth(ADMIN_TOKEN);
        async move {
            let response = request.send().await.expect("GET");
            let status = response.status();
            (status, response.text().await.expect("a body"))
        }
    };
    for path in ["/jobs", "/jobs?state=available", "/jobs?queue=test"] {
        let (status, page) = get(path.to_string()).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{path}: {page}");
        for id in [first, last] {
            assert!(
                page.contains(&format!("href=\"/jobs/{id}\"")),
                "{path} lists {id}"
            );
        }
        for (id, column) in &bad {
            assert!(
                page.contains(&format!("href=\"/jobs/{id}\"")),
                "{path} lists {id}"
            );
            assert!(
                page.contains(&format!("column {column} holds a value")),
                "{path}: {page}"
            );
        }
    }
    for (id, column) in &bad {
        let (status, page) = get(format!("/jobs/{id}")).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{page}");
        assert!(page.contains(&format!("Job #{id}")), "{page}");
        assert!(
            page.contains(&format!("column {column} holds a value")),
            "{page}"
        );
    }
    let (status, page) = get(format!("/jobs/{last}")).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{page}");
    assert!(
        page.contains("test_effect") && page.contains("sleep_ms"),
        "{page}"
    );
    let (status, _) = get("/".to_string()).await;
    assert_eq!(
        status,
        reqwest::StatusCode::OK,
        "the overview still answers"
    );
}
