//! The bots' shared admin commands (`producer::admin_jobs`) and per-user command limit
//! (`producer::command_limit`) against real databases on both backends.

mod support;

use std::time::Duration;

use chrono::Utc;
use jobs::configuration::BotSettings;
use jobs::driver::{AttemptError, Finish, Finished};
use jobs::kinds::{Platform, Recipient, SendDm, UserId};
use jobs::{EnqueueOptions, JobState, Queue};
use producer::admin_jobs::{self, Actor, AdminError, FailedQuery, PAGE_SIZE};
use producer::command_limit::{CommandLimit, Verdict};
use support::{Backend, TestDb};

fn dm(text: &str) -> SendDm {
    let user = Recipient::new(Platform::Discord, UserId::parse(42).expect("id"));
    SendDm::new(user, text).expect("valid dm")
}

/// Enqueues `n` send_dm jobs and fails each for good with an error naming it: ids ascending.
async fn failed_jobs(queue: &Queue, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = queue
            .enqueue(&dm(&format!("hello {i}")), EnqueueOptions::default())
            .await
            .expect("enqueue")
            .id;
        ids.push(id);
    }
    fail_all(queue, "messages").await;
    ids
}

/// Claims every due job of `queue_name` and writes it `failed` with "boom <id>".
async fn fail_all(queue: &Queue, queue_name: &str) {
    let driver = queue.driver();
    let fetched = driver
        .fetch(
            queue_name,
            100,
            "test-worker",
            Duration::from_secs(60),
            &Default::default(),
        )
        .await
        .expect("fetch");
    let finished: Vec<Finished> = fetched
        .iter()
        .map(|job| Finished {
            id: job.id,
            attempt: job.attempt,
            finish: Finish::Failed {
                error: AttemptError {
                    attempt: job.attempt,
                    at: Utc::now(),
                    worker: "test-worker".into(),
                    duration_ms: 5,
                    error: format!("boom {} https://sub.example.com/sub/Secret", job.id),
                },
            },
        })
        .collect();
    driver.finish(&finished).await.expect("finish");
}

fn admin() -> Actor {
    Actor::new(Platform::Discord, 1234, "alice")
}

async fn failed_lists_newest_first_in_pages_with_the_last_error(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let ids = failed_jobs(&queue, 7).await;

    let first = admin_jobs::failed(&queue, &FailedQuery::default())
        .await
        .expect("first page");
    let newest: Vec<i64> = ids.iter().rev().take(PAGE_SIZE as usize).copied().collect();
    assert_eq!(first.jobs.iter().map(|j| j.id).collect::<Vec<_>>(), newest);
    assert_eq!(first.total, 7);
    let last_error = first.jobs[0].last_error.clone().unwrap_or_default();
    assert!(
        last_error.starts_with(&format!("boom {}", ids[6])),
        "{last_error}"
    );
    assert!(
        !last_error.contains("Secret"),
        "links are masked: {last_error}"
    );
    let marker = first.next.clone().expect("an older page exists");

    let text = admin_jobs::render_failed(&first, |m| format!("/jobs failed page:{m}"));
    assert!(
        text.contains(&format!("#{} send_dm (messages)", ids[6])),
        "{text}"
    );
    assert!(
        text.contains(&format!("/jobs failed page:{marker}")),
        "{text}"
    );

    let query = FailedQuery::parse(None, Some(&marker)).expect("marker parses");
    let second = admin_jobs::failed(&queue, &query).await.expect("page 2");
    assert_eq!(
        second.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[1], ids[0]]
    );
    assert_eq!(second.next, None);
}

async fn failed_filters_by_kind(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    failed_jobs(&queue, 2).await;
    let query = FailedQuery::parse(Some("upload_transcript"), None).expect("kind parses");
    let page = admin_jobs::failed(&queue, &query).await.expect("list");
    assert!(page.jobs.is_empty());
    assert_eq!(
        admin_jobs::render_failed(&page, |m| m.to_string()),
        "No failed jobs of kind upload_transcript."
    );
    let query = FailedQuery::parse(Some("send_dm"), None).expect("kind parses");
    assert_eq!(
        admin_jobs::failed(&queue, &query)
            .await
            .expect("list")
            .total,
        2
    );
}

