//! The subscriptions' SQL on SQLite. Times are INTEGER microseconds since the epoch; batches
//! travel as one JSON array read with `json_each`.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::{
    Activation, COLUMNS, NewSubscription, RawRow, Renewal, Subscription, SubscriptionError,
    SubscriptionStatus, UsageUpdate, renewal,
};
use crate::kinds::Platform;

fn now() -> i64 {
    Utc::now().timestamp_micros()
}

fn time(id: i64, what: &'static str, us: i64) -> Result<DateTime<Utc>, SubscriptionError> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| SubscriptionError::Corrupt {
        id,
        what,
        detail: format!("{us} is not a time"),
    })
}

fn optional_time(
    id: i64,
    what: &'static str,
    us: Option<i64>,
) -> Result<Option<DateTime<Utc>>, SubscriptionError> {
    us.map(|us| time(id, what, us)).transpose()
}

fn row(r: &SqliteRow) -> Result<Subscription, SubscriptionError> {
    let id: i64 = r.try_get("id")?;
    RawRow {
        id,
        platform: r.try_get("platform")?,
        user_id: r.try_get("user_id")?,
        panel: r.try_get("panel")?,
        plan: r.try_get("plan")?,
        client_name: r.try_get("client_name")?,
        origin_key: r.try_get("origin_key")?,
        volume_bytes: r.try_get("volume_bytes")?,
        expiry: optional_time(id, "expiry", r.try_get("expiry")?)?,
        status: r.try_get("status")?,
        subscription_link: r.try_get("subscription_link")?,
        usage_up: r.try_get("usage_up")?,
        usage_down: r.try_get("usage_down")?,
        panel_enabled: r.try_get("panel_enabled")?,
        last_synced_at: optional_time(id, "last_synced_at", r.try_get("last_synced_at")?)?,
        usage_warned_percent: r.try_get("usage_warned_percent")?,
        flags: r.try_get("flags")?,
        created_at: time(id, "created_at", r.try_get("created_at")?)?,
        updated_at: time(id, "updated_at", r.try_get("updated_at")?)?,
    }
    .check()
}

fn rows(rs: &[SqliteRow]) -> Result<Vec<Subscription>, SubscriptionError> {
    rs.iter().map(row).collect()
}

/// The new row's id; `None` when its origin key is already held.
pub(super) async fn insert(
    c: &mut SqliteConnection,
    new: &NewSubscription,
    placeholder: &str,
) -> Result<Option<i64>, SubscriptionError> {
    let id = sqlx::query_scalar(
        "INSERT INTO jobq_subscriptions (platform, user_id, panel, plan, client_name, origin_key,
                                         volume_bytes, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
         ON CONFLICT (origin_key) DO NOTHING
         RETURNING id",
    )
    .bind(new.platform.as_str())
    .bind(new.user_id.get())
    .bind(&new.panel)
    .bind(&new.plan)
    .bind(placeholder)
    .bind(&new.origin_key)
    .bind(new.volume_bytes)
    .bind(now())
    .fetch_optional(c)
    .await?;
    Ok(id)
}

pub(super) async fn set_client_name(
    c: &mut SqliteConnection,
    id: i64,
    name: &str,
) -> Result<(), SubscriptionError> {
    sqlx::query("UPDATE jobq_subscriptions SET client_name = ?2 WHERE id = ?1")
        .bind(id)
        .bind(name)
        .execute(c)
        .await?;
    Ok(())
}

pub(super) async fn get(
    c: &mut SqliteConnection,
    id: i64,
) -> Result<Option<Subscription>, SubscriptionError> {
    let r = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM jobq_subscriptions WHERE id = ?1"
    ))
    .bind(id)
    .fetch_optional(c)
    .await?;
    r.as_ref().map(row).transpose()
}

pub(super) async fn get_by_origin(
    c: &mut SqliteConnection,
    key: &str,
) -> Result<Option<Subscription>, SubscriptionError> {
    let r = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM jobq_subscriptions WHERE origin_key = ?1"
    ))
    .bind(key)
    .fetch_optional(c)
    .await?;
    r.as_ref().map(row).transpose()
}

pub(super) async fn get_by_client_name(
    c: &mut SqliteConnection,
    name: &str,
) -> Result<Option<Subscription>, SubscriptionError> {
    let r = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM jobq_subscriptions WHERE client_name = ?1"
    ))
    .bind(name)
    .fetch_optional(c)
    .await?;
    r.as_ref().map(row).transpose()
}

pub(super) async fn list_by_user(
    c: &mut SqliteConnection,
    platform: Platform,
    user_id: i64,
) -> Result<Vec<Subscription>, SubscriptionError> {
    let rs = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM jobq_subscriptions WHERE platform = ?1 AND user_id = ?2
         ORDER BY id DESC"
    ))
    .bind(platform.as_str())
    .bind(user_id)
    .fetch_all(c)
    .await?;
    rows(&rs)
}

pub(super) async fn list_by_panel(
    c: &mut SqliteConnection,
    panel: &str,
) -> Result<Vec<Subscription>, SubscriptionError> {
    let rs = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM jobq_subscriptions WHERE panel = ?1 ORDER BY id"
    ))
    .bind(panel)
    .fetch_all(c)
    .await?;
    rows(&rs)
}

