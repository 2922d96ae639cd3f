//! The whole path on both backends: a `provision_client` job → exactly one client on the fake
//! S-UI panel → the subscription active → exactly one DM with its link on the fake Telegram
//! Bot API, through real `jobq worker` processes running the panel and message queues. The same
//! when the panel drops the connection after applying, answers 502 and stalls past the
//! timeout, when Telegram drops its answer, and when workers are killed mid-job: still one
//! client and one DM. No secret (panel token, bot token, secret key, client name) reaches a log.

mod support;

use std::time::Duration;

use fakes::sui::{FakeSui, Fault};
use fakes::telegram::{self, FakeTelegram, FaultRule};
use jobs::subscriptions::{Subscription, SubscriptionStatus};
use jobs::{JobState, Queue};
use support::panel::*;
use support::*;

on_both_backends!(
    a_provision_gives_one_client_and_one_dm,
    faults_on_the_panel_and_on_telegram_still_give_one_client_and_one_dm,
    workers_killed_mid_job_still_give_one_client_and_one_dm,
);

const BOT_TOKEN: &str = "123456789:BOTsecretNEVERinLOGSabcdef012345678";
const BOT_SECRET: &str = "BOTsecretNEVERinLOGSabcdef012345678";

struct World {
    panel: FakeSui,
    telegram: FakeTelegram,
    db: TestDb,
    queue: Queue,
}

async fn world(backend: Backend) -> World {
    let panel = fake().await;
    let telegram = FakeTelegram::start(BOT_TOKEN).await.expect("fake telegram");
    let extra = format!("\n[telegram]\napi_url = \"{}\"\n", telegram.url());
    let db = db_with_panel(backend, &panel, &extra).await;
    let queue = db.queue().await;
    World {
        panel,
        telegram,
        db,
        queue,
    }
}

fn worker(world: &World) -> Process {
    panel_worker(&world.db, "panel,messages")
        .env("JOBQ_TELEGRAM_TOKEN", BOT_TOKEN)
        .log_filter("debug")
        .start()
}

/// One client, the subscription active, one DM to the user carrying the link; and no secret
/// in any of the workers' logs.
async fn assert_once(world: &World, workers: &[&Process]) -> Subscription {
    let dm = eventually(Duration::from_secs(60), "the DM on Telegram", || async {
        let sent = world.telegram.sent_to(USER);
        (!sent.is_empty()).then_some(sent)
    })
    .await;
    let subs = subscriptions(&world.queue).await;
    assert_eq!(subs.len(), 1, "{subs:#?}");
    let sub = subs.into_iter().next().expect("one");
    assert_eq!(sub.status, SubscriptionStatus::Active);
    let name = sub.client_name.expose();
    assert_eq!(
        world.panel.clients().len(),
        1,
        "{:#?}",
        world.panel.clients()
    );
    assert_eq!(world.panel.clients()[0].name, name);
    let link = sub.subscription_link.as_ref().expect("link").expose();
    assert!(dm[0].text.contains(link), "{}", dm[0].text);
    // Everything is settled: no job left to run that could send again.
    let dms = jobs_of(&world.queue, "send_dm").await;
    assert_eq!(dms.len(), 1, "{dms:#?}");
    let settled = world
        .db
        .wait_job(
            &world.queue,
            dms[0].id,
            secs(30),
            workers,
            is(JobState::Completed),
        )
        .await;
    assert_eq!(settled.state, JobState::Completed);
    assert_eq!(world.telegram.sent_to(USER).len(), 1, "one DM");
    for worker in workers {
        let log = worker.log_text();
        for secret in [TOKEN, SECRET, BOT_SECRET, name] {
            assert!(!log.contains(secret), "a secret in the log:\n{log}");
        }
    }
    sub
}

async fn a_provision_gives_one_client_and_one_dm(backend: Backend) {
    let world = world(backend).await;
    let worker = worker(&world);
    enqueue(&world.db, &payload("main", "basic"), Some("order-1"));
    assert_once(&world, &[&worker]).await;
}

async fn faults_on_the_panel_and_on_telegram_still_give_one_client_and_one_dm(backend: Backend) {
    let world = world(backend).await;
    world.panel.inject_on(Some("clients"), Fault::BadGateway, 1);
    world
        .panel
        .inject_on(Some("save"), Fault::DropAfterApply, 1);
    // Past the panel entry's 5 s timeout.
    world
        .panel
        .inject_on(Some("load"), Fault::Stall(Duration::from_secs(7)), 1);
    world
        .telegram
        .inject(FaultRule::new(telegram::Fault::Status(502)).method("sendMessage"));
    let worker = worker(&world);
    let id = enqueue(&world.db, &payload("main", "basic"), Some("order-2"));
    assert_once(&world, &[&worker]).await;
    let job = world.db.job(&world.queue, id).await;
    assert!(
        job.attempts >= 3,
        "502, drop and stall were each retried: {job:#?}"
    );
}

async fn workers_killed_mid_job_still_give_one_client_and_one_dm(backend: Backend) {
    let world = world(backend).await;
    // The client is created, then the worker hangs reading the link and is killed there.
    world
        .panel
        .inject_on(Some("load"), Fault::Stall(Duration::from_secs(60)), 1);
    let mut first = worker(&world);
    enqueue(&world.db, &payload("main", "basic"), Some("order-3"));
    eventually(
        Duration::from_secs(30),
        "the client created, the link asked for",
        || {
            let done = world.panel.clients().len() == 1
                && world.panel.requests().iter().any(|r| r.ends_with("load"));
            async move { done.then_some(()) }
        },
    )
    .await;
    first.kill_hard();
    // The next worker finishes the job; its DM stalls on Telegram and that worker is killed too.
    world.telegram.inject(
        FaultRule::new(telegram::Fault::Stall(Duration::from_secs(60))).method("sendMessage"),
    );
    let mut second = worker(&world);
    eventually(Duration::from_secs(60), "the DM being sent", || async {
        (!world.telegram.calls_of("sendMessage").is_empty()).then_some(())
    })
    .await;
    second.kill_hard();
    let third = worker(&world);
    assert_once(&world, &[&first, &second, &third]).await;
}
