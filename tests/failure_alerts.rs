//! Admins are told by DM when jobs fail for good, on both backends, with two worker processes
//! looking at once: a job failing alone is reported at once in its own message; several
//! failing together are gathered into one digest; each failure is reported once.

mod support;

use std::time::Duration;

use jobs::JobState;
use jobs::driver::JobRecord;
use support::*;

on_both_backends!(failures_are_reported_once_alone_or_gathered);

const ALERTS: &str = r#"
[telegram]
api_url = "http://127.0.0.1:9/"
admins = [777]
"#;

/// The alert DMs enqueued so far, oldest first.
async fn alerts(db: &TestDb) -> Vec<JobRecord> {
    let queue = db.queue().await;
    let mut dms: Vec<JobRecord> = jobs_of(&queue, "send_dm")
        .await
        .into_iter()
        .filter(|j| {
            j.key
                .as_deref()
                .is_some_and(|k| k.starts_with("failure_digest:"))
        })
        .collect();
    dms.sort_by_key(|j| j.id);
    dms
}

async fn alerts_reach(db: &TestDb, count: usize) -> Vec<JobRecord> {
    eventually(
        Duration::from_secs(30),
        &format!("{count} alerts"),
        || async {
            let found = alerts(db).await;
            (found.len() >= count).then_some(found)
        },
    )
    .await
}

async fn failures_are_reported_once_alone_or_gathered(backend: Backend) {
    let config = format!("{ALERTS}\n");
    let db = TestDb::with_config(backend, &config).await;
    let digest_every = "3s";
    let text = std::fs::read_to_string(&db.config).expect("config");
    let text = text.replace(
        "[maintenance]\n",
        &format!("[maintenance]\nfailure_digest_every = \"{digest_every}\"\n"),
    );
    std::fs::write(&db.config, text).expect("config");
    let _first = db.spawn_worker(&[]);
    let _second = db.spawn_worker(&[]);
    // The alert loops start their cursor at "now": failures before it are history, not news.
    let queue = db.queue().await;
    eventually(Duration::from_secs(30), "the alert cursor", || async {
        let sql = "SELECT count(*) FROM jobq_cursors WHERE name = 'failure_alerts'";
        let count: i64 = match (queue.db().postgres_pool(), queue.db().sqlite_pool()) {
            (Some(pool), _) => sqlx::query_scalar(sql).fetch_one(pool).await.ok()?,
            (_, Some(pool)) => sqlx::query_scalar(sql).fetch_one(pool).await.ok()?,
            _ => return None,
        };
        (count == 1).then_some(())
    })
    .await;

    let alone = db.enqueue("test_fail", r#"{"mode":"permanent"}"#, &[]);
    db.wait_for_state(alone, JobState::Failed).await;
    let found = alerts_reach(&db, 1).await;
    let first = &found[0];
    assert_eq!(
        first.payload["user"],
        serde_json::json!({"platform": "telegram", "id": 777})
    );
    let said = first.payload["text"].as_str().expect("text");
    assert!(
        said.starts_with(&format!("Job {alone} failed for good: test_fail")),
        "{said}"
    );

    let together: Vec<i64> = (0..4)
        .map(|_| db.enqueue("test_fail", r#"{"mode":"permanent"}"#, &[]))
        .collect();
    for id in &together {
        db.wait_for_state(*id, JobState::Failed).await;
    }
    let found = alerts_reach(&db, 2).await;
    assert_eq!(found.len(), 2, "one digest for the four: {found:#?}");
    let said = found[1].payload["text"].as_str().expect("text");
    assert!(said.starts_with("4 jobs failed for good:"), "{said}");
    for id in &together {
        assert!(said.contains(&format!("#{id} test_fail")), "{id} in {said}");
    }
    assert!(
        !said.contains(&format!("#{alone} ")),
        "reported once: {said}"
    );
}