pub(super) async fn mark_active(
    c: &mut SqliteConnection,
    id: i64,
    a: &Activation,
) -> Result<Option<Subscription>, SubscriptionError> {
    let r = sqlx::query(&format!(
        "UPDATE jobq_subscriptions
         SET status = 'active', subscription_link = ?2, volume_bytes = ?3, expiry = ?4,
             plan = COALESCE(?5, plan),
             usage_up = CASE WHEN ?6 THEN 0 ELSE usage_up END,
             usage_down = CASE WHEN ?6 THEN 0 ELSE usage_down END,
             usage_warned_percent =
                 CASE WHEN ?6 OR volume_bytes <> ?3 THEN 0 ELSE usage_warned_percent END,
             updated_at = ?7
         WHERE id = ?1
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(a.link.expose())
    .bind(a.volume_bytes)
    .bind(a.expiry.timestamp_micros())
    .bind(&a.plan)
    .bind(a.reset_usage)
    .bind(now())
    .fetch_optional(c)
    .await?;
    r.as_ref().map(row).transpose()
}

pub(super) async fn sync_usage(
    c: &mut SqliteConnection,
    panel: &str,
    updates: &[UsageUpdate],
) -> Result<Vec<Subscription>, SubscriptionError> {
    let batch: Vec<serde_json::Value> = updates
        .iter()
        .map(|u| {
            json!({
                "name": u.client_name.expose(),
                "up": u.up,
                "down": u.down,
                "enabled": u.enabled,
                "expiry": u.expected_expiry.map(|e| e.timestamp_micros()),
            })
        })
        .collect();
    let rs = sqlx::query(&format!(
        "UPDATE jobq_subscriptions
         SET usage_up = u.up, usage_down = u.down, panel_enabled = u.enabled,
             last_synced_at = ?3, updated_at = ?3
         FROM (SELECT json_extract(value, '$.name') AS name,
                      json_extract(value, '$.up') AS up,
                      json_extract(value, '$.down') AS down,
                      json_extract(value, '$.enabled') AS enabled,
                      json_extract(value, '$.expiry') AS expiry
               FROM json_each(?2)) AS u
         WHERE jobq_subscriptions.panel = ?1 AND jobq_subscriptions.client_name = u.name
           AND jobq_subscriptions.expiry IS u.expiry
         RETURNING {COLUMNS}"
    ))
    .bind(panel)
    .bind(serde_json::Value::Array(batch).to_string())
    .bind(now())
    .fetch_all(c)
    .await?;
    let mut updated = rows(&rs)?;
    updated.sort_by_key(|s| s.id);
    Ok(updated)
}

pub(super) async fn set_status(
    c: &mut SqliteConnection,
    id: i64,
    status: SubscriptionStatus,
) -> Result<bool, SubscriptionError> {
    let done =
        sqlx::query("UPDATE jobq_subscriptions SET status = ?2, updated_at = ?3 WHERE id = ?1")
            .bind(id)
            .bind(status.as_str())
            .bind(now())
            .execute(c)
            .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn expire_if_unchanged(
    c: &mut SqliteConnection,
    id: i64,
    expiry: DateTime<Utc>,
) -> Result<bool, SubscriptionError> {
    let done = sqlx::query(
        "UPDATE jobq_subscriptions SET status = 'expired', updated_at = ?3
         WHERE id = ?1 AND expiry = ?2 AND status IN ('active', 'disabled')",
    )
    .bind(id)
    .bind(expiry.timestamp_micros())
    .bind(now())
    .execute(c)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn set_flags(
    c: &mut SqliteConnection,
    id: i64,
    flags: &str,
) -> Result<bool, SubscriptionError> {
    let done =
        sqlx::query("UPDATE jobq_subscriptions SET flags = ?2, updated_at = ?3 WHERE id = ?1")
            .bind(id)
            .bind(flags)
            .bind(now())
            .execute(c)
            .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn mark_warned(
    c: &mut SqliteConnection,
    id: i64,
    percent: i32,
) -> Result<bool, SubscriptionError> {
    let done = sqlx::query(
        "UPDATE jobq_subscriptions SET usage_warned_percent = ?2, updated_at = ?3
         WHERE id = ?1 AND usage_warned_percent < ?2",
    )
    .bind(id)
    .bind(percent)
    .bind(now())
    .execute(c)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn plan_renewal(
    c: &mut SqliteConnection,
    r: &Renewal,
) -> Result<Renewal, SubscriptionError> {
    sqlx::query(
        "INSERT INTO jobq_renewals
             (origin_key, subscription_id, plan, volume_bytes, expiry, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (origin_key) DO NOTHING",
    )
    .bind(&r.origin_key)
    .bind(r.subscription.get())
    .bind(&r.plan)
    .bind(r.volume_bytes)
    .bind(r.expiry.timestamp_micros())
    .bind(now())
    .execute(&mut *c)
    .await?;
    let row = sqlx::query(
        "SELECT subscription_id, plan, volume_bytes, expiry, applied_at IS NOT NULL AS applied
         FROM jobq_renewals WHERE origin_key = ?1",
    )
    .bind(&r.origin_key)
    .fetch_one(c)
    .await?;
    let id: i64 = row.try_get("subscription_id")?;
    renewal(
        &r.origin_key,
        id,
        Renewal {
            origin_key: r.origin_key.clone(),
            subscription: r.subscription,
            plan: row.try_get("plan")?,
            volume_bytes: row.try_get("volume_bytes")?,
            expiry: time(id, "renewal expiry", row.try_get("expiry")?)?,
            applied: row.try_get("applied")?,
        },
    )
}

pub(super) async fn apply_renewal(
    c: &mut SqliteConnection,
    origin_key: &str,
) -> Result<bool, SubscriptionError> {
    let done = sqlx::query(
        "UPDATE jobq_renewals SET applied_at = ?2 WHERE origin_key = ?1 AND applied_at IS NULL",
    )
    .bind(origin_key)
    .bind(now())
    .execute(c)
    .await?;
    Ok(done.rows_affected() == 1)
}
