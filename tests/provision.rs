//! `provision_client` end to end, on both backends: a real `jobq worker` process against the
//! fake S-UI panel over HTTP. One provision gives exactly one client on the panel, an active
//! subscription (link, volume, expiry) and, committed with it, one keyed DM and one expiry job;
//! the same when the panel drops the connection after applying the create, answers 502, holds a
//! duplicate row of our name, or the worker is killed mid-job. Unknown panels and plans, and
//! renewals of a subscription that does not exist, fail permanently, naming what is wrong.
//! Renewals, expiry and usage sync: tests/lifecycle.rs.

mod support;

use std::time::Duration;

use chrono::Utc;
use fakes::sui::{ClientRow, FakeSui, Fault};
use jobs::driver::JobRecord;
use jobs::kinds::{Platform, UserId};
use jobs::secret_key::SecretKey;
use jobs::subscriptions::{Subscription, SubscriptionStatus, Subscriptions};
use jobs::{JobState, Queue};
use support::panel::*;
use support::*;

on_both_backends!(
    one_provision_gives_one_client_an_active_subscription_and_its_follow_ups,
    a_connection_dropped_after_the_create_still_gives_one_client,
    a_502_is_retried_and_the_job_then_completes,
    a_duplicate_row_on_the_panel_is_deleted,
    a_refused_token_marks_the_subscription_failed_until_an_admin_retries,
    unknown_panels_and_plans_and_renewals_fail_permanently_naming_them,
    a_worker_killed_mid_job_leaves_one_client_after_another_finishes_it,
    without_panels_the_worker_runs_with_no_key_and_fails_the_job_naming_the_panel,
    a_plan_naming_an_inbound_the_panel_lacks_fails_for_good_and_creates_no_client,
);

const GIB: i64 = 1024 * 1024 * 1024;

