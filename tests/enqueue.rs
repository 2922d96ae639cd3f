//! Enqueueing: idempotency keys (CLI, library, concurrent processes, reuse after discard or
//! cancel), enqueue inside a caller's transaction, bulk enqueue, options, default keys.

mod support;

use std::collections::{HashMap, HashSet};
use std::process::Stdio;

use chrono::{DateTime, SubsecRound, Utc};
use jobs::driver::JobRecord;
use jobs::kinds::{Platform, Recipient, SendDm, UserId};
use jobs::{EnqueueOptions, JobState, NewJob, Queue};
use serde_json::{Value, json};
use support::{Backend, TestDb, all_jobs, json, stderr};

const DM: &str = r#"{"user":{"platform":"telegram","id":42},"text":"hi"}"#;

fn dm(user: i64, text: &str) -> SendDm {
    let user = Recipient::new(Platform::Telegram, UserId::parse(user).expect("user id"));
    SendDm::new(user, text).expect("a valid send_dm")
}

fn keyed(key: &str) -> EnqueueOptions {
    EnqueueOptions {
        key: Some(key.to_string()),
        ..EnqueueOptions::default()
    }
}

/// Every job row, whatever its state.
async fn count_jobs(queue: &Queue) -> i64 {
    let counts = queue.driver().state_counts().await.expect("state counts");
    counts.iter().map(|c| c.count).sum()
}

/// `jobq --json enqueue ARGS`: the id and whether this call created the job.
fn cli_enqueue(db: &TestDb, args: &[&str]) -> (i64, bool) {
    let mut full = vec!["--json", "enqueue"];
    full.extend_from_slice(args);
    let value = json(&db.jobq(&full));
    parse_enqueued(&value)
}

fn parse_enqueued(value: &Value) -> (i64, bool) {
    let id = value["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id in {value}"));
    let created = value["created"]
        .as_bool()
        .unwrap_or_else(|| panic!("no created in {value}"));
    (id, created)
}

async fn a_second_enqueue_with_the_same_key_returns_the_same_job(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;

    let (first, created) = cli_enqueue(&db, &["send_dm", DM, "--key", "order-17"]);
    assert!(created, "the first enqueue creates the job");
    let (second, created) = cli_enqueue(&db, &["send_dm", DM, "--key", "order-17"]);
    assert_eq!(second, first, "the CLI returns the job holding the key");
    assert!(!created, "the second CLI enqueue must say created: false");

    // The library sees the same key as held, even with another payload.
    let held = queue
        .enqueue(&dm(7, "another text"), keyed("order-17"))
        .await
        .expect("library enqueue");
    assert_eq!(held.id, first);
    assert!(!held.created);
    assert_eq!(count_jobs(&queue).await, 1, "only one row for key order-17");
    let job = db.job(&queue, first).await;
    assert_eq!(job.payload["text"], "hi", "the held job is left as it was");

    // A key first used by the library, then by the CLI.
    let lib = queue
        .enqueue(&dm(7, "from the library"), keyed("tg-update-5501"))
        .await
        .expect("library enqueue");
    assert!(lib.created);
    assert_ne!(lib.id, first);
    let again = queue
        .enqueue(&dm(7, "from the library"), keyed("tg-update-5501"))
        .await
        .expect("library enqueue again");
    assert_eq!(
        again,
        jobs::Enqueued {
            id: lib.id,
            created: false
        }
    );
    let (cli_id, created) = cli_enqueue(&db, &["send_dm", DM, "--key", "tg-update-5501"]);
    assert_eq!((cli_id, created), (lib.id, false));

    assert_eq!(count_jobs(&queue).await, 2);
    let keys: Vec<Option<String>> = all_jobs(&queue).await.into_iter().map(|j| j.key).collect();
    assert_eq!(
        keys,
        [
            Some("tg-update-5501".to_string()),
            Some("order-17".to_string())
        ]
    );
}

async fn concurrent_enqueues_of_one_key_create_one_job(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    // Start all eight before waiting for any.
    let children: Vec<_> = (0..8)
        .map(|_| {
            db.command(&["--json", "enqueue", "send_dm", DM, "--key", "race-1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn jobq enqueue")
        })
        .collect();
    let results: Vec<(i64, bool)> = children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().expect("wait for jobq enqueue");
            parse_enqueued(&json(&out))
        })
        .collect();

    let ids: HashSet<i64> = results.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), 1, "all eight print the same id: {results:?}");
    let creators = results.iter().filter(|(_, created)| *created).count();
    assert_eq!(creators, 1, "exactly one says created: {results:?}");
    assert_eq!(count_jobs(&queue).await, 1, "exactly one job row");
    let id = *ids.iter().next().unwrap();
    assert_eq!(db.job(&queue, id).await.key.as_deref(), Some("race-1"));
}

