//! The subscriptions repository on both backends: creation with a derived, secret client name
//! (idempotent by origin key, also under concurrency), look-ups, activation and renewal, the
//! one-statement usage sync of a panel, status and flags, and writes inside a caller's
//! transaction that commit or roll back with its jobs.

mod support;

use std::collections::BTreeSet;

use chrono::{DateTime, Duration as ChronoDuration, SubsecRound, Utc};
use jobs::EnqueueOptions;
use jobs::kinds::{Platform, Recipient, SendDm, SubscriptionId, UserId};
use jobs::secret_key::SecretKey;
use jobs::subscriptions::{
    Activation, ClientName, Flag, NewSubscription, Subscription, SubscriptionLink,
    SubscriptionStatus, Subscriptions, UsageUpdate,
};
use support::{Backend, TestDb};

const KEY: &str = "8b80c83618b2e287707c6d8789cc006804f0e9e6cf14a0eb0ee49eded38cf073";
const GIB: i64 = 1024 * 1024 * 1024;

fn key() -> SecretKey {
    SecretKey::parse(KEY).expect("test key")
}

fn user(id: i64) -> UserId {
    UserId::parse(id).expect("user id")
}

fn new_sub(platform: Platform, user_id: i64, panel: &str, origin: Option<&str>) -> NewSubscription {
    NewSubscription {
        platform,
        user_id: user(user_id),
        panel: panel.to_string(),
        plan: "basic".to_string(),
        volume_bytes: 10 * GIB,
        origin_key: origin.map(str::to_string),
    }
}

/// Microseconds: what both backends keep.
fn at(days_from_now: i64) -> DateTime<Utc> {
    (Utc::now() + ChronoDuration::days(days_from_now)).trunc_subsecs(6)
}

fn link_of(s: &Subscription) -> SubscriptionLink {
    SubscriptionLink::new(format!(
        "https://sub.example.com:2096/sub/{}",
        s.client_name.expose()
    ))
}

/// Active with `volume_bytes` until `expiry`, on the plan it has.
fn activation(s: &Subscription, volume_bytes: i64, expiry: DateTime<Utc>) -> Activation {
    Activation {
        link: link_of(s),
        volume_bytes,
        expiry,
        plan: None,
        reset_usage: false,
    }
}

async fn setup(backend: Backend) -> (TestDb, jobs::Queue, Subscriptions) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let subs = Subscriptions::new(&queue).expect("repository");
    (db, queue, subs)
}

async fn create(subs: &Subscriptions, new: &NewSubscription) -> Subscription {
    let created = subs.create(&key(), new).await.expect("create");
    assert!(created.created);
    created.subscription
}

async fn create_derives_a_stable_secret_client_name(backend: Backend) {
    let (_db, _queue, subs) = setup(backend).await;
    let before = Utc::now().trunc_subsecs(6) - ChronoDuration::seconds(1);
    let s = create(&subs, &new_sub(Platform::Telegram, 42, "main", None)).await;
    assert_eq!(s.status, SubscriptionStatus::Provisioning);
    assert_eq!(s.platform, Platform::Telegram);
    assert_eq!(s.user_id, user(42));
    assert_eq!((s.panel.as_str(), s.plan.as_str()), ("main", "basic"));
    assert_eq!(s.volume_bytes, 10 * GIB);
    assert_eq!(s.expiry, None);
    assert_eq!(s.subscription_link, None);
    assert_eq!((s.usage_up, s.usage_down), (0, 0));
    assert_eq!(s.panel_enabled, None);
    assert_eq!(s.last_synced_at, None);
    assert!(s.flags.is_empty());
    assert!(s.created_at >= before && s.updated_at >= before);

    // The name is the keyed derivation of the id: a retry derives the same one.
    assert_eq!(s.client_name, key().client_name(s.id));
    let name = s.client_name.expose().to_string();
    assert!(name.starts_with("jq") && name.len() == 22, "{name}");
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "{name}"
    );
    // And it never shows in Debug output.
    let debug = format!("{s:?}");
    assert!(!debug.contains(&name[2..]), "{debug}");

    let again = subs.get(s.id).await.expect("get").expect("found");
    assert_eq!(again, s);
    let by_name = subs
        .get_by_client_name(&s.client_name)
        .await
        .expect("by name")
        .expect("found");
    assert_eq!(by_name.id, s.id);
    let other = create(&subs, &new_sub(Platform::Telegram, 42, "main", None)).await;
    assert_ne!(other.id, s.id);
    assert_ne!(other.client_name, s.client_name);
    let unknown = SubscriptionId::try_from(999_999).expect("id");
    assert!(subs.get(unknown).await.expect("get").is_none());
    assert!(
        subs.get_by_client_name(&ClientName::new("jqnosuchclientxxxxxxxx"))
            .await
            .expect("by name")
            .is_none()
    );
}

