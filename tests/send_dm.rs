//! `send_dm` end to end, on both backends: real `jobq worker` processes against the fake
//! Telegram and Discord servers over HTTP. A DM is delivered once and recorded in the ledger; a
//! job whose send is already recorded sends nothing; blocked users and closed DMs fail for good
//! with a clear error; a 429 reschedules no sooner than it says, without spending an attempt; the per-chat rate holds across
//! two worker processes (checked on the fake's receive times); the bot tokens appear in no log
//! line and no job error.

mod support;

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use fakes::discord::FakeDiscord;
use fakes::telegram::{ChatState, FakeTelegram, Fault, FaultRule};
use jobs::driver::JobRecord;
use jobs::kinds::Platform;
use jobs::ledger::{Ledger, SentEntry};
use jobs::{JobState, Queue};
use support::*;

on_both_backends!(
    a_dm_is_delivered_once_and_recorded_in_the_ledger,
    a_job_whose_send_is_recorded_sends_nothing,
    blocked_users_and_closed_dms_fail_permanently_with_a_clear_error,
    a_429_reschedules_no_sooner_than_retry_after,
    the_per_chat_rate_holds_across_two_worker_processes,
    the_tokens_appear_in_no_log_line_and_no_job_error,
);

/// Recognisable tokens: their secret parts must never show up in a log or an error.
const TELEGRAM_TOKEN: &str = "987654321:TGsecretNEVERinLOGSabcdef0123456789";
const TELEGRAM_SECRET: &str = "TGsecretNEVERinLOGSabcdef0123456789";
const DISCORD_TOKEN: &str = "MTIzNDU2.DCsecretNEVERinLOGS.xyz_0123456789";
const DISCORD_SECRET: &str = "DCsecretNEVERinLOGS";
const USER: i64 = 515151;

struct Fakes {
    telegram: FakeTelegram,
    discord: FakeDiscord,
}

async fn fakes() -> Fakes {
    Fakes {
        telegram: FakeTelegram::start(TELEGRAM_TOKEN)
            .await
            .expect("fake telegram"),
        discord: FakeDiscord::start(DISCORD_TOKEN)
            .await
            .expect("fake discord"),
    }
}

async fn db_with_chats(backend: Backend, fakes: &Fakes) -> TestDb {
    let extra = format!(
        "\n[telegram]\napi_url = \"{}\"\n\n[discord]\napi_url = \"{}\"\n",
        fakes.telegram.url(),
        fakes.discord.url()
    );
    TestDb::with_config(backend, &extra).await
}

/// `jobq worker --queues messages` with both tokens, debug logging; killed when dropped.
fn spawn_dm_worker(db: &TestDb) -> Process {
    spawn_dm_worker_running(db, "4")
}

/// [`spawn_dm_worker`] running at most `concurrency` DMs at once.
fn spawn_dm_worker_running(db: &TestDb, concurrency: &str) -> Process {
    support::panel::panel_worker(db, "messages")
        .env("JOBQ_TELEGRAM_TOKEN", TELEGRAM_TOKEN)
        .env("JOBQ_DISCORD_TOKEN", DISCORD_TOKEN)
        .env("JOBQ_WORKER_CONCURRENCY", concurrency)
        .log_filter("debug")
        .start()
}

fn payload(platform: &str, user: i64, text: &str) -> String {
    serde_json::json!({"user": {"platform": platform, "id": user}, "text": text}).to_string()
}

fn enqueue(db: &TestDb, payload: &str, key: Option<&str>) -> i64 {
    support::panel::enqueue_kind(db, "send_dm", payload, key)
}

/// Waits for job `id` to be in `state`; on timeout shows the job and the workers' logs.
async fn wait_state(
    db: &TestDb,
    queue: &Queue,
    id: i64,
    state: JobState,
    workers: &[&Process],
) -> JobRecord {
    db.wait_job(queue, id, secs(45), workers, is(state)).await
}

fn utc(at: SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(at)
}

