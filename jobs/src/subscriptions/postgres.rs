//! The subscriptions' SQL on PostgreSQL. Batches travel as arrays through `unnest`.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::{
    Activation, COLUMNS, NewSubscription, RawRow, Renewal, Subscription, SubscriptionError,
    SubscriptionStatus, UsageUpdate, renewal,
};
use crate::kinds::Platform;

fn row(r: &PgRow) -> Result<Subscription, SubscriptionError> {
    let flags: serde_json::Value = r.try_get("flags")?;
    RawRow {
        id: r.try_get("id")?,
        platform: r.try_get("platform")?,
        user_id: r.try_get("user_id")?,
        panel: r.try_get("panel")?,
        plan: r.try_get("plan")?,
        client_name: r.try_get("client_name")?,
        origin_key: r.try_get("origin_key")?,
        volume_bytes: r.try_get("volume_bytes")?,
        expiry: r.try_get::<Option<DateTime<Utc>>, _>("expiry")?,
        status: r.try_get("status")?,
        subscription_link: r.try_get("subscription_link")?,
        usage_up: r.try_get("usage_up")?,
        usage_down: r.try_get("usage_down")?,
        panel_enabled: r.try_get("panel_enabled")?,
        last_synced_at: r.try_get("last_synced_at")?,
        usage_warned_percent: r.try_get("usage_warned_percent")?,
        flags: flags.to_string(),
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    }
    .check()
}

fn rows(rs: &[PgRow]) -> Result<Vec<Subscription>, SubscriptionError> {
    rs.iter().map(row).collect()
}

/// The new row's id; `None` when its origin key is already held.
pub(super) async fn insert(
    c: &mut PgConnection,
    new: &NewSubscription,
    placeholder: &str,
) -> Result<Option<i64>, SubscriptionError> {
    let id = sqlx::query_scalar(
        "INSERT INTO jobq_subscriptions (platform, user_id, panel, plan, client_name, origin_key,
                                         volume_bytes)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
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
    .fetch_optional(c)
    .await?;
    Ok(id)
}

pub(super) async fn set_client_name(
    c: &mut PgConnection,
    id: i64,
    name: &str,
) -> Result<(), SubscriptionError> {
    sqlx::query("UPDATE jobq_subscriptions SET client_name = $2 WHERE id = $1")
        .bind(id)
        .bind(name)
        .execute(c)
        .await?;
    Ok(())
}

pub(super) async fn get(
    c: &mut PgConnection,
    id: i64,
) -> Result<Option<Subscription>, SubscriptionError> {
    let r = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM jobq_subscriptions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(c)
    .await?;
    r.as_ref().map(row).transpose()
}

pub(super) async fn get_by_origin(
    c: &mut PgConnection,
    key: &str,
) -> Result<Option<Subscription>, SubscriptionError> {
    let r = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM jobq_subscriptions WHERE origin_key = $1"
    ))
    .bind(key)
    .fetch_optional(c)
    .await?;
    r.as_ref().map(row).transpose()
}

pub(super) async fn get_by_client_name(
    c: &mut PgConnection,
    name: &str,
) -> Result<Option<Subscription>, SubscriptionError> {
    let r = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM jobq_subscriptions WHERE client_name = $1"
    ))
    .bind(name)
    .fetch_optional(c)
    .await?;
    r.as_ref().map(row).transpose()
}

pub(super) async fn list_by_user(
    c: &mut PgConnection,
    platform: Platform,
    user_id: i64,
) -> Result<Vec<Subscription>, SubscriptionError> {
    let rs = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM jobq_subscriptions WHERE platform = $1 AND user_id = $2
         ORDER BY id DESC"
    ))
    .bind(platform.as_str())
    .bind(user_id)
    .fetch_all(c)
    .await?;
    rows(&rs)
}

pub(super) async fn list_by_panel(
    c: &mut PgConnection,
    panel: &str,
) -> Result<Vec<Subscription>, SubscriptionError> {
    let rs = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM jobq_subscriptions WHERE panel = $1 ORDER BY id"
    ))
    .bind(panel)
    .fetch_all(c)
    .await?;
    rows(&rs)
}

