//! The `jobq` command line against real databases: bad input refused with nothing written,
//! listing and stats as JSON, audited repairs, pausing queues, configuration, schema and
//! connection errors, and the kinds' examples.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Duration;

use jobs::audit::AuditRecord;
use jobs::{JobState, Queue};
use serde_json::{Value, json};
use support::{Backend, Spawn, TestDb, json, path_str, stderr, stdout};

const DM: &str = r#"{"user":{"platform":"telegram","id":42},"text":"hi"}"#;
const SYNC: &str = r#"{"panel":"de-1"}"#;
const PERMANENT: &str = r#"{"mode":"permanent"}"#;

async fn count_jobs(queue: &Queue) -> i64 {
    let counts = queue.driver().state_counts().await.expect("state counts");
    counts.iter().map(|c| c.count).sum()
}

/// `jobq --json enqueue ARGS`: the new job's id.
fn enqueue(db: &TestDb, args: &[&str]) -> i64 {
    let mut full = vec!["--json", "enqueue"];
    full.extend_from_slice(args);
    let value = json(&db.jobq(&full));
    assert_eq!(value["created"], true, "{value}");
    value["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id: {value}"))
}

/// Asserts the command failed with every one of `needles` on standard error.
fn assert_fails_saying(out: &Output, what: &str, needles: &[&str]) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "{what}: expected a non-zero exit; stdout:\n{}\nstderr:\n{err}",
        stdout(out)
    );
    for needle in needles {
        assert!(
            err.contains(needle),
            "{what}: stderr should contain {needle:?}:\n{err}"
        );
    }
}

async fn audit_log(queue: &Queue) -> Vec<AuditRecord> {
    queue.driver().audit_log(10).await.expect("audit log")
}

async fn bad_input_is_refused_and_nothing_is_written(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    enqueue(&db, &["send_dm", DM, "--key", "k1"]);
    let before = count_jobs(&queue).await;

    let unknown_field = r#"{"user":{"platform":"telegram","id":1},"text":"hi","silent":true}"#;
    let zero_id = r#"{"user":{"platform":"telegram","id":0},"text":"hi"}"#;
    // The last would win in serde_json: the writer may have meant either.
    let twice = r#"{"user":{"platform":"telegram","id":1},"text":"hi","text":"bye"}"#;
    let twice_inside = r#"{"user":{"platform":"telegram","id":1,"id":2},"text":"hi"}"#;
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["enqueue", "send_email", DM],
            &["unknown job kind 'send_email'", "send_dm"],
        ),
        (&["enqueue", "send_dm", "{not json"], &["not valid JSON"]),
        (
            &["enqueue", "send_dm", twice],
            &["not valid JSON", "the key \"text\" appears twice"],
        ),
        (
            &["enqueue", "send_dm", twice_inside],
            &["the key \"id\" appears twice"],
        ),
        (
            &["enqueue", "send_dm", zero_id],
            &["send_dm", "user id must be a positive integer, got 0"],
        ),
        (
            &["enqueue", "send_dm", unknown_field],
            &["send_dm", "unknown field `silent`"],
        ),
        (
            &["enqueue", "send_dm", DM, "--at", "tomorrow"],
            &["--at 'tomorrow'", "RFC 3339"],
        ),
        (
            &["enqueue", "send_dm", DM, "--priority", "101"],
            &["priority 101 is out of range", "-100 to 100"],
        ),
        (
            &["enqueue", "send_dm", DM, "--priority", "-101"],
            &["priority -101 is out of range"],
        ),
        (
            &["enqueue", "send_dm", DM, "--max-attempts", "0"],
            &["max attempts 0 is out of range"],
        ),
        (
            &["enqueue", "send_dm", DM, "--queue", "Not A Queue"],
            &["queue name 'Not A Queue' is invalid"],
        ),
        (
            &["enqueue", "send_dm", DM, "--key", ""],
            &["idempotency key must be 1 to 255 characters"],
        ),
        (&["jobs", "show", "999999"], &["no job with id 999999"]),
    ];
    for (args, needles) in cases {
        for json_flag in [false, true] {
            let mut full: Vec<&str> = args.to_vec();
            if json_flag {
                full.insert(0, "--json");
            }
            let out = db.jobq(&full);
            assert_fails_saying(&out, &format!("jobq {full:?}"), needles);
            assert!(
                stdout(&out).trim().is_empty(),
                "jobq {full:?} printed on stdout: {}",
                stdout(&out)
            );
        }
    }
    assert_eq!(count_jobs(&queue).await, before, "nothing was written");
    assert!(audit_log(&queue).await.is_empty(), "nothing was audited");
}

