//! `jobq up`: one process that migrates, runs a worker, starts each bot whose token is set (and
//! says which it skipped), and serves the dashboard when an admin token is set.

mod support;

use std::time::Duration;

use fakes::telegram::FakeTelegram;
use jobs::JobState;
use serde_json::json;
use support::*;

const BOT_TOKEN: &str = "515151:UPbotSECRETneverINlogs0123456789ab";
const ADMIN_TOKEN: &str = "admin-token-for-the-up-test-0123456789";
const CUSTOMER: i64 = 7001;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_the_worker_the_telegram_bot_and_the_dashboard_and_says_what_it_skipped() {
    let telegram = FakeTelegram::start(BOT_TOKEN).await.expect("fake telegram");
    let extra = format!(
        "\n[telegram]\napi_url = \"{}\"\n\n[web]\nbind = \"127.0.0.1:0\"\n",
        telegram.url()
    );
    let db = TestDb::unmigrated(Backend::Sqlite, &extra).await;
    let up = db
        .spawn(&["up"])
        .env("JOBQ_TELEGRAM_TOKEN", BOT_TOKEN)
        .env("JOBQ_ADMIN_TOKEN", ADMIN_TOKEN)
        .capture_stdout()
        .start();
    let said = || up.stdout_text();

    // The dashboard: its address is printed, and it answers.
    let address = up
        .printed("dashboard listening on ", Duration::from_secs(30))
        .await;
    let page = reqwest::Client::new()
        .get(format!("{address}api/overview"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("dashboard answers");
    assert!(page.status().is_success(), "{}", page.status());
    assert!(
        said().contains("discord bot not started: JOBQ_DISCORD_TOKEN is not set"),
        "{}",
        said()
    );

    // The bot answers a customer.
    telegram.push_update(json!({"message": {"message_id": 1, "date": 1_790_000_000,
        "chat": {"id": CUSTOMER, "type": "private", "first_name": "Ann"},
        "from": {"id": CUSTOMER, "is_bot": false, "first_name": "Ann"}, "text": "/start"}}));
    eventually(
        Duration::from_secs(30),
        "the bot's reply to /start",
        || async { (!telegram.sent_to(CUSTOMER).is_empty()).then_some(()) },
    )
    .await;

    // The worker runs jobs: a DM enqueued from outside reaches the fake.
    let id = db.enqueue(
        "send_dm",
        &json!({"user": {"platform": "telegram", "id": CUSTOMER}, "text": "hello from up"})
            .to_string(),
        &[],
    );
    db.wait_for_state(id, JobState::Completed).await;
    assert!(
        telegram
            .sent_to(CUSTOMER)
            .iter()
            .any(|m| m.text == "hello from up")
    );
    let log = up.log_text();
    assert!(
        !log.contains("UPbotSECRET") && !log.contains(ADMIN_TOKEN),
        "{log}"
    );
    assert!(!said().contains("UPbotSECRET"));
}
