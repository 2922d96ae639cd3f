//! A fake S-UI panel, a database configured for it, and a worker of the panel queues: what the
//! handler tests (provision, renewal, expiry, usage sync) share.

use chrono::{DateTime, Utc};
use fakes::sui::{FakeSui, SuiOptions};
use jobs::driver::JobRecord;
use jobs::kinds::{Platform, UserId};
use jobs::secret_key::SecretKey;
use jobs::subscriptions::{
    Activation, NewSubscription, Subscription, SubscriptionLink, Subscriptions,
};
use jobs::{JobState, Queue};

use super::{Backend, Process, Spawn, TestDb, is, secs};

pub const TOKEN: &str = "tokenOfThePanelMain0123456789ab";
pub const SECRET: &str = "8b80c83618b2e287707c6d8789cc006804f0e9e6cf14a0eb0ee49eded38cf073";
pub const USER: i64 = 424242;

pub async fn fake() -> FakeSui {
    FakeSui::start(SuiOptions {
        token: Some(TOKEN.into()),
        ..SuiOptions::default()
    })
    .await
    .expect("start the fake panel")
}

/// A database whose config has panel `main` (the fake) and plan `basic` (10 GiB, 30 days),
/// then `extra`.
pub async fn db_with_panel(backend: Backend, panel: &FakeSui, extra: &str) -> TestDb {
    let config = format!(
        r#"
[[panels]]
name = "main"
kind = "s-ui"
url = "{}"
token_env = "JOBQ_PANEL_MAIN_TOKEN"
timeout = "5s"

[[plans]]
name = "basic"
volume_gb = 10
days = 30
inbounds = [1]
{extra}
"#,
        panel.url()
    );
    TestDb::with_config(backend, &config).await
}

/// `jobq worker --queues QUEUES` with the panel's token and the secret key, to start.
pub fn panel_worker(db: &TestDb, queues: &str) -> Spawn {
    db.spawn(&["worker", "--queues", queues])
        .env("JOBQ_PANEL_MAIN_TOKEN", TOKEN)
        .env("JOBQ_SECRET_KEY", SECRET)
}

/// A worker of the `panel` queue only (DMs stay queued, for the test to read).
pub fn spawn_panel_worker(db: &TestDb) -> Process {
    panel_worker(db, "panel").start()
}

/// A `provision_client` payload for [`USER`] on Telegram.
pub fn payload(panel: &str, plan: &str) -> String {
    format!(r#"{{"panel":"{panel}","plan":"{plan}","user":{{"platform":"telegram","id":{USER}}}}}"#)
}

/// `jobq --json enqueue KIND PAYLOAD [--key KEY]`: the new job's id.
pub fn enqueue_kind(db: &TestDb, kind: &str, payload: &str, key: Option<&str>) -> i64 {
    let key: Vec<&str> = key.map(|k| vec!["--key", k]).unwrap_or_default();
    db.enqueue(kind, payload, &key)
}

/// `jobq --json enqueue provision_client PAYLOAD [--key KEY]`: the job's id.
pub fn enqueue(db: &TestDb, payload: &str, key: Option<&str>) -> i64 {
    enqueue_kind(db, "provision_client", payload, key)
}

/// Waits for job `id` to be in `state`; on timeout shows the job and the worker's log.
pub async fn wait_state(
    db: &TestDb,
    queue: &Queue,
    id: i64,
    state: JobState,
    worker: &Process,
) -> JobRecord {
    db.wait_job(queue, id, secs(45), &[worker], is(state)).await
}

pub async fn subscriptions(queue: &Queue) -> Vec<Subscription> {
    Subscriptions::new(queue)
        .expect("subscriptions")
        .list_by_panel("main")
        .await
        .expect("list subscriptions")
}

/// A Telegram subscription of `user` to plan `basic` on panel `main`, not created yet.
pub fn new_subscription(user: i64, volume_bytes: i64, origin_key: Option<&str>) -> NewSubscription {
    NewSubscription {
        platform: Platform::Telegram,
        user_id: UserId::parse(user).expect("a user id"),
        panel: "main".into(),
        plan: "basic".into(),
        volume_bytes,
        origin_key: origin_key.map(str::to_string),
    }
}

/// Creates `new` (named with [`SECRET`]), then marks it active with `link` until `expiry`,
/// as a provision does, without the panel.
pub async fn active_subscription(
    queue: &Queue,
    new: &NewSubscription,
    link: &str,
    expiry: DateTime<Utc>,
) -> Subscription {
    let subscriptions = Subscriptions::new(queue).expect("subscriptions");
    let key = SecretKey::parse(SECRET).expect("key");
    let created = subscriptions.create(&key, new).await.expect("create");
    let activation = Activation {
        link: SubscriptionLink::new(link),
        volume_bytes: new.volume_bytes,
        expiry,
        plan: None,
        reset_usage: false,
    };
    subscriptions
        .mark_active(created.subscription.id, &activation)
        .await
        .expect("mark active")
        .expect("the row")
}