async fn create_with_an_origin_key_is_idempotent_even_concurrently(backend: Backend) {
    let (_db, _queue, subs) = setup(backend).await;
    let new = new_sub(Platform::Discord, 7, "main", Some("order-17"));
    let first = subs.create(&key(), &new).await.expect("first");
    assert!(first.created);
    let second = subs.create(&key(), &new).await.expect("second");
    assert!(!second.created);
    assert_eq!(second.subscription, first.subscription);

    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let subs = subs.clone();
            let new = new_sub(Platform::Discord, 7, "main", Some("order-18"));
            tokio::spawn(async move { subs.create(&key(), &new).await })
        })
        .collect();
    let mut ids = BTreeSet::new();
    let mut created = 0;
    for task in tasks {
        let result = task.await.expect("task").expect("create");
        ids.insert(result.subscription.id);
        created += usize::from(result.created);
    }
    assert_eq!(ids.len(), 1, "one subscription for one origin key");
    assert_eq!(created, 1, "created once");
    let all = subs
        .list_by_user(Platform::Discord, user(7))
        .await
        .expect("list");
    assert_eq!(all.len(), 2, "{all:?}");
}

async fn lists_by_user_and_by_panel(backend: Backend) {
    let (_db, _queue, subs) = setup(backend).await;
    let a1 = create(&subs, &new_sub(Platform::Telegram, 1, "main", None)).await;
    let b = create(&subs, &new_sub(Platform::Discord, 1, "main", None)).await;
    let a2 = create(&subs, &new_sub(Platform::Telegram, 1, "backup", None)).await;
    let c = create(&subs, &new_sub(Platform::Telegram, 2, "main", None)).await;

    let ids = |list: Vec<Subscription>| list.into_iter().map(|s| s.id).collect::<Vec<_>>();
    // A user is a platform and an id: Telegram's 1 is not Discord's 1. Newest first.
    assert_eq!(
        ids(subs
            .list_by_user(Platform::Telegram, user(1))
            .await
            .expect("list")),
        [a2.id, a1.id]
    );
    assert_eq!(
        ids(subs
            .list_by_user(Platform::Discord, user(1))
            .await
            .expect("list")),
        [b.id]
    );
    assert!(
        subs.list_by_user(Platform::Discord, user(2))
            .await
            .expect("list")
            .is_empty()
    );
    // A panel's subscriptions, oldest first.
    assert_eq!(
        ids(subs.list_by_panel("main").await.expect("list")),
        [a1.id, b.id, c.id]
    );
    assert_eq!(
        ids(subs.list_by_panel("backup").await.expect("list")),
        [a2.id]
    );
    assert!(subs.list_by_panel("nope").await.expect("list").is_empty());
}

async fn mark_active_then_renew(backend: Backend) {
    let (_db, _queue, subs) = setup(backend).await;
    let s = create(&subs, &new_sub(Platform::Telegram, 42, "main", None)).await;
    let expiry = at(30);
    let active = subs
        .mark_active(s.id, &activation(&s, 10 * GIB, expiry))
        .await
        .expect("mark active")
        .expect("found");
    assert_eq!(active.status, SubscriptionStatus::Active);
    assert_eq!(active.expiry, Some(expiry));
    assert_eq!(active.volume_bytes, 10 * GIB);
    assert_eq!(active.subscription_link, Some(link_of(&s)));
    assert_eq!(active.plan, "basic");
    assert!(active.updated_at >= s.updated_at);
    assert_eq!(subs.get(s.id).await.expect("get"), Some(active.clone()));
    // The link never shows in Debug output.
    let debug = format!("{active:?}");
    assert!(
        !debug.contains(&s.client_name.expose()[2..]),
        "the link or name leaked: {debug}"
    );

    // Usage accrues, then a renewal that keeps it, then an upgrade that resets it.
    let sync = |up, down| UsageUpdate {
        client_name: s.client_name.clone(),
        up,
        down,
        enabled: true,
        expected_expiry: active.expiry,
    };
    subs.sync_usage("main", &[sync(3 * GIB, 4 * GIB)])
        .await
        .expect("sync");
    let renewed = at(60);
    let kept = subs
        .mark_active(s.id, &activation(&s, 10 * GIB, renewed))
        .await
        .expect("renew")
        .expect("found");
    assert_eq!((kept.usage_up, kept.usage_down), (3 * GIB, 4 * GIB));
    assert_eq!(kept.usage_bytes(), 7 * GIB);
    assert_eq!(kept.usage_fraction(), Some(0.7));
    assert_eq!(kept.expiry, Some(renewed));
    let upgraded = subs
        .mark_active(
            s.id,
            &Activation {
                link: link_of(&s),
                volume_bytes: 0,
                expiry: at(90),
                plan: Some("unlimited".to_string()),
                reset_usage: true,
            },
        )
        .await
        .expect("upgrade")
        .expect("found");
    assert_eq!((upgraded.usage_up, upgraded.usage_down), (0, 0));
    assert_eq!(upgraded.plan, "unlimited");
    assert_eq!(upgraded.volume_bytes, 0);
    assert_eq!(upgraded.usage_fraction(), None, "unlimited");

    let unknown = SubscriptionId::try_from(999_999).expect("id");
    let none = subs
        .mark_active(unknown, &activation(&s, 1, expiry))
        .await
        .expect("no error");
    assert!(none.is_none());
    let negative = subs.mark_active(s.id, &activation(&s, -1, expiry)).await;
    assert!(negative.is_err());
}