/// Neither token's secret part in the workers' logs or the jobs' errors.
fn assert_no_token(workers: &[&Process], jobs: &[JobRecord]) {
    for worker in workers {
        let log = worker.log_text();
        assert!(!log.is_empty(), "the worker logged nothing");
        for secret in [TELEGRAM_SECRET, DISCORD_SECRET] {
            assert!(!log.contains(secret), "a token in the worker log:\n{log}");
        }
    }
    for job in jobs {
        let errors = format!("{:?} {:?}", job.errors, job.last_error);
        for secret in [TELEGRAM_SECRET, DISCORD_SECRET] {
            assert!(
                !errors.contains(secret),
                "a token in job {}'s errors: {errors}",
                job.id
            );
        }
    }
}

async fn a_dm_is_delivered_once_and_recorded_in_the_ledger(backend: Backend) {
    let fakes = fakes().await;
    let db = db_with_chats(backend, &fakes).await;
    let queue = db.queue().await;
    let worker = spawn_dm_worker(&db);

    let tg = enqueue(
        &db,
        &payload("telegram", USER, "Your link is ready"),
        Some("dm:tg:1"),
    );
    let dc = enqueue(
        &db,
        &payload("discord", USER, "Your transcript is ready"),
        None,
    );
    let tg_job = wait_state(&db, &queue, tg, JobState::Completed, &[&worker]).await;
    let dc_job = wait_state(&db, &queue, dc, JobState::Completed, &[&worker]).await;

    let sent = fakes.telegram.sent_to(USER);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].text, "Your link is ready");
    let sent = fakes.discord.sent_to_user(USER as u64);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].content, "Your transcript is ready");

    let ledger = Ledger::new(&queue);
    let tg_row = ledger
        .get("dm:tg:1")
        .await
        .expect("read")
        .expect("recorded under its key");
    assert_eq!(
        (tg_row.platform.as_str(), tg_row.user_id, tg_row.job_id),
        ("telegram", USER, Some(tg))
    );
    assert_eq!(tg_row.message_id.as_deref(), Some("1"));
    let dc_row = ledger
        .get(&format!("job:{dc}"))
        .await
        .expect("read")
        .expect("an unkeyed job is recorded under job:<id>");
    assert_eq!(dc_row.platform, "discord");
    assert_no_token(&[&worker], &[tg_job, dc_job]);
}

async fn a_job_whose_send_is_recorded_sends_nothing(backend: Backend) {
    let fakes = fakes().await;
    let db = db_with_chats(backend, &fakes).await;
    let queue = db.queue().await;
    // An earlier attempt sent and recorded, then its worker died before the completion.
    let ledger = Ledger::new(&queue);
    let recorded = ledger
        .record(&SentEntry {
            key: "dm:already".into(),
            platform: Platform::Telegram,
            user_id: USER,
            message_id: Some("41".into()),
            job_id: None,
        })
        .await
        .expect("record");
    assert!(recorded);
    let worker = spawn_dm_worker(&db);
    let id = enqueue(
        &db,
        &payload("telegram", USER, "again?"),
        Some("dm:already"),
    );
    let job = wait_state(&db, &queue, id, JobState::Completed, &[&worker]).await;
    assert!(
        fakes.telegram.sent().is_empty(),
        "{:?}",
        fakes.telegram.sent()
    );
    assert!(fakes.telegram.calls_of("sendMessage").is_empty());
    assert!(
        worker.log_text().contains("already sent under this key"),
        "{}",
        worker.log_text()
    );
    assert_no_token(&[&worker], &[job]);
}

