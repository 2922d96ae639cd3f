//! A subscription after its provisioning, on both backends, with a real `jobq worker` against
//! the fake S-UI panel: renewals and upgrades (extended once even when the panel's answer is
//! lost), expiry (disables on the panel, skipped after a renewal, forced by an admin), and the
//! usage sync (usage written, each warning sent once, the panel reconciled with our records and
//! new findings reported to the admins).

mod support;

use chrono::{DateTime, Utc};
use fakes::sui::{ClientRow, Fault};
use jobs::driver::JobRecord;
use jobs::subscriptions::{Activation, Flag, Subscription, SubscriptionStatus, Subscriptions};
use jobs::{JobState, Queue};
use support::panel::*;
use support::*;

on_both_backends!(
    a_renewal_whose_answer_is_lost_extends_once_upgrades_and_reschedules_expiry,
    expiry_disables_the_client_is_skipped_after_a_renewal_and_can_be_forced,
    sync_writes_usage_warns_once_per_threshold_and_reports_new_findings,
    a_lock_held_by_a_killed_worker_is_free_for_the_rescued_attempt,
);

const GIB: i64 = 1024 * 1024 * 1024;

const PRO_PLAN: &str = r#"
[[plans]]
name = "pro"
volume_gb = 50
days = 60
inbounds = [1]

[telegram]
api_url = "http://127.0.0.1:9/"
admins = [777]
"#;

/// Provisions one subscription (key `key`) and returns it, active.
async fn provisioned(db: &TestDb, queue: &Queue, worker: &Process, key: &str) -> Subscription {
    let id = enqueue(db, &payload("main", "basic"), Some(key));
    wait_state(db, queue, id, JobState::Completed, worker).await;
    let subs = subscriptions(queue).await;
    let sub = subs
        .into_iter()
        .find(|s| s.origin_key.as_deref() == Some(key))
        .expect("the subscription");
    assert_eq!(sub.status, SubscriptionStatus::Active);
    sub
}

async fn reload(queue: &Queue, sub: &Subscription) -> Subscription {
    Subscriptions::new(queue)
        .expect("subscriptions")
        .get(sub.id)
        .await
        .expect("get")
        .expect("still there")
}

fn renewal(sub: &Subscription, plan: &str) -> String {
    format!(
        r#"{{"panel":"main","plan":"{plan}","user":{{"platform":"telegram","id":{USER}}},"renew":{}}}"#,
        sub.id
    )
}

fn keyed<'a>(jobs: &'a [JobRecord], prefix: &str) -> Vec<&'a JobRecord> {
    jobs.iter()
        .filter(|j| j.key.as_deref().is_some_and(|k| k.starts_with(prefix)))
        .collect()
}

/// A DM job's text.
fn text_of(dm: &JobRecord) -> &str {
    dm.payload["text"].as_str().expect("text")
}

fn to_second(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).expect("a time")
}

/// A worker SIGKILLed while its renewal holds the subscription's lock (the panel stalls the
/// edit): the lock belongs to that attempt's lease, so once the lease has run out and the job
/// is rescued, its next attempt takes the lock at once and completes: one attempt lost to the
/// kill, none to waiting for the lock.
async fn a_lock_held_by_a_killed_worker_is_free_for_the_rescued_attempt(backend: Backend) {
    let panel = fake().await;
    let db = db_with_panel(backend, &panel, PRO_PLAN).await;
    let queue = db.queue().await;
    let mut first = spawn_panel_worker(&db);
    let sub = provisioned(&db, &queue, &first, "order-1").await;

    panel.inject_on(
        Some("save"),
        Fault::Stall(std::time::Duration::from_secs(60)),
        1,
    );
    let saves = |panel: &fakes::sui::FakeSui| {
        panel
            .requests()
            .iter()
            .filter(|r| r.ends_with("/save"))
            .count()
    };
    let saves_before = saves(&panel);
    let id = enqueue(&db, &renewal(&sub, "pro"), Some("order-2"));
    // The edit's write has reached the panel: the renewal holds the lock, and stalls.
    eventually(secs(30), "the renewal's edit reaches the panel", || async {
        (saves(&panel) > saves_before).then_some(())
    })
    .await;
    let lock = format!("subscription:{}", sub.id);
    let limits = jobs::limits::Limits::new(&queue);
    assert_eq!(
        limits.held(&lock).await.expect("held"),
        1,
        "the renewal holds the lock"
    );
    first.kill_hard();

    let second = spawn_panel_worker(&db);
    let job = db
        .wait_job(&queue, id, secs(45), &[&second], is(JobState::Completed))
        .await;
    assert_eq!(
        job.attempts, 2,
        "the rescued attempt took the lock at once: {job:#?}"
    );
    assert_eq!(job.errors.len(), 1, "{:#?}", job.errors);
    assert!(
        job.errors[0].error.starts_with("lease expired"),
        "the one attempt lost was the kill's: {:#?}",
        job.errors
    );
    let renewed = reload(&queue, &sub).await;
    assert_eq!(renewed.plan, "pro");
    assert_eq!(renewed.status, SubscriptionStatus::Active);
}