async fn sync_usage_updates_one_panel_in_one_batch(backend: Backend) {
    let (_db, _queue, subs) = setup(backend).await;
    let a = create(&subs, &new_sub(Platform::Telegram, 1, "main", None)).await;
    let b = create(&subs, &new_sub(Platform::Telegram, 2, "main", None)).await;
    let untouched = create(&subs, &new_sub(Platform::Telegram, 3, "main", None)).await;
    let elsewhere = create(&subs, &new_sub(Platform::Telegram, 4, "backup", None)).await;
    let update = |s: &Subscription, up, down, enabled| UsageUpdate {
        client_name: s.client_name.clone(),
        up,
        down,
        enabled,
        expected_expiry: s.expiry,
    };
    let before = Utc::now().trunc_subsecs(6) - ChronoDuration::seconds(1);
    let updated = subs
        .sync_usage(
            "main",
            &[
                update(&b, 5, 6, false),
                update(&a, 1, 2, true),
                // On another panel: a listing of "main" does not touch it.
                update(&elsewhere, 100, 100, false),
                // A client of no subscription of ours: ignored here.
                UsageUpdate {
                    client_name: ClientName::new("jqnosuchclientxxxxxxxx"),
                    up: 9,
                    down: 9,
                    enabled: true,
                    expected_expiry: None,
                },
            ],
        )
        .await
        .expect("sync");
    let got: Vec<_> = updated
        .iter()
        .map(|s| (s.id, s.usage_up, s.usage_down, s.panel_enabled))
        .collect();
    assert_eq!(
        got,
        [(a.id, 1, 2, Some(true)), (b.id, 5, 6, Some(false))],
        "the rows updated, in id order"
    );
    for s in &updated {
        assert!(s.last_synced_at.is_some_and(|t| t >= before), "{s:?}");
        assert_eq!(subs.get(s.id).await.expect("get").as_ref(), Some(s));
    }
    for s in [&untouched, &elsewhere] {
        let now = subs.get(s.id).await.expect("get").expect("found");
        assert_eq!(now, *s, "not in this panel's listing: unchanged");
    }

    // Counters may go down (a reset on the panel): the listing is the truth.
    let again = subs
        .sync_usage("main", &[update(&a, 0, 1, true)])
        .await
        .expect("sync");
    assert_eq!((again[0].usage_up, again[0].usage_down), (0, 1));

    // A row whose expiry changed after the listing was asked for (a renewal that reset the
    // usage, say) keeps its counters until the next sync.
    let stale = UsageUpdate {
        expected_expiry: Some(Utc::now()),
        ..update(&a, 7, 7, true)
    };
    let skipped = subs.sync_usage("main", &[stale]).await.expect("sync");
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(
        subs.get(a.id).await.expect("get").map(|s| s.usage_down),
        Some(1)
    );

    assert!(
        subs.sync_usage("main", &[])
            .await
            .expect("empty")
            .is_empty()
    );
    let twice = subs
        .sync_usage("main", &[update(&a, 1, 1, true), update(&a, 2, 2, true)])
        .await
        .expect_err("a name twice");
    assert!(twice.to_string().contains("twice"), "{twice}");
    let negative = subs.sync_usage("main", &[update(&a, -1, 0, true)]).await;
    assert!(negative.is_err());
    assert_eq!(
        subs.get(a.id).await.expect("get").map(|s| s.usage_down),
        Some(1),
        "refused batches change nothing"
    );
}