/// README: an unknown id is an error on standard error and a non-zero exit.
async fn repairs_of_an_unknown_id_fail_naming_it(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    for action in ["retry", "discard", "cancel"] {
        for json_flag in [false, true] {
            let mut args = vec!["jobs", action, "999999"];
            if json_flag {
                args.insert(0, "--json");
            }
            let out = db.jobq(&args);
            assert_fails_saying(&out, &format!("jobq {args:?}"), &["999999"]);
        }
    }
    assert_eq!(count_jobs(&queue).await, 0);
}

async fn enqueue_reads_the_payload_from_standard_input(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let mut child = db
        .command(&["--json", "enqueue", "send_dm", "-", "--key", "from-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jobq");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(br#"{"user":{"platform":"discord","id":77},"text":"piped in"}"#)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait jobq");
    let value = json(&out);
    let id = value["id"].as_i64().expect("id");
    let job = db.job(&queue, id).await;
    assert_eq!(
        job.payload,
        json!({"user": {"platform": "discord", "id": 77}, "text": "piped in"})
    );
    assert_eq!(job.key.as_deref(), Some("from-stdin"));

    // Empty standard input is not a payload.
    let out = db.jobq(&["enqueue", "send_dm", "-"]);
    assert_fails_saying(&out, "empty stdin", &["not valid JSON"]);
    assert_eq!(count_jobs(&queue).await, 1);
}

fn listed(db: &TestDb, filters: &[&str]) -> Vec<Value> {
    let mut args = vec!["--json", "jobs", "list"];
    args.extend_from_slice(filters);
    match json(&db.jobq(&args)) {
        Value::Array(rows) => rows,
        other => panic!("jobs list {filters:?} is not an array: {other}"),
    }
}

fn ids(rows: &[Value]) -> Vec<i64> {
    rows.iter().map(|r| r["id"].as_i64().expect("id")).collect()
}

async fn jobs_list_has_the_documented_fields_and_filters(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dm1 = enqueue(&db, &["send_dm", DM, "--key", "dm-1"]);
    let dm2 = enqueue(&db, &["send_dm", DM]);
    let sync1 = enqueue(&db, &["sync_usage", SYNC]);
    let vip = enqueue(&db, &["send_dm", DM, "--queue", "vip"]);
    let sync2 = enqueue(&db, &["sync_usage", SYNC]);
    let gone = enqueue(&db, &["send_dm", DM]);
    db.jobq_ok(&["jobs", "discard", &gone.to_string()]);

    let all = listed(&db, &[]);
    assert_eq!(
        ids(&all),
        [gone, sync2, vip, sync1, dm2, dm1],
        "newest first"
    );
    for row in &all {
        for field in [
            "id",
            "kind",
            "queue",
            "state",
            "attempts",
            "max_attempts",
            "priority",
            "key",
            "run_at",
            "created_at",
            "last_error",
        ] {
            assert!(row.get(field).is_some(), "{field} missing from {row}");
        }
        let run_at = row["run_at"].as_str().expect("run_at is a string");
        chrono::DateTime::parse_from_rfc3339(run_at).expect("run_at is RFC 3339");
    }
    let first = all.last().expect("dm-1");
    assert_eq!(first["kind"], "send_dm");
    assert_eq!(first["queue"], "messages");
    assert_eq!(first["state"], "available");
    assert_eq!(first["attempts"], 0);
    assert_eq!(first["key"], "dm-1");
    assert_eq!(first["last_error"], Value::Null);
    assert_eq!(all[0]["state"], "discarded");

    assert_eq!(ids(&listed(&db, &["--state", "discarded"])), [gone]);
    assert_eq!(ids(&listed(&db, &["--queue", "sync"])), [sync2, sync1]);
    assert_eq!(ids(&listed(&db, &["--queue", "vip"])), [vip]);
    assert_eq!(ids(&listed(&db, &["--kind", "sync_usage"])), [sync2, sync1]);
    assert_eq!(
        ids(&listed(&db, &["--kind", "send_dm"])),
        [gone, vip, dm2, dm1]
    );
    assert_eq!(
        ids(&listed(
            &db,
            &[
                "--kind",
                "send_dm",
                "--queue",
                "messages",
                "--state",
                "available"
            ]
        )),
        [dm2, dm1]
    );
    assert_eq!(ids(&listed(&db, &["--limit", "2"])), [gone, sync2]);
    assert_eq!(
        ids(&listed(&db, &["--kind", "send_dm", "--limit", "1"])),
        [gone]
    );
    assert!(listed(&db, &["--state", "failed"]).is_empty());
    let out = db.jobq(&["jobs", "list", "--state", "sleeping"]);
    assert_fails_saying(&out, "unknown state", &["sleeping"]);
}

async fn stats_counts_jobs_per_queue_and_state(backend: Backend) {
    let db = TestDb::new(backend).await;
    enqueue(&db, &["send_dm", DM]);
    let gone = enqueue(&db, &["send_dm", DM]);
    enqueue(&db, &["send_dm", DM]);
    enqueue(&db, &["sync_usage", SYNC]);
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    enqueue(&db, &["sync_usage", SYNC, "--at", &later]);
    db.jobq_ok(&["jobs", "discard", &gone.to_string()]);

    let stats = json(&db.jobq(&["--json", "stats"]));
    let queues: BTreeMap<String, Value> = stats["queues"]
        .as_array()
        .unwrap_or_else(|| panic!("no queues: {stats}"))
        .iter()
        .map(|q| {
            (
                q["queue"].as_str().expect("queue name").to_string(),
                q.clone(),
            )
        })
        .collect();
    assert_eq!(
        queues.keys().map(String::as_str).collect::<Vec<_>>(),
        ["messages", "sync"],
        "{stats}"
    );
    assert_eq!(
        queues["messages"]["counts"],
        json!({"available": 2, "discarded": 1}),
        "{stats}"
    );
    assert_eq!(
        queues["sync"]["counts"],
        json!({"available": 1, "scheduled": 1}),
        "{stats}"
    );
    for q in queues.values() {
        assert_eq!(q["paused"], false, "{q}");
        let age = q["oldest_available_age_s"].as_f64().expect("an age");
        assert!((0.0..600.0).contains(&age), "{q}");
    }
    assert_eq!(stats["workers"], json!([]), "{stats}");
}

fn check_audit(entry: &AuditRecord, action: &str, count: i64) {
    assert_eq!(entry.actor, "test-admin", "{entry:?}");
    assert_eq!(entry.surface, "cli", "{entry:?}");
    assert_eq!(entry.action, action, "{entry:?}");
    assert_eq!(entry.count, count, "{entry:?}");
}

async fn discard_and_cancel_by_id_are_audited(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let a = enqueue(&db, &["send_dm", DM]);
    let b = enqueue(&db, &["send_dm", DM]);
    let c = enqueue(&db, &["sync_usage", SYNC]);
    let d = enqueue(&db, &["sync_usage", SYNC]);

    db.jobq_ok(&["jobs", "discard", &a.to_string(), &b.to_string()]);
    let log = audit_log(&queue).await;
    assert_eq!(log.len(), 1, "{log:?}");
    check_audit(&log[0], "discard", 2);
    assert!(log[0].target.contains(&format!("{a},{b}")), "{:?}", log[0]);

    let out = db.jobq_ok(&["--json", "jobs", "cancel", &c.to_string()]);
    let value: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(value["changed"], json!([c]), "{value}");
    let log = audit_log(&queue).await;
    assert_eq!(log.len(), 2, "{log:?}");
    check_audit(&log[0], "cancel", 1);
    assert!(log[0].target.contains(&c.to_string()), "{:?}", log[0]);

    for (id, state) in [
        (a, JobState::Discarded),
        (b, JobState::Discarded),
        (c, JobState::Cancelled),
        (d, JobState::Available),
    ] {
        assert_eq!(db.job(&queue, id).await.state, state, "job {id}");
    }
}

/// Failed jobs of two kinds (test_fail fails at once; a job of a kind no binary knows any more
/// fails as unknown), plus a scheduled test_fail that the filter must not touch.
async fn retry_by_filter_is_audited(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let f1 = enqueue(&db, &["test_fail", PERMANENT]);
    let f2 = enqueue(&db, &["test_fail", PERMANENT]);
    let other_kind = queue
        .enqueue_new(jobs::NewJob {
            kind: "retired_kind".into(),
            queue: "test".into(),
            payload: serde_json::json!({}),
            priority: 0,
            max_attempts: 3,
            run_at: None,
            key: None,
        })
        .await
        .expect("enqueue a job of a retired kind")
        .id;
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let scheduled = enqueue(&db, &["test_fail", PERMANENT, "--at", &later]);
    {
        let _worker = db.spawn_worker(&[]);
        for id in [f1, f2, other_kind] {
            db.wait_for_state(id, JobState::Failed).await;
        }
    }
    let failed = listed(&db, &["--state", "failed", "--kind", "test_fail"]);
    assert_eq!(ids(&failed), [f2, f1]);
    for row in &failed {
        let error = row["last_error"].as_str().unwrap_or_default();
        assert!(error.contains("test failure permanent"), "{row}");
        assert_eq!(row["attempts"], 1, "{row}");
    }

    db.jobq_ok(&[
        "jobs",
        "retry",
        "--state",
        "failed",
        "--kind",
        "test_fail",
        "--yes",
    ]);
    for (id, state) in [
        (f1, JobState::Available),
        (f2, JobState::Available),
        (other_kind, JobState::Failed),
        (scheduled, JobState::Scheduled),
    ] {
        assert_eq!(db.job(&queue, id).await.state, state, "job {id}");
    }
    let log = audit_log(&queue).await;
    assert_eq!(log.len(), 1, "{log:?}");
    check_audit(&log[0], "retry", 2);
    assert!(log[0].target.contains("test_fail"), "{:?}", log[0]);

    // By id: the other kind's failed job.
    db.jobq_ok(&["jobs", "retry", &other_kind.to_string()]);
    assert_eq!(db.job(&queue, other_kind).await.state, JobState::Available);
    let log = audit_log(&queue).await;
    check_audit(&log[0], "retry", 1);
}

async fn pausing_a_queue_shows_in_queues_list_and_stats(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    enqueue(&db, &["test_effect", "{}"]);

    let paused_in = |db: &TestDb, args: &[&str]| -> Value {
        let value = json(&db.jobq(args));
        let row = value["queues"]
            .as_array()
            .and_then(|qs| qs.iter().find(|q| q["queue"] == "test"))
            .unwrap_or_else(|| panic!("no test queue in {args:?}: {value}"))
            .clone();
        row["paused"].clone()
    };

    db.jobq_ok(&["queues", "pause", "test"]);
    assert_eq!(paused_in(&db, &["--json", "queues", "list"]), true);
    assert_eq!(paused_in(&db, &["--json", "stats"]), true);
    check_audit(&audit_log(&queue).await[0], "pause", 0);

    db.jobq_ok(&["queues", "resume", "test"]);
    assert_eq!(paused_in(&db, &["--json", "queues", "list"]), false);
    assert_eq!(paused_in(&db, &["--json", "stats"]), false);
    let log = audit_log(&queue).await;
    check_audit(&log[0], "resume", 0);
    assert!(log[0].target.contains("test"), "{:?}", log[0]);

    let out = db.jobq(&["queues", "pause", "No Such Queue"]);
    assert_fails_saying(&out, "bad queue name", &["'No Such Queue' is invalid"]);
    assert_eq!(audit_log(&queue).await.len(), 2);
}

#[tokio::test]
async fn config_errors_name_the_setting_the_value_and_what_is_allowed() {
    let db = TestDb::unmigrated(Backend::Sqlite, "").await;

    let out = db
        .command(&["config", "check"])
        .env("JOBQ_WORKER_CONCURRENCY", "0")
        .output()
        .expect("run jobq");
    assert_fails_saying(
        &out,
        "concurrency 0",
        &["worker.concurrency", "0", "allowed 1 to 10000"],
    );

    let unknown_key = db.dir.path().join("unknown.toml");
    std::fs::write(&unknown_key, "[worker]\nconcurency = 3\n").expect("write config");
    let out = db
        .command(&["config", "check"])
        .env("JOBQ_CONFIG", &unknown_key)
        .output()
        .expect("run jobq");
    assert_fails_saying(
        &out,
        "unknown key",
        &["worker.concurency", "not a known setting", "concurrency"],
    );

    let bad_duration = db.dir.path().join("duration.toml");
    std::fs::write(&bad_duration, "[worker]\nlease = \"5 parsecs\"\n").expect("write config");
    let out = db
        .command(&["--config", path_str(&bad_duration), "config", "check"])
        .output()
        .expect("run jobq");
    assert_fails_saying(
        &out,
        "bad duration",
        &["worker.lease", "5 parsecs", "not a valid duration"],
    );

    // The test config itself is fine.
    let out = db.jobq(&["config", "check"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

async fn refuses(db: &TestDb, args: &[&str], needles: &[&str]) {
    let (out, _) = run_within(db.spawn(args)).await;
    assert_fails_saying(&out, &format!("jobq {args:?}"), needles);
}

/// Runs `jobq` to completion, failing the test if that takes over 30 s (a command that should
/// refuse to start must not run on instead); also how long it took.
async fn run_within(jobq: Spawn) -> (Output, Duration) {
    jobq.capture_stdout()
        .start()
        .output_within(Duration::from_secs(30))
        .await
}

async fn an_unmigrated_database_is_refused(backend: Backend) {
    let db = TestDb::unmigrated(backend, "").await;
    refuses(&db, &["worker"], &["jobq migrate"]).await;
    refuses(&db, &["stats"], &["jobq migrate"]).await;
    refuses(&db, &["enqueue", "send_dm", DM], &["jobq migrate"]).await;
    db.jobq_ok(&["migrate"]);
    db.jobq_ok(&["stats"]);
}

async fn a_newer_schema_is_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    const COLUMNS: &str = "_sqlx_migrations \
        (version, description, installed_on, success, checksum, execution_time)";
    if let Some(pool) = queue.db().postgres_pool() {
        sqlx::query(&format!(
            "INSERT INTO {COLUMNS} VALUES (99, 'from the future', now(), true, '\\x00', 1)"
        ))
        .execute(pool)
        .await
        .expect("insert version 99");
    } else {
        let pool = queue.db().sqlite_pool().expect("a pool");
        sqlx::query(&format!(
            "INSERT INTO {COLUMNS} VALUES (99, 'from the future', CURRENT_TIMESTAMP, 1, X'00', 1)"
        ))
        .execute(pool)
        .await
        .expect("insert version 99");
    }
    refuses(&db, &["worker"], &["newer", "99"]).await;
    refuses(&db, &["stats"], &["newer", "99"]).await;
    refuses(&db, &["enqueue", "send_dm", DM], &["newer", "99"]).await;
    assert_eq!(count_jobs(&queue).await, 0);
}

#[tokio::test]
async fn an_unreachable_database_fails_fast_naming_it_without_the_password() {
    let db = TestDb::unmigrated(Backend::Sqlite, "").await;
    for args in [&["stats"][..], &["worker"], &["enqueue", "send_dm", DM]] {
        let jobq = db
            .spawn(args)
            .env(
                "JOBQ_DATABASE_URL",
                "postgres://postgres:hunter2@127.0.0.1:1/x",
            )
            .env("JOBQ_DATABASE_CONNECT_TIMEOUT", "1s");
        let (out, elapsed) = run_within(jobq).await;
        assert!(
            elapsed < Duration::from_secs(10),
            "jobq {args:?} took {elapsed:?}"
        );
        assert_fails_saying(&out, &format!("jobq {args:?}"), &["127.0.0.1:1"]);
        assert!(
            !stderr(&out).contains("hunter2") && !stdout(&out).contains("hunter2"),
            "jobq {args:?} showed the password:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    let out = db
        .command(&["config", "check"])
        .env(
            "JOBQ_DATABASE_URL",
            "postgres://postgres:hunter2@127.0.0.1:1/x",
        )
        .output()
        .expect("run jobq");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("127.0.0.1:1/x"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("hunter2"), "{}", stdout(&out));
}

#[tokio::test]
async fn a_corrupt_sqlite_file_fails_naming_the_file() {
    let db = TestDb::unmigrated(Backend::Sqlite, "").await;
    let path = db.dir.path().join("corrupt.db");
    let garbage = b"this is not a database, just garbage bytes\n".repeat(200);
    std::fs::write(&path, &garbage).expect("write garbage");
    let url = format!("sqlite://{}", path.display());
    for args in [&["stats"][..], &["worker"], &["migrate"]] {
        let (out, _) = run_within(db.spawn(args).env("JOBQ_DATABASE_URL", &url)).await;
        assert_fails_saying(
            &out,
            &format!("jobq {args:?}"),
            &[path_str(&path), "not a database"],
        );
    }
    assert_eq!(
        std::fs::read(&path).expect("read file"),
        garbage,
        "the file is left as it was"
    );
}

#[tokio::test]
async fn a_locked_sqlite_file_fails_within_the_connect_timeout() {
    use sqlx::Connection;
    let db = TestDb::unmigrated(Backend::Sqlite, "").await;
    let path = db.dir.path().join("locked.db");
    let url = format!("sqlite://{}", path.display());
    // Another program holds an exclusive lock (rollback journal, as sqlite3's default).
    let mut holder = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
        .await
        .expect("open the file");
    sqlx::query("CREATE TABLE t (x)")
        .execute(&mut holder)
        .await
        .expect("create");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .expect("lock");
    let jobq = db
        .spawn(&["stats"])
        .env("JOBQ_DATABASE_URL", &url)
        .env("JOBQ_DATABASE_CONNECT_TIMEOUT", "1s")
        .env("JOBQ_DATABASE_SQLITE_BUSY_TIMEOUT", "200ms");
    let (out, took) = run_within(jobq).await;
    assert_fails_saying(
        &out,
        "jobq stats on a locked file",
        &[path_str(&path), "1s"],
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    sqlx::query("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("unlock");
}

async fn kinds_lists_the_product_kinds_with_examples_that_enqueue(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let kinds = json(&db.jobq(&["kinds", "--json"]));
    let rows = kinds.as_array().expect("an array");
    let expected = [
        ("expire_subscription", "panel", 10, 60.0),
        ("provision_client", "panel", 10, 60.0),
        ("send_dm", "messages", 8, 30.0),
        ("sync_usage", "sync", 3, 120.0),
        ("upload_transcript", "transcripts", 8, 300.0),
    ];
    let listed: BTreeSet<&str> = rows.iter().filter_map(|r| r["kind"].as_str()).collect();
    for (kind, queue_name, max_attempts, timeout_s) in expected {
        assert!(listed.contains(kind), "{kind} missing: {kinds}");
        let row = rows.iter().find(|r| r["kind"] == kind).expect("row");
        assert_eq!(row["queue"], queue_name, "{row}");
        assert_eq!(row["max_attempts"], max_attempts, "{row}");
        assert_eq!(row["timeout_s"].as_f64(), Some(timeout_s), "{row}");
        let example = row["example"].to_string();
        assert!(row["example"].is_object(), "{row}");
        let id = enqueue(&db, &[kind, &example]);
        let job = db.job(&queue, id).await;
        assert_eq!((job.kind.as_str(), job.queue.as_str()), (kind, queue_name));
        assert_eq!(job.payload, row["example"], "{kind}");
        assert_eq!(job.max_attempts, max_attempts, "{kind}");
    }
    assert_eq!(count_jobs(&queue).await, 5);
}

/// The state of every job, by id.
async fn states(queue: &Queue) -> BTreeMap<i64, JobState> {
    support::all_jobs(queue)
        .await
        .into_iter()
        .map(|j| (j.id, j.state))
        .collect()
}

/// A database with three `sync_usage` jobs a cancel of queue `sync` applies to and a discarded
/// one it does not, and what it holds before the test acts.
struct ToCancel {
    db: TestDb,
    queue: Queue,
    due: Vec<i64>,
    discarded: i64,
    before: BTreeMap<i64, JobState>,
    audited: usize,
}

async fn three_to_cancel_and_one_discarded(backend: Backend) -> ToCancel {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let due: Vec<i64> = (0..3)
        .map(|_| enqueue(&db, &["sync_usage", SYNC]))
        .collect();
    let discarded = enqueue(&db, &["sync_usage", SYNC]);
    db.jobq_ok(&["jobs", "discard", &discarded.to_string()]);
    let before = states(&queue).await;
    let audited = audit_log(&queue).await.len();
    ToCancel {
        db,
        queue,
        due,
        discarded,
        before,
        audited,
    }
}

/// Without `--yes` and with no terminal to ask on, a bulk repair is refused, saying how many
/// jobs it would change and how to go ahead, and changes nothing.
async fn a_bulk_repair_without_yes_and_without_a_terminal_changes_nothing(backend: Backend) {
    let ToCancel {
        db,
        queue,
        due,
        before,
        audited,
        ..
    } = three_to_cancel_and_one_discarded(backend).await;
    for args in [
        &["jobs", "cancel", "--queue", "sync"][..],
        &["--json", "jobs", "cancel", "--queue", "sync"],
        &["jobs", "discard", "--state", "available"],
    ] {
        let out = db.jobq(args);
        let first = due[0].to_string();
        assert_fails_saying(
            &out,
            &format!("{args:?}"),
            &[
                "3 jobs matching",
                &first,
                "Nothing was changed",
                "--yes",
                "--dry-run",
            ],
        );
        assert_eq!(states(&queue).await, before, "{args:?} changed jobs");
        assert_eq!(audit_log(&queue).await.len(), audited, "{args:?} audited");
    }

    let out = db.jobq_ok(&["jobs", "cancel", "--queue", "sync", "--yes"]);
    let printed = stdout(&out);
    assert_eq!(printed.lines().count(), 1, "one summary line:\n{printed}");
    assert!(
        printed.contains("3 job(s) changed") && printed.contains("1 left alone (discarded=1"),
        "{printed}"
    );
    for id in &due {
        assert_eq!(db.job(&queue, *id).await.state, JobState::Cancelled);
    }
    let log = audit_log(&queue).await;
    check_audit(&log[0], "cancel", 3);
}

/// `--dry-run` shows what would change, by filter or by id, and writes nothing (no job, no
/// audit entry); `--verbose` lists each job.
async fn a_dry_run_shows_what_would_change_and_changes_nothing(backend: Backend) {
    let ToCancel {
        before,
        audited,
        db,
        queue,
        discarded,
        due,
    } = three_to_cancel_and_one_discarded(backend).await;

    let out = db.jobq_ok(&["--json", "jobs", "cancel", "--queue", "sync", "--dry-run"]);
    let value: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(value["dry_run"], true, "{value}");
    assert_eq!(value["changed"], json!(due), "{value}");
    assert_eq!(value["left_alone"], json!({"discarded": 1}), "{value}");

    let out = db.jobq_ok(&[
        "jobs",
        "cancel",
        "--queue",
        "sync",
        "--dry-run",
        "--verbose",
    ]);
    let printed = stdout(&out);
    assert!(printed.contains("3 job(s) would change"), "{printed}");
    for id in &due {
        assert!(
            printed.contains(&format!("would change: job {id}\n")),
            "{printed}"
        );
    }
    assert!(
        printed.contains(&format!("left alone: job {discarded}: job is discarded")),
        "{printed}"
    );

    let out = db.jobq_ok(&["jobs", "discard", &due[0].to_string(), "--dry-run"]);
    assert!(
        stdout(&out).contains("1 job(s) would change"),
        "{}",
        stdout(&out)
    );
    let out = db.jobq(&["jobs", "cancel", &discarded.to_string(), "--dry-run"]);
    assert_fails_saying(
        &out,
        "a dry run naming a discarded job",
        &["would not cancel"],
    );

    assert_eq!(states(&queue).await, before, "a dry run changed jobs");
    assert_eq!(
        audit_log(&queue).await.len(),
        audited,
        "a dry run was audited"
    );
}

/// `jobq jobs list | head -1`: the reader closes the pipe after one line while jobq still has
/// more than a pipe's buffer to write; jobq ends quietly with success.
#[tokio::test]
async fn a_listing_piped_into_head_exits_cleanly() {
    let db = TestDb::new(Backend::Sqlite).await;
    let queue = db.queue().await;
    let many: Vec<jobs::NewJob> = (0..1500)
        .map(|_| {
            let spec = jobs::kinds::specs()
                .into_iter()
                .find(|s| s.kind == "sync_usage")
                .expect("sync_usage");
            jobs::NewJob::from_json(&spec, &json!({"panel": "de-1"}), Default::default())
                .expect("a sync_usage job")
        })
        .collect();
    queue.enqueue_many(&many).await.expect("enqueue");
    for (list, first) in [
        ("jobs list --limit 2000", "id"),
        ("--json jobs list --limit 2000", "["),
    ] {
        let script = format!("\"$JOBQ\" {list} | head -1; exit \"${{PIPESTATUS[0]}}\"");
        let out = std::process::Command::new("bash")
            .args(["-c", &script])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("JOBQ", env!("CARGO_BIN_EXE_jobq"))
            .env("JOBQ_DATABASE_URL", &db.url)
            .env("JOBQ_CONFIG", &db.config)
            .stdin(Stdio::null())
            .output()
            .expect("run bash");
        let err = stderr(&out);
        assert!(
            out.status.success(),
            "{list} | head -1 exited {:?}: {err}",
            out.status
        );
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{err}"
        );
        assert!(
            stdout(&out).trim_start().starts_with(first),
            "{}",
            stdout(&out)
        );
        assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
    }
}

/// A queue name no kind uses and no job is in is refused (pause, resume, a worker's
/// `--queues`), listing the known queues but not the engine's own; a queue a job was enqueued
/// into with `--queue` is known.
async fn a_queue_typo_is_refused_naming_the_known_queues(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    const KNOWN: &str = "Known queues: messages, panel, sync, transcripts";
    for action in ["pause", "resume"] {
        let out = db.jobq(&["queues", action, "nosuchqueue"]);
        assert_fails_saying(&out, action, &["unknown queue 'nosuchqueue'", KNOWN]);
        assert!(!stderr(&out).contains("bench"), "{}", stderr(&out));
    }
    refuses(
        &db,
        &["worker", "--queues", "pannel,messages"],
        &["unknown queue 'pannel'", "--queues", KNOWN],
    )
    .await;
    let listed = json(&db.jobq(&["--json", "queues", "list"]));
    assert_eq!(listed["queues"], json!([]), "{listed}");
    assert!(audit_log(&queue).await.is_empty(), "nothing was audited");

    enqueue(&db, &["send_dm", DM, "--queue", "vip"]);
    db.jobq_ok(&["queues", "pause", "vip"]);
    db.jobq_ok(&["queues", "pause", "panel"]);
}

/// The engine's own kinds are not the user's: `jobq kinds` and an unknown kind's error name
/// the product's kinds only.
#[tokio::test]
async fn engine_kinds_are_not_shown() {
    let db = TestDb::new(Backend::Sqlite).await;
    let listed = stdout(&db.jobq_ok(&["kinds"]));
    let out = db.jobq(&["enqueue", "send_email", DM]);
    for shown in [listed.as_str(), &stderr(&out)] {
        assert!(shown.contains("send_dm"), "{shown}");
        for internal in ["noop", "bench", "test_effect", "test_fail"] {
            assert!(!shown.contains(internal), "{internal} shown:\n{shown}");
        }
    }
}

/// Without `$USER` (cron, a container), an audit entry names the user id that acted.
#[tokio::test]
async fn an_audit_entry_without_a_user_name_names_the_uid() {
    use std::os::unix::fs::MetadataExt;
    let db = TestDb::new(Backend::Sqlite).await;
    let queue = db.queue().await;
    let out = db
        .command(&["queues", "pause", "panel"])
        .env_remove("USER")
        .output()
        .expect("run jobq");
    assert!(out.status.success(), "{}", stderr(&out));
    let uid = std::fs::metadata("/proc/self").expect("/proc/self").uid();
    assert_eq!(audit_log(&queue).await[0].actor, format!("uid {uid}"));
}

on_both_backends!(
    a_queue_typo_is_refused_naming_the_known_queues,
    a_bulk_repair_without_yes_and_without_a_terminal_changes_nothing,
    a_dry_run_shows_what_would_change_and_changes_nothing,
    bad_input_is_refused_and_nothing_is_written,
    enqueue_reads_the_payload_from_standard_input,
    jobs_list_has_the_documented_fields_and_filters,
    stats_counts_jobs_per_queue_and_state,
    discard_and_cancel_by_id_are_audited,
    pausing_a_queue_shows_in_queues_list_and_stats,
    an_unmigrated_database_is_refused,
    a_newer_schema_is_refused,
    kinds_lists_the_product_kinds_with_examples_that_enqueue,
    repairs_of_an_unknown_id_fail_naming_it,
    retry_by_filter_is_audited,
);