async fn blocked_users_and_closed_dms_fail_permanently_with_a_clear_error(backend: Backend) {
    let fakes = fakes().await;
    let db = db_with_chats(backend, &fakes).await;
    let queue = db.queue().await;
    fakes.telegram.set_chat(USER, ChatState::Blocked);
    fakes.discord.close_dms(USER as u64);
    let worker = spawn_dm_worker(&db);

    let tg = enqueue(&db, &payload("telegram", USER, "hello"), None);
    let dc = enqueue(&db, &payload("discord", USER, "hello"), None);
    let tg_job = wait_state(&db, &queue, tg, JobState::Failed, &[&worker]).await;
    let dc_job = wait_state(&db, &queue, dc, JobState::Failed, &[&worker]).await;
    assert_eq!(tg_job.attempts, 1, "permanent: no retry");
    assert_eq!(dc_job.attempts, 1, "permanent: no retry");
    let tg_error = tg_job.last_error.clone().unwrap_or_default();
    assert!(
        tg_error.contains("Forbidden: bot was blocked by the user"),
        "{tg_error}"
    );
    let dc_error = dc_job.last_error.clone().unwrap_or_default();
    assert!(
        dc_error.contains("50007") && dc_error.contains("Cannot send messages to this user"),
        "{dc_error}"
    );
    assert!(fakes.telegram.sent().is_empty() && fakes.discord.sent().is_empty());
    assert_no_token(&[&worker], &[tg_job, dc_job]);
}

async fn a_429_reschedules_no_sooner_than_retry_after(backend: Backend) {
    let fakes = fakes().await;
    let db = db_with_chats(backend, &fakes).await;
    let queue = db.queue().await;
    fakes
        .telegram
        .inject(FaultRule::new(Fault::RetryAfter(7)).method("sendMessage"));
    fakes.discord.inject(
        fakes::discord::FaultRule::new(fakes::discord::Fault::RateLimited {
            retry_after: 6.5,
            global: false,
        })
        .on(fakes::discord::Route::SendMessage),
    );
    let worker = spawn_dm_worker(&db);
    let before_discord = Utc::now();
    let tg = enqueue(&db, &payload("telegram", USER, "soon"), None);
    let dc = enqueue(&db, &payload("discord", USER, "soon"), None);
    // Snoozed: back on the schedule, the attempt given back, nothing recorded as a failure.
    let snoozed = |job: &JobRecord| job.state == JobState::Scheduled && job.snoozes == 1;
    let tg_job = db
        .wait_job(
            &queue,
            tg,
            secs(45),
            &[&worker],
            want("snoozed once", snoozed),
        )
        .await;
    let dc_job = db
        .wait_job(
            &queue,
            dc,
            secs(45),
            &[&worker],
            want("snoozed once", snoozed),
        )
        .await;
    for job in [&tg_job, &dc_job] {
        assert_eq!(job.attempts, 0, "a 429 spends no attempt: {job:#?}");
        assert!(job.errors.is_empty(), "a 429 is no failure: {job:#?}");
    }

    let answered = utc(fakes.telegram.calls_of("sendMessage")[0].received_at);
    assert!(
        tg_job.run_at >= answered + chrono::Duration::seconds(7),
        "telegram: run_at {} is sooner than 7 s after the 429 at {answered}",
        tg_job.run_at
    );
    let discord_sent = fakes.discord.requests();
    assert!(
        discord_sent.iter().any(|r| r.ends_with("/messages")),
        "{discord_sent:?}"
    );
    // The header says 7 (6.5 rounded up): the longer wait is kept, counted from the 429 (after
    // the job was enqueued).
    assert!(
        dc_job.run_at >= before_discord + chrono::Duration::milliseconds(7000),
        "discord: run_at {} is sooner than the 429's wait after {before_discord}",
        dc_job.run_at
    );
    assert!(fakes.telegram.sent().is_empty() && fakes.discord.sent().is_empty());
    assert_no_token(&[&worker], &[tg_job, dc_job]);
}