async fn status_and_flags(backend: Backend) {
    let (_db, _queue, subs) = setup(backend).await;
    let s = create(&subs, &new_sub(Platform::Telegram, 42, "main", None)).await;
    for status in SubscriptionStatus::ALL {
        assert!(subs.set_status(s.id, status).await.expect("set status"));
        assert_eq!(
            subs.get(s.id).await.expect("get").map(|s| s.status),
            Some(status)
        );
    }
    let flags: BTreeSet<Flag> = [Flag::DuplicateOnPanel, Flag::DisabledOnPanel].into();
    assert!(subs.set_flags(s.id, &flags).await.expect("set flags"));
    assert_eq!(
        subs.get(s.id).await.expect("get").map(|s| s.flags),
        Some(flags)
    );
    assert!(subs.set_flags(s.id, &BTreeSet::new()).await.expect("clear"));
    assert_eq!(
        subs.get(s.id).await.expect("get").map(|s| s.flags),
        Some(BTreeSet::new())
    );
    let unknown = SubscriptionId::try_from(999_999).expect("id");
    assert!(
        !subs
            .set_status(unknown, SubscriptionStatus::Active)
            .await
            .expect("no error")
    );
    assert!(
        !subs
            .set_flags(unknown, &BTreeSet::new())
            .await
            .expect("no error")
    );
}

async fn writes_inside_a_job_tx_commit_or_roll_back_with_its_jobs(backend: Backend) {
    let (_db, queue, subs) = setup(backend).await;
    let dm = SendDm::new(Recipient::new(Platform::Telegram, user(42)), "your link").expect("dm");
    let keyed = |key: &str| EnqueueOptions {
        key: Some(key.to_string()),
        ..EnqueueOptions::default()
    };

    let order_1 = new_sub(Platform::Telegram, 42, "main", Some("order-1"));

    // Rolled back: neither the subscription nor the job exists.
    let mut tx = queue.begin().await.expect("begin");
    let created = Subscriptions::in_tx(&mut tx)
        .create(&key(), &order_1)
        .await
        .expect("create in tx");
    tx.enqueue(&dm, keyed("dm-1")).await.expect("enqueue");
    tx.rollback().await.expect("rollback");
    assert!(
        subs.get(created.subscription.id)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        subs.list_by_user(Platform::Telegram, user(42))
            .await
            .expect("list")
            .is_empty()
    );

    // Committed: both, and the activation made inside the transaction.
    let mut tx = queue.begin().await.expect("begin");
    let s = Subscriptions::in_tx(&mut tx)
        .create(&key(), &order_1)
        .await
        .expect("create in tx")
        .subscription;
    let expiry = at(30);
    let active = Subscriptions::in_tx(&mut tx)
        .mark_active(s.id, &activation(&s, 10 * GIB, expiry))
        .await
        .expect("activate in tx")
        .expect("found");
    let mut flags = BTreeSet::new();
    flags.insert(Flag::MissingOnPanel);
    assert!(
        Subscriptions::in_tx(&mut tx)
            .set_flags(s.id, &flags)
            .await
            .expect("flags in tx")
    );
    let job = tx.enqueue(&dm, keyed("dm-1")).await.expect("enqueue");
    tx.commit().await.expect("commit");
    let stored = subs.get(s.id).await.expect("get").expect("committed");
    assert_eq!(stored.status, SubscriptionStatus::Active);
    assert_eq!(stored.expiry, active.expiry);
    assert_eq!(stored.flags, flags);
    assert_eq!(stored.client_name, key().client_name(s.id));
    let record = queue.driver().job(job.id).await.expect("job read");
    assert!(record.is_some(), "the job committed with the subscription");
}

async fn expiry_applies_only_to_the_expiry_it_was_scheduled_for(backend: Backend) {
    let (_db, _queue, subs) = setup(backend).await;
    let s = create(&subs, &new_sub(Platform::Telegram, 42, "main", None)).await;
    let first = at(30);
    let activate = |expiry| activation(&s, GIB, expiry);
    // Not active yet: nothing to expire.
    assert!(!subs.expire_if_unchanged(s.id, first).await.expect("expire"));
    subs.mark_active(s.id, &activate(first))
        .await
        .expect("activate");
    // Renewed before the expiry job ran: the old expiry no longer applies.
    let renewed = at(60);
    subs.mark_active(s.id, &activate(renewed))
        .await
        .expect("renew");
    assert!(!subs.expire_if_unchanged(s.id, first).await.expect("expire"));
    assert_eq!(
        subs.get(s.id).await.expect("get").map(|s| s.status),
        Some(SubscriptionStatus::Active)
    );
    // The current one does, once.
    assert!(
        subs.expire_if_unchanged(s.id, renewed)
            .await
            .expect("expire")
    );
    assert_eq!(
        subs.get(s.id).await.expect("get").map(|s| s.status),
        Some(SubscriptionStatus::Expired)
    );
    assert!(
        !subs
            .expire_if_unchanged(s.id, renewed)
            .await
            .expect("again")
    );
}