async fn retry_and_discard_change_the_job_and_write_the_audit_log(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let ids = failed_jobs(&queue, 2).await;

    let done = admin_jobs::retry(&queue, &admin(), &ids[0].to_string())
        .await
        .expect("retry");
    assert_eq!(done.from, JobState::Failed);
    assert_eq!(db.job(&queue, ids[0]).await.state, JobState::Available);
    assert!(admin_jobs::render_repaired(&done).contains("will run again"));

    let bob = Actor::new(Platform::Telegram, 77, "bob");
    admin_jobs::discard(&queue, &bob, &format!("#{}", ids[1]))
        .await
        .expect("discard");
    assert_eq!(db.job(&queue, ids[1]).await.state, JobState::Discarded);

    let audit = queue.driver().audit_log(10).await.expect("audit");
    let audited = |action: &str| {
        let entry = audit.iter().find(|a| a.action == action);
        entry.unwrap_or_else(|| panic!("{action} not audited: {audit:#?}"))
    };
    let retry = audited("retry");
    assert_eq!(retry.actor, "alice (discord 1234)");
    assert_eq!(retry.surface, "discord");
    assert_eq!(retry.target, format!("jobs {}", ids[0]));
    assert_eq!(retry.count, 1);
    let discard = audited("discard");
    assert_eq!(discard.actor, "bob (telegram 77)");
    assert_eq!(discard.surface, "telegram");
}

async fn bad_input_is_refused_naming_what_is_wrong(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let available = queue
        .enqueue(&dm("waiting"), EnqueueOptions::default())
        .await
        .expect("enqueue")
        .id;

    let error = admin_jobs::retry(&queue, &admin(), "abc").await.err();
    assert!(
        matches!(&error, Some(AdminError::BadId(text)) if text == "abc"),
        "{error:?}"
    );

    let error = admin_jobs::discard(&queue, &admin(), "999999").await.err();
    assert!(
        matches!(error, Some(AdminError::UnknownJob(999999))),
        "{error:?}"
    );

    let error = admin_jobs::retry(&queue, &admin(), &available.to_string())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.contains(&format!("Cannot retry job #{available}: job is available")),
        "{error}"
    );
    assert_eq!(db.job(&queue, available).await.state, JobState::Available);

    // Neither a typo nor an unknown id is written to the audit log.
    let audit = queue.driver().audit_log(10).await.expect("audit");
    assert!(audit.iter().all(|a| a.target != "jobs 999999"), "{audit:?}");
}

async fn stats_count_states_per_queue(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    failed_jobs(&queue, 2).await;
    queue
        .enqueue(&dm("later"), EnqueueOptions::default())
        .await
        .expect("enqueue");
    let stats = admin_jobs::stats(&queue).await.expect("stats");
    let messages = stats
        .queues
        .iter()
        .find(|q| q.name == "messages")
        .expect("messages queue");
    assert_eq!(messages.counts.get("failed"), Some(&2));
    assert_eq!(messages.counts.get("available"), Some(&1));
    let text = admin_jobs::render_stats(&stats);
    assert!(text.contains("• messages: available 1, failed 2"), "{text}");
}

async fn command_limit_refuses_past_the_burst_across_processes(backend: Backend) {
    let db = TestDb::new(backend).await;
    let settings = BotSettings {
        commands_per_minute: 1,
        command_burst: 2,
    };
    // Two bot processes: two queues, one database.
    let one = CommandLimit::new(&db.queue().await, &settings, Platform::Discord).expect("limit");
    let two = CommandLimit::new(&db.queue().await, &settings, Platform::Discord).expect("limit");
    assert_eq!(one.check(5, false).await, Verdict::Allowed);
    assert_eq!(two.check(5, false).await, Verdict::Allowed);
    let Verdict::Limited { retry_after } = one.check(5, false).await else {
        panic!("the third command within the burst should be limited");
    };
    assert!(
        retry_after > Duration::from_secs(50) && retry_after <= Duration::from_secs(60),
        "{retry_after:?}"
    );
    // Another user, and the same user on the other platform, have their own turns.
    assert_eq!(two.check(6, false).await, Verdict::Allowed);
    let telegram =
        CommandLimit::new(&db.queue().await, &settings, Platform::Telegram).expect("limit");
    assert_eq!(telegram.check(5, false).await, Verdict::Allowed);
    // An admin past the limit goes through.
    assert_eq!(one.check(5, true).await, Verdict::AdminBypass);
}

on_both_backends!(
    failed_lists_newest_first_in_pages_with_the_last_error,
    failed_filters_by_kind,
    retry_and_discard_change_the_job_and_write_the_audit_log,
    bad_input_is_refused_naming_what_is_wrong,
    stats_count_states_per_queue,
    command_limit_refuses_past_the_burst_across_processes,
);