async fn the_per_chat_rate_holds_across_two_worker_processes(backend: Backend) {
    const N: usize = 4;
    let fakes = fakes().await;
    let db = db_with_chats(backend, &fakes).await;
    let queue = db.queue().await;
    // One DM at a time each.
    let first = spawn_dm_worker_running(&db, "1");
    let second = spawn_dm_worker_running(&db, "1");
    db.wait_for_workers(2).await;
    // All the DMs become available at once (the queue paused while they are enqueued), so
    // the second worker claims one while the first waits for the chat's next turn.
    let paused = db.jobq(&["queues", "pause", "messages"]);
    assert!(paused.status.success(), "{}", stderr(&paused));
    let ids: Vec<i64> = (0..N)
        .map(|i| {
            enqueue(
                &db,
                &payload("telegram", USER, &format!("message {i}")),
                None,
            )
        })
        .collect();
    let resumed = db.jobq(&["queues", "resume", "messages"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let mut jobs = Vec::new();
    for id in ids {
        jobs.push(wait_state(&db, &queue, id, JobState::Completed, &[&first, &second]).await);
    }
    let sent = fakes.telegram.sent_to(USER);
    assert_eq!(sent.len(), N, "{sent:?}");
    let mut times: Vec<SystemTime> = sent.iter().map(|m| m.received_at).collect();
    times.sort();
    for pair in times.windows(2) {
        let gap = pair[1].duration_since(pair[0]).unwrap_or_default();
        // Turns are exactly 1 s apart; a request may leave a few ms after its turn.
        assert!(
            gap >= Duration::from_millis(900),
            "two DMs to one chat {gap:?} apart: {times:?}"
        );
    }
    let both = [&first, &second];
    // While one worker waits for the chat's next turn, the other claims the next job: both
    // ran jobs, so both took turns from the shared limit. (Who sent is not fixed: a job that
    // gets no turn within its wait snoozes, without an error, and is run again by whichever
    // worker is free; its worker's log says so.)
    for worker in both {
        let id = format!("-{}-", worker.pid());
        let sent = jobs
            .iter()
            .any(|j| j.attempted_by.as_deref().is_some_and(|by| by.contains(&id)));
        let snoozed = worker.log_text().contains("job snoozed");
        assert!(
            sent || snoozed,
            "worker {} ran no job:\n{}",
            worker.pid(),
            logs(&both)
        );
    }
    assert_no_token(&both, &jobs);
}

async fn the_tokens_appear_in_no_log_line_and_no_job_error(backend: Backend) {
    let fakes = fakes().await;
    let db = db_with_chats(backend, &fakes).await;
    let queue = db.queue().await;
    // Errors that carry the most detail: broken connections (reqwest errors name the URL,
    // which holds the Telegram token), a 5xx body, a refusal.
    fakes
        .telegram
        .inject(FaultRule::new(Fault::Drop).method("sendMessage"));
    fakes.discord.inject(
        fakes::discord::FaultRule::new(fakes::discord::Fault::Drop)
            .on(fakes::discord::Route::CreateDm),
    );
    fakes.telegram.set_chat(USER + 1, ChatState::NotFound);
    let worker = spawn_dm_worker(&db);
    let tg = enqueue(
        &db,
        &payload("telegram", USER, "through a bad network"),
        None,
    );
    let dc = enqueue(
        &db,
        &payload("discord", USER, "through a bad network"),
        None,
    );
    let missing = enqueue(&db, &payload("telegram", USER + 1, "nobody"), None);
    let missing_job = wait_state(&db, &queue, missing, JobState::Failed, &[&worker]).await;
    assert!(
        missing_job
            .last_error
            .clone()
            .unwrap_or_default()
            .contains("chat not found"),
        "{:?}",
        missing_job.last_error
    );
    // Each failed once on the broken connection, then went through on its retry.
    let tg_job = wait_state(&db, &queue, tg, JobState::Completed, &[&worker]).await;
    let dc_job = wait_state(&db, &queue, dc, JobState::Completed, &[&worker]).await;
    assert_eq!(
        (tg_job.errors.len(), dc_job.errors.len()),
        (1, 1),
        "{tg_job:?} {dc_job:?}"
    );
    assert_eq!(fakes.telegram.sent_to(USER).len(), 1);
    assert_no_token(&[&worker], &[tg_job, dc_job, missing_job]);
}
