//! A fake S-UI panel, a database configured for it, and a worker of the panel queues: what the
//! handler tests (provision, renewal, expiry, usage sync) share.

use std::process::Stdio;
use std::time::Duration;

use fakes::sui::{FakeSui, SuiOptions};
use jobs::driver::{JobFilter, JobRecord};
use jobs::subscriptions::{Subscription, Subscriptions};
use jobs::{JobState, Queue};

use super::{Backend, TestDb, Worker, json};

pub const TOKEN: &str = "tokenOfThePanelMain0123456789ab";
pub const SECRET: &str = "8f1c2a9b4d7e6f3051a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8";
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

/// `jobq worker --queues QUEUES` with the panel's token and the secret key; killed when dropped.
pub fn spawn_panel_worker_on(db: &TestDb, queues: &str) -> Worker {
    spawn_panel_worker_with(db, queues, &[])
}

/// [`spawn_panel_worker_on`] with more environment variables (a bot token, say).
pub fn spawn_panel_worker_with(db: &TestDb, queues: &str, env: &[(&str, &str)]) -> Worker {
    let log = db
        .dir
        .path()
        .join(format!("worker-{}.log", fastrand::u32(..)));
    let log_file = std::fs::File::create(&log).expect("worker log");
    let child = db
        .command(&["worker", "--queues", queues])
        .env("JOBQ_PANEL_MAIN_TOKEN", TOKEN)
        .env("JOBQ_SECRET_KEY", SECRET)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("spawn worker");
    Worker { child, log }
}

/// A worker of the `panel` queue only (DMs stay queued, for the test to read).
pub fn spawn_panel_worker(db: &TestDb) -> Worker {
    spawn_panel_worker_on(db, "panel")
}

/// A `provision_client` payload for [`USER`] on Telegram.
pub fn payload(panel: &str, plan: &str) -> String {
    format!(r#"{{"panel":"{panel}","plan":"{plan}","user":{{"platform":"telegram","id":{USER}}}}}"#)
}

/// `jobq --json enqueue KIND PAYLOAD [--key KEY]`: the new job's id.
pub fn enqueue_kind(db: &TestDb, kind: &str, payload: &str, key: Option<&str>) -> i64 {
    let mut args = vec!["--json", "enqueue", kind, payload];
    if let Some(key) = key {
        args.extend(["--key", key]);
    }
    let out = json(&db.jobq(&args));
    assert_eq!(out["created"], true, "{out}");
    out["id"].as_i64().expect("an id")
}

/// `jobq --json enqueue provision_client PAYLOAD [--key KEY]`: the job's id.
pub fn enqueue(db: &TestDb, payload: &str, key: Option<&str>) -> i64 {
    enqueue_kind(db, "provision_client", payload, key)
}

/// Polls job `id` until it is in `state`; on timeout shows the job and the worker's log.
pub async fn wait_state(
    db: &TestDb,
    queue: &Queue,
    id: i64,
    state: JobState,
    worker: &Worker,
) -> JobRecord {
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    loop {
        let job = db.job(queue, id).await;
        if job.state == state {
            return job;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job {id} is not {state:?}: {job:#?}\nworker log:\n{}",
            worker.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn jobs_of(queue: &Queue, kind: &str) -> Vec<JobRecord> {
    let filter = JobFilter {
        kind: Some(kind.to_string()),
        ..JobFilter::default()
    };
    queue
        .driver()
        .list_jobs(&filter, 100)
        .await
        .expect("list jobs")
}

pub async fn subscriptions(queue: &Queue) -> Vec<Subscription> {
    Subscriptions::new(queue)
        .expect("subscriptions")
        .list_by_panel("main")
        .await
        .expect("list subscriptions")
}