/// Exactly one subscription, active, with exactly one client on the panel, one DM and one
/// expiry job, all consistent with each other. Returns the subscription.
async fn assert_provisioned_once(panel: &FakeSui, queue: &Queue) -> Subscription {
    let subs = subscriptions(queue).await;
    assert_eq!(subs.len(), 1, "{subs:#?}");
    let sub = subs.into_iter().next().expect("one");
    assert_eq!(sub.status, SubscriptionStatus::Active);
    let name = sub.client_name.expose().to_string();
    let rows = panel.clients();
    assert_eq!(rows.len(), 1, "one client on the panel: {rows:#?}");
    let row = &rows[0];
    assert_eq!(row.name, name);
    assert!(row.enable);
    assert_eq!(row.volume, 10 * GIB);
    assert_eq!(sub.volume_bytes, 10 * GIB);
    let expiry = sub.expiry.expect("an expiry");
    assert_eq!(row.expiry, expiry.timestamp(), "panel and row agree");
    let days = (expiry - Utc::now()).num_hours() as f64 / 24.0;
    assert!((29.9..=30.01).contains(&days), "expiry in 30 days: {days}");
    let link = sub.subscription_link.as_ref().expect("a link").expose();
    let sub_port = panel.sub_addr().expect("sub listener").port();
    assert!(link.contains(&format!(":{sub_port}/sub/")), "{link}");
    assert!(link.ends_with(&name), "{link}");

    let dms = jobs_of(queue, "send_dm").await;
    assert_eq!(dms.len(), 1, "{dms:#?}");
    let dm = &dms[0];
    assert_eq!(
        dm.key.as_deref(),
        Some(format!("provision_dm:{}", sub.id).as_str())
    );
    assert_eq!(dm.payload["user"]["id"], USER);
    assert!(
        dm.payload["text"].as_str().expect("text").contains(link),
        "the DM carries the link"
    );
    let expires = jobs_of(queue, "expire_subscription").await;
    assert_eq!(expires.len(), 1, "{expires:#?}");
    let expire = &expires[0];
    let key = format!(
        "expire_subscription:{}:{}",
        sub.id,
        expiry.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert_eq!(expire.key.as_deref(), Some(key.as_str()));
    assert_eq!(expire.run_at, expiry, "runs at the expiry");
    assert_eq!(expire.state, JobState::Scheduled);
    assert_eq!(expire.payload["subscription"], sub.id.get());
    sub
}

/// A `basic` provision on `main` keyed `key`, a panel worker, and the job once it is in
/// `state`.
async fn provisioned(
    db: &TestDb,
    queue: &Queue,
    key: Option<&str>,
    state: JobState,
) -> (Process, JobRecord) {
    let id = enqueue(db, &payload("main", "basic"), key);
    let worker = spawn_panel_worker(db);
    let job = wait_state(db, queue, id, state, &worker).await;
    (worker, job)
}

// ---------------------------------------------------------------------------------------------

async fn one_provision_gives_one_client_an_active_subscription_and_its_follow_ups(
    backend: Backend,
) {
    let panel = fake().await;
    let db = db_with_panel(backend, &panel, "").await;
    let queue = db.queue().await;
    let (worker, job) = provisioned(&db, &queue, Some("order-17"), JobState::Completed).await;
    assert_eq!(job.attempts, 1, "{job:#?}");
    let sub = assert_provisioned_once(&panel, &queue).await;
    assert_eq!(sub.origin_key.as_deref(), Some("order-17"));
    assert_eq!(sub.platform, Platform::Telegram);
    assert_eq!(sub.user_id, UserId::parse(USER).expect("id"));
    // The secrets stay out of the worker's log.
    let log = worker.log_text();
    assert!(!log.contains(sub.client_name.expose()), "{log}");
    assert!(!log.contains(TOKEN) && !log.contains(SECRET), "{log}");
}

async fn a_connection_dropped_after_the_create_still_gives_one_client(backend: Backend) {
    let panel = fake().await;
    panel.inject_on(Some("save"), Fault::DropAfterApply, 1);
    let db = db_with_panel(backend, &panel, "").await;
    let queue = db.queue().await;
    // No key: the subscription's origin is the job itself.
    let (_worker, job) = provisioned(&db, &queue, None, JobState::Completed).await;
    let id = job.id;
    assert_eq!(job.attempts, 2, "{job:#?}");
    assert!(
        job.errors[0].error.contains("unreachable"),
        "{:?}",
        job.errors
    );
    let sub = assert_provisioned_once(&panel, &queue).await;
    assert_eq!(sub.origin_key, Some(format!("job:{id}")));
    let creates = panel
        .requests()
        .iter()
        .filter(|r| r.ends_with("save"))
        .count();
    assert_eq!(
        creates,
        1,
        "the retry found the client: {:?}",
        panel.requests()
    );
}

async fn a_502_is_retried_and_the_job_then_completes(backend: Backend) {
    let panel = fake().await;
    panel.inject_on(Some("save"), Fault::BadGateway, 1);
    let db = db_with_panel(backend, &panel, "").await;
    let queue = db.queue().await;
    let (_worker, job) = provisioned(&db, &queue, Some("order-502"), JobState::Completed).await;
    assert_eq!(job.attempts, 2, "{job:#?}");
    assert!(job.errors[0].error.contains("502"), "{:?}", job.errors);
    assert_provisioned_once(&panel, &queue).await;
}

async fn a_duplicate_row_on_the_panel_is_deleted(backend: Backend) {
    let panel = fake().await;
    let db = db_with_panel(backend, &panel, "").await;
    let queue = db.queue().await;
    // The subscription as an earlier attempt left it, and two rows of its name on the panel
    // (a create applied twice).
    let key = SecretKey::parse(SECRET).expect("key");
    let created = Subscriptions::new(&queue)
        .expect("subscriptions")
        .create(&key, &new_subscription(USER, 10 * GIB, Some("order-dup")))
        .await
        .expect("create");
    let name = created.subscription.client_name.expose().to_string();
    let expiry = (Utc::now() + chrono::Duration::days(30)).timestamp();
    let row = ClientRow {
        enable: true,
        name: name.clone(),
        volume: 10 * GIB,
        expiry,
        inbounds: serde_json::json!([1]),
        ..ClientRow::default()
    };
    let first = panel.insert(row.clone());
    let second = panel.insert(row);

    let (worker, job) = provisioned(&db, &queue, Some("order-dup"), JobState::Completed).await;
    // The duplicate is said in the job's errors, where admins look, then checked again.
    assert_eq!(job.attempts, 2, "{job:#?}");
    let said = &job.errors[0].error;
    assert!(
        said.contains("held 2 clients") && said.contains(&format!("[{second}]")),
        "{said}"
    );
    assert!(!said.contains(&name), "no client name in the error: {said}");
    let rows = panel.clients_named(&name);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].id, first, "the oldest row is kept");
    assert_ne!(rows[0].id, second);
    let sub = assert_provisioned_once(&panel, &queue).await;
    assert_eq!(sub.id, created.subscription.id);
    let log = worker.log_text();
    assert!(
        log.contains("clients of this subscription's name: deleting the extra rows"),
        "{log}"
    );
}

async fn unknown_panels_and_plans_and_renewals_fail_permanently_naming_them(backend: Backend) {
    let panel = fake().await;
    let db = db_with_panel(backend, &panel, "").await;
    let queue = db.queue().await;
    let no_panel = enqueue(&db, &payload("nowhere", "basic"), Some("a"));
    let no_plan = enqueue(&db, &payload("main", "gold"), Some("b"));
    let renew =
        r#"{"panel":"main","plan":"basic","user":{"platform":"telegram","id":1},"renew":5}"#;
    let renewal = enqueue(&db, renew, Some("c"));
    let worker = spawn_panel_worker(&db);
    for (id, expected) in [
        (no_panel, "panel \"nowhere\" is not configured"),
        (no_plan, "plan \"gold\" is not configured"),
        (
            renewal,
            "renewal of subscription 5: there is no such subscription",
        ),
    ] {
        let job = wait_state(&db, &queue, id, JobState::Failed, &worker).await;
        assert_eq!(job.attempts, 1, "permanent: {job:#?}");
        let error = job.last_error.unwrap_or_default();
        assert!(error.contains(expected), "{expected}: {error}");
    }
    assert!(panel.clients().is_empty());
    assert!(subscriptions(&queue).await.is_empty());
    assert!(jobs_of(&queue, "send_dm").await.is_empty());
}