async fn a_renewal_whose_answer_is_lost_extends_once_upgrades_and_reschedules_expiry(
    backend: Backend,
) {
    let panel = fake().await;
    let db = db_with_panel(backend, &panel, PRO_PLAN).await;
    let queue = db.queue().await;
    let worker = spawn_panel_worker(&db);
    let sub = provisioned(&db, &queue, &worker, "order-1").await;
    let old_expiry = sub.expiry.expect("an expiry");

    // The panel applies the edit and the answer is lost: the job retries.
    panel.inject_on(Some("save"), Fault::DropAfterApply, 1);
    let id = enqueue(&db, &renewal(&sub, "pro"), Some("order-2"));
    let job = wait_state(&db, &queue, id, JobState::Completed, &worker).await;
    assert_eq!(job.attempts, 2, "the lost answer was retried: {job:#?}");

    let renewed = reload(&queue, &sub).await;
    let new_expiry = old_expiry + chrono::Duration::days(60);
    assert_eq!(
        renewed.expiry,
        Some(new_expiry),
        "extended once, from the old expiry"
    );
    assert_eq!(renewed.status, SubscriptionStatus::Active);
    assert_eq!(renewed.plan, "pro");
    assert_eq!(renewed.volume_bytes, 50 * GIB);
    let rows = panel.clients();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert!(rows[0].enable);
    assert_eq!(rows[0].expiry, new_expiry.timestamp());
    assert_eq!(rows[0].volume, 50 * GIB);

    let dms = jobs_of(&queue, "send_dm").await;
    let renew_dms = keyed(&dms, "renew_dm:order-2");
    assert_eq!(renew_dms.len(), 1, "{dms:#?}");
    assert!(text_of(renew_dms[0]).contains("renewed"));
    let expiries = jobs_of(&queue, "expire_subscription").await;
    let mut at: Vec<DateTime<Utc>> = expiries.iter().map(|j| j.run_at).collect();
    at.sort();
    assert_eq!(
        at,
        vec![old_expiry, new_expiry],
        "the new expiry is scheduled"
    );
}

async fn expiry_disables_the_client_is_skipped_after_a_renewal_and_can_be_forced(backend: Backend) {
    let panel = fake().await;
    let db = db_with_panel(backend, &panel, PRO_PLAN).await;
    let queue = db.queue().await;
    let worker = spawn_panel_worker(&db);
    let sub = provisioned(&db, &queue, &worker, "order-e").await;

    // Its time has come: the expiry moved into the past.
    let due = to_second(Utc::now() - chrono::Duration::seconds(5));
    let activation = Activation {
        link: sub.subscription_link.clone().expect("a link"),
        volume_bytes: sub.volume_bytes,
        expiry: due,
        plan: None,
        reset_usage: false,
    };
    Subscriptions::new(&queue)
        .expect("subscriptions")
        .mark_active(sub.id, &activation)
        .await
        .expect("mark")
        .expect("the row");
    let expire = |expiry: DateTime<Utc>, extra: &str| {
        format!(
            r#"{{"subscription":{},"expiry":"{}"{extra}}}"#,
            sub.id,
            expiry.to_rfc3339()
        )
    };
    let id = enqueue_kind(&db, "expire_subscription", &expire(due, ""), None);
    wait_state(&db, &queue, id, JobState::Completed, &worker).await;
    assert_eq!(
        reload(&queue, &sub).await.status,
        SubscriptionStatus::Expired
    );
    let rows = panel.clients();
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].enable, "disabled on the panel");
    assert_eq!(rows[0].volume, 10 * GIB, "the rest of the row is kept");
    let dms = jobs_of(&queue, "send_dm").await;
    let expired_dm = format!("expired_dm:{}:{}", sub.id, due.timestamp());
    assert_eq!(keyed(&dms, &expired_dm).len(), 1, "{dms:#?}");

    // Renewed after it expired: 30 days from now, enabled again.
    let id = enqueue(&db, &renewal(&sub, "basic"), Some("order-r"));
    wait_state(&db, &queue, id, JobState::Completed, &worker).await;
    let renewed = reload(&queue, &sub).await;
    assert_eq!(renewed.status, SubscriptionStatus::Active);
    let days = (renewed.expiry.expect("expiry") - Utc::now()).num_hours() as f64 / 24.0;
    assert!((29.9..=30.01).contains(&days), "30 days from now: {days}");
    assert!(panel.clients()[0].enable, "enabled again");

    // The old term's expiry job, run late, changes nothing.
    let id = enqueue_kind(
        &db,
        "expire_subscription",
        &expire(due, ""),
        Some("late-run"),
    );
    wait_state(&db, &queue, id, JobState::Completed, &worker).await;
    assert_eq!(
        reload(&queue, &sub).await.status,
        SubscriptionStatus::Active
    );
    assert!(panel.clients()[0].enable, "a renewed client stays enabled");
    let dms = jobs_of(&queue, "send_dm").await;
    assert_eq!(keyed(&dms, "expired_dm:").len(), 1, "no second expiry DM");

    // An admin's forced expiry acts now, whatever the expiry.
    let id = enqueue_kind(
        &db,
        "expire_subscription",
        &expire(due, r#","force":true"#),
        None,
    );
    wait_state(&db, &queue, id, JobState::Completed, &worker).await;
    assert_eq!(
        reload(&queue, &sub).await.status,
        SubscriptionStatus::Expired
    );
    assert!(!panel.clients()[0].enable, "forced: disabled");
}