pub(super) async fn mark_active(
    c: &mut PgConnection,
    id: i64,
    a: &Activation,
) -> Result<Option<Subscription>, SubscriptionError> {
    let r = sqlx::query(&format!(
        "UPDATE jobq_subscriptions
         SET status = 'active', subscription_link = $2, volume_bytes = $3, expiry = $4,
             plan = COALESCE($5, plan),
             usage_up = CASE WHEN $6 THEN 0 ELSE usage_up END,
             usage_down = CASE WHEN $6 THEN 0 ELSE usage_down END,
             usage_warned_percent =
                 CASE WHEN $6 OR volume_bytes <> $3 THEN 0 ELSE usage_warned_percent END,
             updated_at = now()
         WHERE id = $1
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(a.link.expose())
    .bind(a.volume_bytes)
    .bind(a.expiry)
    .bind(&a.plan)
    .bind(a.reset_usage)
    .fetch_optional(c)
    .await?;
    r.as_ref().map(row).transpose()
}

pub(super) async fn sync_usage(
    c: &mut PgConnection,
    panel: &str,
    updates: &[UsageUpdate],
) -> Result<Vec<Subscription>, SubscriptionError> {
    let names: Vec<&str> = updates.iter().map(|u| u.client_name.expose()).collect();
    let ups: Vec<i64> = updates.iter().map(|u| u.up).collect();
    let downs: Vec<i64> = updates.iter().map(|u| u.down).collect();
    let enabled: Vec<bool> = updates.iter().map(|u| u.enabled).collect();
    let expiries: Vec<Option<DateTime<Utc>>> = updates.iter().map(|u| u.expected_expiry).collect();
    let qualified = COLUMNS
        .split(", ")
        .map(|c| format!("s.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let rs = sqlx::query(&format!(
        "UPDATE jobq_subscriptions s
         SET usage_up = u.up, usage_down = u.down, panel_enabled = u.enabled,
             last_synced_at = now(), updated_at = now()
         FROM unnest($2::text[], $3::int8[], $4::int8[], $5::bool[], $6::timestamptz[])
              AS u(name, up, down, enabled, expiry)
         WHERE s.panel = $1 AND s.client_name = u.name AND s.expiry IS NOT DISTINCT FROM u.expiry
         RETURNING {qualified}"
    ))
    .bind(panel)
    .bind(&names)
    .bind(&ups)
    .bind(&downs)
    .bind(&enabled)
    .bind(&expiries)
    .fetch_all(c)
    .await?;
    let mut updated = rows(&rs)?;
    updated.sort_by_key(|s| s.id);
    Ok(updated)
}

pub(super) async fn set_status(
    c: &mut PgConnection,
    id: i64,
    status: SubscriptionStatus,
) -> Result<bool, SubscriptionError> {
    let done =
        sqlx::query("UPDATE jobq_subscriptions SET status = $2, updated_at = now() WHERE id = $1")
            .bind(id)
            .bind(status.as_str())
            .execute(c)
            .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn expire_if_unchanged(
    c: &mut PgConnection,
    id: i64,
    expiry: DateTime<Utc>,
) -> Result<bool, SubscriptionError> {
    let done = sqlx::query(
        "UPDATE jobq_subscriptions SET status = 'expired', updated_at = now()
         WHERE id = $1 AND expiry = $2 AND status IN ('active', 'disabled')",
    )
    .bind(id)
    .bind(expiry)
    .execute(c)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn set_flags(
    c: &mut PgConnection,
    id: i64,
    flags: &str,
) -> Result<bool, SubscriptionError> {
    let done = sqlx::query(
        "UPDATE jobq_subscriptions SET flags = $2::jsonb, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(flags)
    .execute(c)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn mark_warned(
    c: &mut PgConnection,
    id: i64,
    percent: i32,
) -> Result<bool, SubscriptionError> {
    let done = sqlx::query(
        "UPDATE jobq_subscriptions SET usage_warned_percent = $2, updated_at = now()
         WHERE id = $1 AND usage_warned_percent < $2",
    )
    .bind(id)
    .bind(percent)
    .execute(c)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn plan_renewal(
    c: &mut PgConnection,
    r: &Renewal,
) -> Result<Renewal, SubscriptionError> {
    sqlx::query(
        "INSERT INTO jobq_renewals (origin_key, subscription_id, plan, volume_bytes, expiry)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (origin_key) DO NOTHING",
    )
    .bind(&r.origin_key)
    .bind(r.subscription.get())
    .bind(&r.plan)
    .bind(r.volume_bytes)
    .bind(r.expiry)
    .execute(&mut *c)
    .await?;
    let row = sqlx::query(
        "SELECT subscription_id, plan, volume_bytes, expiry, applied_at IS NOT NULL AS applied
         FROM jobq_renewals WHERE origin_key = $1",
    )
    .bind(&r.origin_key)
    .fetch_one(c)
    .await?;
    renewal(
        &r.origin_key,
        row.try_get("subscription_id")?,
        Renewal {
            origin_key: r.origin_key.clone(),
            subscription: r.subscription,
            plan: row.try_get("plan")?,
            volume_bytes: row.try_get("volume_bytes")?,
            expiry: row.try_get("expiry")?,
            applied: row.try_get("applied")?,
        },
    )
}

pub(super) async fn apply_renewal(
    c: &mut PgConnection,
    origin_key: &str,
) -> Result<bool, SubscriptionError> {
    let done = sqlx::query(
        "UPDATE jobq_renewals SET applied_at = now()
         WHERE origin_key = $1 AND applied_at IS NULL",
    )
    .bind(origin_key)
    .execute(c)
    .await?;
    Ok(done.rows_affected() == 1)
}