async fn sqlite_times_are_integer_microseconds(backend: Backend) {
    let (_db, queue, subs) = setup(backend).await;
    let s = create(&subs, &new_sub(Platform::Telegram, 42, "main", None)).await;
    let expiry = at(30);
    subs.mark_active(s.id, &activation(&s, 1, expiry))
        .await
        .expect("activate");
    let Some(pool) = queue.db().sqlite_pool() else {
        return; // PostgreSQL keeps TIMESTAMPTZ.
    };
    let (kind, value): (String, i64) =
        sqlx::query_as("SELECT typeof(expiry), expiry FROM jobq_subscriptions WHERE id = ?1")
            .bind(s.id.get())
            .fetch_one(pool)
            .await
            .expect("raw row");
    assert_eq!(kind, "integer");
    assert_eq!(value, expiry.timestamp_micros());
    let kinds: (String, String) = sqlx::query_as(
        "SELECT typeof(created_at), typeof(updated_at) FROM jobq_subscriptions WHERE id = ?1",
    )
    .bind(s.id.get())
    .fetch_one(pool)
    .await
    .expect("raw row");
    assert_eq!(kinds, ("integer".to_string(), "integer".to_string()));
}

/// Sets one column of subscription `id` by hand (as a hand edit or a newer jobq could), in each
/// backend's own spelling.
async fn write_raw(queue: &jobs::Queue, id: SubscriptionId, postgres: &str, sqlite: &str) {
    let db = queue.db();
    if let Some(pool) = db.postgres_pool() {
        sqlx::query(&format!(
            "UPDATE jobq_subscriptions SET {postgres} WHERE id = $1"
        ))
        .bind(id.get())
        .execute(pool)
        .await
        .expect("raw write");
    } else if let Some(pool) = db.sqlite_pool() {
        sqlx::query(&format!(
            "UPDATE jobq_subscriptions SET {sqlite} WHERE id = $1"
        ))
        .bind(id.get())
        .execute(pool)
        .await
        .expect("raw write");
    }
}

async fn unreadable_values_are_errors_naming_the_row_and_column(backend: Backend) {
    let (_db, queue, subs) = setup(backend).await;
    let s = create(&subs, &new_sub(Platform::Telegram, 42, "main", None)).await;
    let refused = |column: &str, error: String| {
        let row = format!("jobq_subscriptions row {}", s.id);
        assert!(error.contains(&row), "{column}: {error}");
        assert!(
            error.contains(&format!("column {column}")),
            "{column}: {error}"
        );
    };

    // Flags that are not a list of names.
    write_raw(&queue, s.id, "flags = '{}'::jsonb", "flags = '{}'").await;
    let error = subs.get(s.id).await.expect_err("unreadable flags");
    refused("flags", error.to_string());
    let error = subs.list_by_panel("main").await.expect_err("in a list too");
    refused("flags", error.to_string());
    write_raw(&queue, s.id, "flags = '[]'::jsonb", "flags = '[]'").await;
    assert!(subs.get(s.id).await.expect("readable again").is_some());

    // A time jobq cannot hold: never read as some default time.
    write_raw(
        &queue,
        s.id,
        "expiry = 'infinity'",
        "expiry = 9223372036854775807",
    )
    .await;
    let error = subs.get(s.id).await.expect_err("unreadable expiry");
    refused("expiry", error.to_string());
    // New terms replace it.
    subs.mark_active(
        s.id,
        &Activation {
            link: link_of(&s),
            volume_bytes: 1,
            expiry: at(30),
            plan: None,
            reset_usage: false,
        },
    )
    .await
    .expect("activate")
    .expect("found");
    assert!(subs.get(s.id).await.expect("readable again").is_some());
}

on_both_backends!(
    create_derives_a_stable_secret_client_name,
    create_with_an_origin_key_is_idempotent_even_concurrently,
    lists_by_user_and_by_panel,
    mark_active_then_renew,
    sync_usage_updates_one_panel_in_one_batch,
    status_and_flags,
    writes_inside_a_job_tx_commit_or_roll_back_with_its_jobs,
    expiry_applies_only_to_the_expiry_it_was_scheduled_for,
    sqlite_times_are_integer_microseconds,
    unreadable_values_are_errors_naming_the_row_and_column,
);