async fn a_key_is_free_again_after_discard_or_cancel_but_not_while_completed_or_failed(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;

    let (first, _) = cli_enqueue(&db, &["send_dm", DM, "--key", "K"]);
    db.jobq_ok(&["jobs", "discard", &first.to_string()]);
    assert_eq!(db.job(&queue, first).await.state, JobState::Discarded);
    let (second, created) = cli_enqueue(&db, &["send_dm", DM, "--key", "K"]);
    assert!(created, "a discarded job's key can be used again");
    assert_ne!(second, first);

    db.jobq_ok(&["jobs", "cancel", &second.to_string()]);
    assert_eq!(db.job(&queue, second).await.state, JobState::Cancelled);
    let third = queue
        .enqueue(&dm(42, "hi"), keyed("K"))
        .await
        .expect("library enqueue");
    assert!(third.created, "a cancelled job's key can be used again");
    assert!(third.id != first && third.id != second);
    // The new holder keeps the key.
    let (again, created) = cli_enqueue(&db, &["send_dm", DM, "--key", "K"]);
    assert_eq!((again, created), (third.id, false));
    assert_eq!(count_jobs(&queue).await, 3);

    // Completed and failed jobs still hold their keys.
    let (done, _) = cli_enqueue(&db, &["test_effect", "{}", "--key", "C"]);
    let (broken, _) = cli_enqueue(&db, &["test_fail", r#"{"mode":"permanent"}"#, "--key", "F"]);
    let worker = db.spawn_worker(&[]);
    for (id, state) in [(done, JobState::Completed), (broken, JobState::Failed)] {
        db.wait_for_state(id, state).await;
    }
    drop(worker);
    let (same, created) = cli_enqueue(&db, &["test_effect", "{}", "--key", "C"]);
    assert_eq!(
        (same, created),
        (done, false),
        "a completed job keeps its key"
    );
    let (same, created) = cli_enqueue(&db, &["test_fail", r#"{"mode":"permanent"}"#, "--key", "F"]);
    assert_eq!(
        (same, created),
        (broken, false),
        "a failed job keeps its key"
    );
    assert_eq!(count_jobs(&queue).await, 5);
}

const ORDERS_TABLE: &str = "CREATE TABLE shop_orders (id BIGINT PRIMARY KEY, note TEXT NOT NULL)";

async fn create_orders_table(queue: &Queue) {
    if let Some(pool) = queue.db().postgres_pool() {
        sqlx::query(ORDERS_TABLE)
            .execute(pool)
            .await
            .expect("create table");
    } else {
        let pool = queue.db().sqlite_pool().expect("a pool");
        sqlx::query(ORDERS_TABLE)
            .execute(pool)
            .await
            .expect("create table");
    }
}

async fn orders(queue: &Queue) -> Vec<(i64, String)> {
    const SQL: &str = "SELECT id, note FROM shop_orders ORDER BY id";
    if let Some(pool) = queue.db().postgres_pool() {
        sqlx::query_as(SQL)
            .fetch_all(pool)
            .await
            .expect("read orders")
    } else {
        let pool = queue.db().sqlite_pool().expect("a pool");
        sqlx::query_as(SQL)
            .fetch_all(pool)
            .await
            .expect("read orders")
    }
}

async fn insert_order(tx: &mut jobs::queue::JobTx, id: i64) {
    let sql = format!("INSERT INTO shop_orders (id, note) VALUES ({id}, 'paid')");
    match tx.conn() {
        jobs::db::Conn::Postgres(conn) => {
            sqlx::query(&sql).execute(conn).await.expect("insert order");
        }
        jobs::db::Conn::Sqlite(conn) => {
            sqlx::query(&sql).execute(conn).await.expect("insert order");
        }
    }
}

async fn enqueue_in_a_transaction_commits_or_rolls_back_with_the_callers_writes(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;

    // Rolled back: no job, and its key stays free.
    let mut tx = queue.begin().await.expect("begin");
    let rolled = tx
        .enqueue(&dm(42, "rolled back"), keyed("tx-1"))
        .await
        .expect("enqueue in tx");
    assert!(rolled.created);
    tx.rollback().await.expect("rollback");
    assert_eq!(
        count_jobs(&queue).await,
        0,
        "a rolled back enqueue leaves no job"
    );
    assert!(queue.driver().job(rolled.id).await.expect("read").is_none());

    // Committed: the job exists, and is not visible to others before the commit.
    let mut tx = queue.begin().await.expect("begin");
    let committed = tx
        .enqueue(&dm(42, "committed"), keyed("tx-1"))
        .await
        .expect("enqueue in tx");
    assert!(
        committed.created,
        "the key was not taken by the rolled back enqueue"
    );
    assert_eq!(count_jobs(&queue).await, 0, "not visible before commit");
    tx.commit().await.expect("commit");
    let job = db.job(&queue, committed.id).await;
    assert_eq!(job.payload["text"], "committed");
    assert_eq!(job.state, JobState::Available);
    assert_eq!(count_jobs(&queue).await, 1);

    // The caller's own row and the job go together.
    create_orders_table(&queue).await;
    let mut tx = queue.begin().await.expect("begin");
    insert_order(&mut tx, 17).await;
    tx.enqueue(&dm(42, "order 17 paid"), keyed("order-17"))
        .await
        .expect("enqueue in tx");
    tx.rollback().await.expect("rollback");
    assert!(orders(&queue).await.is_empty(), "the order was rolled back");
    assert_eq!(
        count_jobs(&queue).await,
        1,
        "the job was rolled back with it"
    );

    let mut tx = queue.begin().await.expect("begin");
    insert_order(&mut tx, 17).await;
    let paid = tx
        .enqueue(&dm(42, "order 17 paid"), keyed("order-17"))
        .await
        .expect("enqueue in tx");
    tx.commit().await.expect("commit");
    assert_eq!(orders(&queue).await, [(17, "paid".to_string())]);
    assert!(paid.created);
    assert_eq!(
        db.job(&queue, paid.id).await.key.as_deref(),
        Some("order-17")
    );
    assert_eq!(count_jobs(&queue).await, 2);
}

async fn bulk_enqueue_returns_ids_in_input_order(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;

    // Keys already held before the batch, and one freed by a discard.
    let mut held: HashMap<String, i64> = HashMap::new();
    for n in 0..10 {
        let key = format!("held-{n}");
        let e = queue
            .enqueue(&dm(1, &format!("holder {n}")), keyed(&key))
            .await
            .expect("enqueue holder");
        held.insert(key, e.id);
    }
    let gone = queue
        .enqueue(&dm(1, "discarded holder"), keyed("gone"))
        .await
        .expect("enqueue");
    let audit = jobs::audit::AuditEntry::cli("discard", "test");
    let discarded = queue.discard(&[gone.id], &audit).await.expect("discard");
    assert_eq!(discarded.changed, [gone.id]);

    let key_of = |i: usize| -> Option<String> {
        match i % 5 {
            0 | 4 => None,
            1 => Some(format!("unique-{i}")),
            // Pairs within the batch: (2, 7), (12, 17), ...
            2 => Some(format!("dup-{}", i / 10)),
            _ if i == 503 => Some("gone".to_string()),
            _ => Some(format!("held-{}", (i / 5) % 10)),
        }
    };
    let batch: Vec<NewJob> = (0..1000)
        .map(|i| {
            let job = dm(i as i64 + 1, &format!("job {i}"));
            NewJob::new(
                &job,
                EnqueueOptions {
                    key: key_of(i),
                    ..EnqueueOptions::default()
                },
            )
            .expect("new job")
        })
        .collect();
    let results = queue.enqueue_many(&batch).await.expect("enqueue_many");
    assert_eq!(results.len(), 1000);

    let rows: HashMap<i64, JobRecord> = all_jobs(&queue)
        .await
        .into_iter()
        .map(|j| (j.id, j))
        .collect();
    let mut first_in_batch: HashMap<String, i64> = HashMap::new();
    let mut created_ids = HashSet::new();
    for (i, result) in results.iter().enumerate() {
        let key = key_of(i);
        let expected_holder = key.as_ref().and_then(|k| {
            held.get(k)
                .copied()
                .or_else(|| first_in_batch.get(k).copied())
        });
        match expected_holder {
            Some(holder) => {
                assert_eq!(
                    result.id, holder,
                    "job {i} (key {key:?}) gets the holder's id"
                );
                assert!(!result.created, "job {i} (key {key:?}) was not created");
            }
            None => {
                assert!(result.created, "job {i} (key {key:?}) was created");
                assert!(
                    created_ids.insert(result.id),
                    "job {i}: id {} twice",
                    result.id
                );
                let row = rows
                    .get(&result.id)
                    .unwrap_or_else(|| panic!("job {i}: no row with id {}", result.id));
                assert_eq!(
                    row.payload["text"],
                    format!("job {i}"),
                    "job {i}: id {}",
                    result.id
                );
                assert_eq!(row.key, key, "job {i}");
                if let Some(k) = key {
                    first_in_batch.insert(k, result.id);
                }
            }
        }
    }
    // 0|4: 400 keyless, 1: 200 unique, 2: 100 first of a pair, 3: only "gone" is new.
    assert_eq!(created_ids.len(), 400 + 200 + 100 + 1);
    assert_ne!(
        results[503].id, gone.id,
        "the discarded holder's key was reused"
    );
    assert_eq!(count_jobs(&queue).await, 10 + 1 + 701);
}

async fn run_at_priority_and_max_attempts_are_stored(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;

    let at = (Utc::now() + chrono::Duration::hours(1)).trunc_subsecs(0);
    let (id, _) = cli_enqueue(
        &db,
        &[
            "send_dm",
            DM,
            "--at",
            &at.to_rfc3339(),
            "--priority",
            "7",
            "--max-attempts",
            "3",
        ],
    );
    let listed = json(&db.jobq(&["--json", "jobs", "list"]));
    let row = listed
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == json!(id)))
        .unwrap_or_else(|| panic!("job {id} not listed: {listed}"));
    assert_eq!(row["state"], "scheduled", "{row}");
    assert_eq!(row["priority"], 7, "{row}");
    assert_eq!(row["max_attempts"], 3, "{row}");
    let listed_at = DateTime::parse_from_rfc3339(row["run_at"].as_str().expect("run_at"))
        .expect("run_at is RFC 3339");
    assert_eq!(listed_at, at, "{row}");

    // The library, with a negative priority.
    let options = EnqueueOptions {
        run_at: Some(at),
        priority: Some(-5),
        max_attempts: Some(2),
        ..EnqueueOptions::default()
    };
    let e = queue
        .enqueue(&dm(42, "later"), options)
        .await
        .expect("enqueue");
    let job = db.job(&queue, e.id).await;
    assert_eq!(job.state, JobState::Scheduled);
    assert_eq!(job.run_at, at);
    assert_eq!((job.priority, job.max_attempts, job.attempts), (-5, 2, 0));

    // Defaults: due now, priority 0, the kind's attempts; a past run-at is due too.
    let (now_id, _) = cli_enqueue(&db, &["send_dm", DM]);
    let job = db.job(&queue, now_id).await;
    assert_eq!(job.state, JobState::Available);
    assert_eq!((job.priority, job.max_attempts), (0, 8));
    let past = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let (past_id, _) = cli_enqueue(&db, &["send_dm", DM, "--at", &past]);
    assert_eq!(db.job(&queue, past_id).await.state, JobState::Available);
}

async fn naturally_unique_kinds_get_a_default_key(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let payload = r#"{"subscription":42,"expiry":"2025-02-01T00:00:00Z"}"#;

    let (first, created) = cli_enqueue(&db, &["expire_subscription", payload]);
    assert!(created);
    let (second, created) = cli_enqueue(&db, &["expire_subscription", payload]);
    assert_eq!(
        (second, created),
        (first, false),
        "same payload, no key: one job"
    );
    // The same instant written in another zone is the same subscription expiry.
    let (third, created) = cli_enqueue(
        &db,
        &[
            "expire_subscription",
            r#"{"subscription":42,"expiry":"2025-02-01T03:00:00+03:00"}"#,
        ],
    );
    assert_eq!((third, created), (first, false));
    assert_eq!(count_jobs(&queue).await, 1);
    assert_eq!(
        db.job(&queue, first).await.key.as_deref(),
        Some("expire_subscription:42:2025-02-01T00:00:00Z")
    );

    // Another expiry is another job.
    let (other, created) = cli_enqueue(
        &db,
        &[
            "expire_subscription",
            r#"{"subscription":42,"expiry":"2025-03-01T00:00:00Z"}"#,
        ],
    );
    assert!(created);
    assert_ne!(other, first);
    assert_eq!(count_jobs(&queue).await, 2);
}

on_both_backends!(
    a_second_enqueue_with_the_same_key_returns_the_same_job,
    concurrent_enqueues_of_one_key_create_one_job,
    a_key_is_free_again_after_discard_or_cancel_but_not_while_completed_or_failed,
    enqueue_in_a_transaction_commits_or_rolls_back_with_the_callers_writes,
    bulk_enqueue_returns_ids_in_input_order,
    run_at_priority_and_max_attempts_are_stored,
    naturally_unique_kinds_get_a_default_key,
    a_payload_with_a_nul_character_is_refused_on_both_backends,
);

async fn a_payload_with_a_nul_character_is_refused_on_both_backends(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let out = db.jobq(&[
        "enqueue",
        "send_dm",
        r#"{"user":{"platform":"telegram","id":42},"text":"a\u0000b"}"#,
    ]);
    assert!(!out.status.success(), "a NUL payload was accepted");
    assert!(stderr(&out).contains("NUL"), "{}", stderr(&out));
    assert_eq!(count_jobs(&queue).await, 0);
}