async fn sync_writes_usage_warns_once_per_threshold_and_reports_new_findings(backend: Backend) {
    let panel = fake().await;
    let db = db_with_panel(backend, &panel, PRO_PLAN).await;
    let queue = db.queue().await;
    let worker = panel_worker(&db, "panel,sync").start();
    let a = provisioned(&db, &queue, &worker, "order-a").await;
    let b = provisioned(&db, &queue, &worker, "order-b").await;
    let name_a = a.client_name.expose().to_string();
    let name_b = b.client_name.expose().to_string();
    let sync = || async {
        let id = enqueue_kind(&db, "sync_usage", r#"{"panel":"main"}"#, None);
        wait_state(&db, &queue, id, JobState::Completed, &worker).await;
        jobs_of(&queue, "send_dm").await
    };

    // 85% used: usage written, one 80% warning; a second sync sends none.
    panel.add_traffic(&name_a, GIB, 7 * GIB + GIB / 2);
    let dms = sync().await;
    let synced = reload(&queue, &a).await;
    assert_eq!(
        (synced.usage_up, synced.usage_down),
        (GIB, 7 * GIB + GIB / 2)
    );
    assert!(synced.last_synced_at.is_some());
    assert_eq!(
        keyed(&dms, &format!("usage_warning:{}:80:", a.id)).len(),
        1,
        "{dms:#?}"
    );
    assert!(keyed(&dms, &format!("usage_warning:{}:", b.id)).is_empty());
    assert_eq!(
        keyed(&sync().await, "usage_warning:").len(),
        1,
        "warned once"
    );

    // Past 100%: one more warning, then none.
    panel.add_traffic(&name_a, 0, 2 * GIB);
    let dms = sync().await;
    let full = keyed(&dms, &format!("usage_warning:{}:100:", a.id));
    assert_eq!(full.len(), 1, "{dms:#?}");
    assert!(text_of(full[0]).contains("all the traffic"));
    assert_eq!(keyed(&sync().await, "usage_warning:").len(), 2);

    // The panel disagrees: A disabled there (over its volume), B twice, C missing.
    panel.deplete();
    panel.insert(ClientRow {
        enable: true,
        name: name_b.clone(),
        volume: 10 * GIB,
        inbounds: serde_json::json!([1]),
        ..ClientRow::default()
    });
    let c = missing_subscription(&queue).await;
    let dms = sync().await;
    assert_eq!(
        reload(&queue, &a).await.flags,
        [Flag::DisabledOnPanel].into()
    );
    assert_eq!(
        reload(&queue, &b).await.flags,
        [Flag::DuplicateOnPanel].into()
    );
    assert_eq!(
        reload(&queue, &c).await.flags,
        [Flag::MissingOnPanel].into()
    );
    let reports = keyed(&dms, "reconcile:main:");
    assert_eq!(reports.len(), 1, "one digest for the admin: {dms:#?}");
    assert_eq!(reports[0].payload["user"]["id"], 777);
    let text = text_of(reports[0]);
    for expected in [
        format!("subscription {}", a.id),
        "disabled_on_panel".to_string(),
        "duplicate_on_panel".to_string(),
        "missing_on_panel".to_string(),
    ] {
        assert!(text.contains(&expected), "{expected} in {text}");
    }
    assert!(
        !text.contains(&name_a) && !text.contains(&name_b),
        "no client names: {text}"
    );
    // Known findings are not reported again.
    assert_eq!(keyed(&sync().await, "reconcile:").len(), 1);
    let log = worker.log_text();
    for secret in [name_a.as_str(), name_b.as_str(), TOKEN, SECRET] {
        assert!(
            !log.contains(secret),
            "a secret in the worker's log:\n{log}"
        );
    }
}

/// An active subscription whose client is not on the panel (deleted there by hand).
async fn missing_subscription(queue: &Queue) -> Subscription {
    let new = new_subscription(USER, 10 * GIB, Some("order-c"));
    let expiry = to_second(Utc::now() + chrono::Duration::days(3));
    active_subscription(queue, &new, "http://127.0.0.1:1/sub/x", expiry).await
}