async fn a_worker_killed_mid_job_leaves_one_client_after_another_finishes_it(backend: Backend) {
    let panel = fake().await;
    // The client is created, then the worker hangs reading the link, and is killed there.
    panel.inject_on(Some("load"), Fault::Stall(Duration::from_secs(60)), 1);
    let db = db_with_panel(backend, &panel, "").await;
    let queue = db.queue().await;
    let id = enqueue(&db, &payload("main", "basic"), Some("order-kill"));
    let mut first = spawn_panel_worker(&db);
    eventually(
        Duration::from_secs(30),
        "the client created and the link asked for",
        || {
            let done =
                panel.clients().len() == 1 && panel.requests().iter().any(|r| r.ends_with("load"));
            async move { done.then_some(()) }
        },
    )
    .await;
    first.kill_hard();
    assert_eq!(db.job(&queue, id).await.state, JobState::Running);
    let second = spawn_panel_worker(&db);
    let job = wait_state(&db, &queue, id, JobState::Completed, &second).await;
    assert_eq!(job.attempts, 2, "{job:#?}");
    assert_provisioned_once(&panel, &queue).await;
}

async fn without_panels_the_worker_runs_with_no_key_and_fails_the_job_naming_the_panel(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let id = enqueue(&db, &payload("main", "basic"), Some("order-1"));
    // No JOBQ_SECRET_KEY and no panel token: neither is needed without [[panels]].
    let worker = db.spawn_worker(&["--queues", "panel"]);
    let job = wait_state(&db, &queue, id, JobState::Failed, &worker).await;
    let error = job.last_error.unwrap_or_default();
    assert!(
        error.contains("panel \"main\" is not configured"),
        "{error}"
    );
    assert!(
        !db.dir.path().join("jobq-secret.key").exists(),
        "no key generated"
    );
}

/// On PostgreSQL there is no data directory to keep a generated key in: with a panel
/// configured, a worker without `JOBQ_SECRET_KEY` refuses to start, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_panels_on_postgres_a_missing_secret_key_stops_the_worker() {
    let panel = fake().await;
    let db = db_with_panel(Backend::Postgres, &panel, "").await;
    let out = db
        .command(&["worker", "--queues", "panel"])
        .env("JOBQ_PANEL_MAIN_TOKEN", TOKEN)
        .output()
        .expect("run jobq");
    assert!(!out.status.success(), "started without a key");
    let err = stderr(&out);
    assert!(err.contains("JOBQ_SECRET_KEY"), "{err}");
    assert!(err.contains("[[panels]]"), "{err}");
}

async fn a_refused_token_marks_the_subscription_failed_until_an_admin_retries(backend: Backend) {
    let panel = fake().await;
    panel.expire_token();
    let db = db_with_panel(backend, &panel, "").await;
    let queue = db.queue().await;
    let (worker, job) = provisioned(&db, &queue, Some("order-refused"), JobState::Failed).await;
    let id = job.id;
    assert_eq!(job.attempts, 1, "a refused token is permanent: {job:#?}");
    let subs = subscriptions(&queue).await;
    assert_eq!(subs.len(), 1);
    assert_eq!(
        subs[0].status,
        SubscriptionStatus::Failed,
        "not provisioning for ever"
    );
    // The admin fixes the token and retries the job: the same subscription is provisioned.
    panel.add_token(TOKEN, 0);
    let out = db.jobq(&["jobs", "retry", &id.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_state(&db, &queue, id, JobState::Completed, &worker).await;
    let sub = assert_provisioned_once(&panel, &queue).await;
    assert_eq!(sub.id, subs[0].id);
}

async fn a_plan_naming_an_inbound_the_panel_lacks_fails_for_good_and_creates_no_client(
    backend: Backend,
) {
    let panel = fake().await;
    let plan = "[[plans]]\nname = \"odd\"\nvolume_gb = 10\ndays = 30\ninbounds = [1, 999]\n";
    let db = db_with_panel(backend, &panel, plan).await;
    let queue = db.queue().await;
    let id = enqueue(&db, &payload("main", "odd"), None);
    let worker = spawn_panel_worker(&db);
    let job = wait_state(&db, &queue, id, JobState::Failed, &worker).await;
    assert_eq!(job.attempts, 1, "permanent, not retried: {job:#?}");
    let error = job.last_error.as_deref().unwrap_or_default();
    assert!(
        error.contains("\"odd\"") && error.contains("panel main") && error.contains("[999]"),
        "names the plan, the panel and the missing inbound: {error}"
    );
    assert!(
        panel.clients().is_empty(),
        "a client was created: {:#?}",
        panel.clients()
    );
    // The same panel provisions a plan whose inbounds it has.
    let fine = enqueue(&db, &payload("main", "basic"), None);
    wait_state(&db, &queue, fine, JobState::Completed, &worker).await;
    assert_eq!(panel.clients().len(), 1);
}
