//! The subscriptions' statements, each once: on the pool or on a caller's connection, on
//! either backend (one SQL text per statement, see [`crate::db`]).

use std::collections::BTreeSet;

use sqlx::types::Json;
use sqlx::{ColumnIndex, Decode, Row, Type};

use super::*;
use crate::db::{Conn, DbError, Exec, Fields, Stamp, on_conn, row_id};
use crate::kinds::{Platform, SubscriptionId, UserId};
use crate::secret_key::SecretKey;

const TABLE: &str = "jobq_subscriptions";

/// The columns every read selects, for `concat!`. Flags are JSONB on PostgreSQL and TEXT on
/// SQLite: read as text on both, then parsed.
macro_rules! columns {
    () => {
        "id, platform, user_id, panel, plan, client_name, origin_key, volume_bytes, expiry, \
         status, subscription_link, usage_up, usage_down, panel_enabled, last_synced_at, \
         CAST(flags AS TEXT) AS flags, usage_warned_percent, created_at, updated_at"
    };
}

/// Insert with a placeholder name (unique, never committed), derive the name from the id,
/// write it, read the row back: all on `exec`, which the caller holds in one transaction.
pub(super) async fn create(
    mut exec: Exec<'_>,
    key: &SecretKey,
    new: &NewSubscription,
) -> Result<Created, SubscriptionError> {
    const INSERT: &str = "INSERT INTO jobq_subscriptions
             (platform, user_id, panel, plan, client_name, origin_key, volume_bytes,
              created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
         ON CONFLICT (origin_key) DO NOTHING
         RETURNING id";
    const NAME: &str = "UPDATE jobq_subscriptions SET client_name = $2 WHERE id = $1";
    check_new(new)?;
    let placeholder = format!("pending-{:032x}", fastrand::u128(..));
    let inserted: Option<i64> = on_conn!(exec.reborrow(), |c| {
        sqlx::query_scalar(INSERT)
            .bind(new.platform.as_str())
            .bind(new.user_id.get())
            .bind(&new.panel)
            .bind(&new.plan)
            .bind(&placeholder)
            .bind(&new.origin_key)
            .bind(new.volume_bytes)
            .bind(Stamp::now())
            .fetch_optional(&mut *c)
            .await?
    });
    let Some(id) = inserted else {
        return existing(get_by_origin(exec.reborrow(), origin(new)?).await?);
    };
    let id = SubscriptionId::try_from(id).map_err(|detail| DbError::Corrupt {
        table: TABLE,
        row: id.to_string(),
        column: "id",
        detail,
    })?;
    on_conn!(exec.reborrow(), |c| {
        sqlx::query(NAME)
            .bind(id.get())
            .bind(key.client_name(id).expose())
            .execute(&mut *c)
            .await?;
    });
    let subscription = get(exec, id).await?.ok_or_else(|| {
        SubscriptionError::Invalid(format!(
            "subscription {id} vanished inside its own transaction"
        ))
    })?;
    Ok(Created {
        subscription,
        created: true,
    })
}

/// Nothing inserted: the origin key was held, so its row exists (in this transaction's view).
pub(super) fn origin(new: &NewSubscription) -> Result<&str, SubscriptionError> {
    new.origin_key.as_deref().ok_or_else(|| {
        SubscriptionError::Invalid("insert conflicted without an origin key".to_string())
    })
}

pub(super) fn existing(found: Option<Subscription>) -> Result<Created, SubscriptionError> {
    found
        .map(|subscription| Created {
            subscription,
            created: false,
        })
        .ok_or_else(|| {
            SubscriptionError::Invalid(
                "the origin key is held, but its subscription was not found".to_string(),
            )
        })
}

pub(super) async fn get(
    exec: Exec<'_>,
    id: SubscriptionId,
) -> Result<Option<Subscription>, SubscriptionError> {
    const SQL: &str = concat!(
        "SELECT ",
        columns!(),
        " FROM jobq_subscriptions WHERE id = $1"
    );
    Ok(on_conn!(exec, |c| {
        let row = sqlx::query(SQL)
            .bind(id.get())
            .fetch_optional(&mut *c)
            .await?;
        row.as_ref().map(subscription).transpose()?
    }))
}

pub(super) async fn get_by_origin(
    exec: Exec<'_>,
    origin_key: &str,
) -> Result<Option<Subscription>, SubscriptionError> {
    const SQL: &str = concat!(
        "SELECT ",
        columns!(),
        " FROM jobq_subscriptions WHERE origin_key = $1"
    );
    Ok(on_conn!(exec, |c| {
        let row = sqlx::query(SQL)
            .bind(origin_key)
            .fetch_optional(&mut *c)
            .await?;
        row.as_ref().map(subscription).transpose()?
    }))
}

pub(super) async fn get_by_client_name(
    exec: Exec<'_>,
    name: &ClientName,
) -> Result<Option<Subscription>, SubscriptionError> {
    const SQL: &str = concat!(
        "SELECT ",
        columns!(),
        " FROM jobq_subscriptions WHERE client_name = $1"
    );
    Ok(on_conn!(exec, |c| {
        let row = sqlx::query(SQL)
            .bind(name.expose())
            .fetch_optional(&mut *c)
            .await?;
        row.as_ref().map(subscription).transpose()?
    }))
}

pub(super) async fn list_by_user(
    exec: Exec<'_>,
    platform: Platform,
    user_id: UserId,
) -> Result<Vec<Subscription>, SubscriptionError> {
    const SQL: &str = concat!(
        "SELECT ",
        columns!(),
        " FROM jobq_subscriptions WHERE platform = $1 AND user_id = $2 ORDER BY id DESC"
    );
    Ok(on_conn!(exec, |c| {
        let rows = sqlx::query(SQL)
            .bind(platform.as_str())
            .bind(user_id.get())
            .fetch_all(&mut *c)
            .await?;
        rows.iter()
            .map(subscription)
            .collect::<Result<Vec<_>, _>>()?
    }))
}

/// Subscriptions a renewal or an expiry is changing: such a job running, waiting for its retry
/// or due, or finished since `since`. `->>` reads a JSON field on both databases (SQLite 3.38+);
/// the payload fields are `ExpireSubscription::subscription` and `ProvisionClient::renew`.
pub(super) async fn changing(
    exec: Exec<'_>,
    since: Stamp,
) -> Result<BTreeSet<SubscriptionId>, SubscriptionError> {
    const SQL: &str = "SELECT DISTINCT CAST(COALESCE(payload->>'subscription', payload->>'renew')
                                           AS BIGINT) AS id
         FROM jobq_jobs
         WHERE kind IN ('expire_subscription', 'provision_client')
           AND (state IN ('running', 'retrying')
                OR (state IN ('available', 'scheduled') AND run_at <= $1)
                OR (state IN ('completed', 'failed', 'cancelled') AND finalized_at >= $2))";
    let ids: Vec<Option<i64>> = on_conn!(exec, |c| {
        sqlx::query_scalar(SQL)
            .bind(Stamp::now())
            .bind(since)
            .fetch_all(&mut *c)
            .await?
    });
    Ok(ids
        .into_iter()
        .flatten()
        .filter_map(|id| SubscriptionId::try_from(id).ok())
        .collect())
}

pub(super) async fn list_by_panel(
    exec: Exec<'_>,
    panel: &str,
) -> Result<Vec<Subscription>, SubscriptionError> {
    const SQL: &str = concat!(
        "SELECT ",
        columns!(),
        " FROM jobq_subscriptions WHERE panel = $1 ORDER BY id"
    );
    Ok(on_conn!(exec, |c| {
        let rows = sqlx::query(SQL).bind(panel).fetch_all(&mut *c).await?;
        rows.iter()
            .map(subscription)
            .collect::<Result<Vec<_>, _>>()?
    }))
}

pub(super) async fn mark_active(
    exec: Exec<'_>,
    id: SubscriptionId,
    a: &Activation,
) -> Result<Option<Subscription>, SubscriptionError> {
    const SQL: &str = concat!(
        "UPDATE jobq_subscriptions
         SET status = 'active', subscription_link = $2, volume_bytes = $3, expiry = $4,
             plan = COALESCE($5, plan),
             usage_up = CASE WHEN $6 THEN 0 ELSE usage_up END,
             usage_down = CASE WHEN $6 THEN 0 ELSE usage_down END,
             usage_warned_percent =
                 CASE WHEN $6 OR volume_bytes <> $3 THEN 0 ELSE usage_warned_percent END,
             updated_at = $7
         WHERE id = $1
         RETURNING ",
        columns!()
    );
    check_activation(a)?;
    Ok(on_conn!(exec, |c| {
        let row = sqlx::query(SQL)
            .bind(id.get())
            .bind(a.link.expose())
            .bind(a.volume_bytes)
            .bind(Stamp(a.expiry))
            .bind(&a.plan)
            .bind(a.reset_usage)
            .bind(Stamp::now())
            .fetch_optional(&mut *c)
            .await?;
        row.as_ref().map(subscription).transpose()?
    }))
}

// The usage sync writes a whole listing in one statement; the listing travels as arrays through
// `unnest` on PostgreSQL, and as one JSON array through `json_each` on SQLite (no arrays there).
const SYNC_POSTGRES: &str = concat!(
    "UPDATE jobq_subscriptions
     SET usage_up = u.up, usage_down = u.down, panel_enabled = u.enabled,
         last_synced_at = $2, updated_at = $2
     FROM unnest($3::text[], $4::int8[], $5::int8[], $6::bool[], $7::timestamptz[])
          AS u(name, up, down, enabled, expected)
     WHERE panel = $1 AND client_name = u.name AND expiry IS NOT DISTINCT FROM u.expected
     RETURNING ",
    columns!()
);
const SYNC_SQLITE: &str = concat!(
    "UPDATE jobq_subscriptions
     SET usage_up = u.up, usage_down = u.down, panel_enabled = u.enabled,
         last_synced_at = $2, updated_at = $2
     FROM (SELECT json_extract(value, '$.name') AS name, json_extract(value, '$.up') AS up,
                  json_extract(value, '$.down') AS down,
                  json_extract(value, '$.enabled') AS enabled,
                  json_extract(value, '$.expected') AS expected
             FROM json_each($3)) AS u
     WHERE panel = $1 AND client_name = u.name AND expiry IS NOT DISTINCT FROM u.expected
     RETURNING ",
    columns!()
);

pub(super) async fn sync_usage(
    mut exec: Exec<'_>,
    panel: &str,
    updates: &[UsageUpdate],
) -> Result<Vec<Subscription>, SubscriptionError> {
    check_updates(updates)?;
    if updates.is_empty() {
        return Ok(Vec::new());
    }
    let now = Stamp::now();
    let mut held = Exec::hold(&mut exec).await?;
    let mut updated = match held.conn() {
        Conn::Postgres(c) => {
            let names: Vec<&str> = updates.iter().map(|u| u.client_name.expose()).collect();
            let ups: Vec<i64> = updates.iter().map(|u| u.up).collect();
            let downs: Vec<i64> = updates.iter().map(|u| u.down).collect();
            let enabled: Vec<bool> = updates.iter().map(|u| u.enabled).collect();
            let expected: Vec<Option<DateTime<Utc>>> =
                updates.iter().map(|u| u.expected_expiry).collect();
            let rows = sqlx::query(SYNC_POSTGRES)
                .bind(panel)
                .bind(now)
                .bind(&names)
                .bind(&ups)
                .bind(&downs)
                .bind(&enabled)
                .bind(&expected)
                .fetch_all(&mut *c)
                .await?;
            rows.iter()
                .map(subscription)
                .collect::<Result<Vec<_>, _>>()?
        }
        Conn::Sqlite(c) => {
            // Expiries as stored on SQLite: microseconds (see `Stamp`).
            let batch: Vec<serde_json::Value> = updates
                .iter()
                .map(|u| {
                    serde_json::json!({
                        "name": u.client_name.expose(),
                        "up": u.up,
                        "down": u.down,
                        "enabled": u.enabled,
                        "expected": u.expected_expiry.map(|e| e.timestamp_micros()),
                    })
                })
                .collect();
            let rows = sqlx::query(SYNC_SQLITE)
                .bind(panel)
                .bind(now)
                .bind(serde_json::Value::Array(batch).to_string())
                .fetch_all(&mut *c)
                .await?;
            rows.iter()
                .map(subscription)
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    updated.sort_by_key(|s| s.id);
    Ok(updated)
}

pub(super) async fn set_status(
    exec: Exec<'_>,
    id: SubscriptionId,
    status: SubscriptionStatus,
) -> Result<bool, SubscriptionError> {
    const SQL: &str = "UPDATE jobq_subscriptions SET status = $2, updated_at = $3 WHERE id = $1";
    let done = on_conn!(exec, |c| {
        sqlx::query(SQL)
            .bind(id.get())
            .bind(status.as_str())
            .bind(Stamp::now())
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(done == 1)
}

pub(super) async fn expire_if_unchanged(
    exec: Exec<'_>,
    id: SubscriptionId,
    expiry: DateTime<Utc>,
) -> Result<bool, SubscriptionError> {
    const SQL: &str = "UPDATE jobq_subscriptions SET status = 'expired', updated_at = $3
         WHERE id = $1 AND expiry = $2 AND status IN ('active', 'disabled')";
    let done = on_conn!(exec, |c| {
        sqlx::query(SQL)
            .bind(id.get())
            .bind(Stamp(expiry))
            .bind(Stamp::now())
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(done == 1)
}

pub(super) async fn set_flags(
    exec: Exec<'_>,
    id: SubscriptionId,
    flags: &BTreeSet<Flag>,
) -> Result<bool, SubscriptionError> {
    // `Json` binds as JSONB on PostgreSQL and as TEXT on SQLite: one text for both columns.
    const SQL: &str = "UPDATE jobq_subscriptions SET flags = $2, updated_at = $3 WHERE id = $1";
    let done = on_conn!(exec, |c| {
        sqlx::query(SQL)
            .bind(id.get())
            .bind(Json(flag_names(flags)))
            .bind(Stamp::now())
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(done == 1)
}

pub(super) async fn mark_warned(
    exec: Exec<'_>,
    id: SubscriptionId,
    percent: i32,
) -> Result<bool, SubscriptionError> {
    const SQL: &str = "UPDATE jobq_subscriptions SET usage_warned_percent = $2, updated_at = $3
         WHERE id = $1 AND usage_warned_percent < $2";
    let done = on_conn!(exec, |c| {
        sqlx::query(SQL)
            .bind(id.get())
            .bind(percent)
            .bind(Stamp::now())
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(done == 1)
}

/// Insert-if-absent, then read what the key holds (this call's terms or an earlier one's).
pub(super) async fn plan_renewal(
    exec: Exec<'_>,
    r: &Renewal,
) -> Result<Renewal, SubscriptionError> {
    const INSERT: &str = "INSERT INTO jobq_renewals
             (origin_key, subscription_id, plan, volume_bytes, expiry, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (origin_key) DO NOTHING";
    const SELECT: &str = "SELECT subscription_id, plan, volume_bytes, expiry,
                applied_at IS NOT NULL AS applied
           FROM jobq_renewals WHERE origin_key = $1";
    let (stored_id, read) = on_conn!(exec, |c| {
        sqlx::query(INSERT)
            .bind(&r.origin_key)
            .bind(r.subscription.get())
            .bind(&r.plan)
            .bind(r.volume_bytes)
            .bind(Stamp(r.expiry))
            .bind(Stamp::now())
            .execute(&mut *c)
            .await?;
        let row = sqlx::query(SELECT)
            .bind(&r.origin_key)
            .fetch_one(&mut *c)
            .await?;
        let f = Fields::new(&row, "jobq_renewals", &r.origin_key);
        let stored_id: i64 = f.get("subscription_id")?;
        let read = Renewal {
            origin_key: r.origin_key.clone(),
            subscription: r.subscription,
            plan: f.get("plan")?,
            volume_bytes: f.get("volume_bytes")?,
            expiry: f.get::<Stamp>("expiry")?.into(),
            applied: f.get("applied")?,
        };
        (stored_id, read)
    });
    renewal(&r.origin_key, stored_id, read)
}

pub(super) async fn apply_renewal(
    exec: Exec<'_>,
    origin_key: &str,
) -> Result<bool, SubscriptionError> {
    const SQL: &str =
        "UPDATE jobq_renewals SET applied_at = $2 WHERE origin_key = $1 AND applied_at IS NULL";
    let done = on_conn!(exec, |c| {
        sqlx::query(SQL)
            .bind(origin_key)
            .bind(Stamp::now())
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(done == 1)
}

pub(super) fn check_new(new: &NewSubscription) -> Result<(), SubscriptionError> {
    if new.volume_bytes < 0 {
        return Err(SubscriptionError::Invalid(
            "volume_bytes must not be negative".to_string(),
        ));
    }
    if new.panel.is_empty() || new.plan.is_empty() {
        return Err(SubscriptionError::Invalid(
            "panel and plan must not be empty".to_string(),
        ));
    }
    if new.origin_key.as_deref() == Some("") {
        return Err(SubscriptionError::Invalid(
            "origin_key must not be empty (give None for none)".to_string(),
        ));
    }
    Ok(())
}

pub(super) fn check_activation(activation: &Activation) -> Result<(), SubscriptionError> {
    if activation.volume_bytes < 0 {
        return Err(SubscriptionError::Invalid(
            "volume_bytes must not be negative".to_string(),
        ));
    }
    if activation.plan.as_deref() == Some("") {
        return Err(SubscriptionError::Invalid(
            "plan must not be empty (give None to keep it)".to_string(),
        ));
    }
    Ok(())
}

pub(super) fn check_updates(updates: &[UsageUpdate]) -> Result<(), SubscriptionError> {
    let mut seen = BTreeSet::new();
    for u in updates {
        if u.up < 0 || u.down < 0 {
            return Err(SubscriptionError::Invalid(format!(
                "usage of client {:?} is negative",
                u.client_name
            )));
        }
        if !seen.insert(u.client_name.expose()) {
            return Err(SubscriptionError::Invalid(format!(
                "client {:?} is listed twice: merge duplicates before syncing",
                u.client_name
            )));
        }
    }
    Ok(())
}

/// Flags as stored: a JSON array of their names.
pub(super) fn flag_names(flags: &BTreeSet<Flag>) -> Vec<&'static str> {
    flags.iter().map(|f| f.as_str()).collect()
}

/// Flags as stored; names this jobq does not know (a newer one wrote them) are skipped.
pub(super) fn parse_flags(json: &str) -> Result<BTreeSet<Flag>, serde_json::Error> {
    let names: Vec<String> = serde_json::from_str(json)?;
    Ok(names
        .into_iter()
        .filter_map(|n| serde_json::from_value(serde_json::Value::String(n)).ok())
        .collect())
}

/// One row of [`columns!`], from either backend: a value that does not decode or that the
/// domain refuses is an error naming the row and the column, never a default.
pub(super) fn subscription<R: Row>(r: &R) -> Result<Subscription, DbError>
where
    &'static str: ColumnIndex<R>,
    for<'a> i64: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> i32: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> bool: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> String: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> Stamp: Decode<'a, R::Database> + Type<R::Database>,
{
    let raw_id = row_id(r, TABLE)?;
    let f = Fields::new(r, TABLE, raw_id);
    Ok(Subscription {
        id: SubscriptionId::try_from(raw_id).map_err(|e| f.corrupt("id", e))?,
        platform: f.parse("platform", |p: String| Platform::parse(&p))?,
        user_id: f.parse("user_id", |id: i64| UserId::try_from(id))?,
        panel: f.get("panel")?,
        plan: f.get("plan")?,
        client_name: ClientName(f.get("client_name")?),
        origin_key: f.get("origin_key")?,
        volume_bytes: f.get("volume_bytes")?,
        expiry: f.get::<Option<Stamp>>("expiry")?.map(Into::into),
        status: f.parse("status", |s: String| s.parse::<SubscriptionStatus>())?,
        subscription_link: f
            .get::<Option<String>>("subscription_link")?
            .map(SubscriptionLink),
        usage_up: f.get("usage_up")?,
        usage_down: f.get("usage_down")?,
        panel_enabled: f.get("panel_enabled")?,
        last_synced_at: f.get::<Option<Stamp>>("last_synced_at")?.map(Into::into),
        flags: f.parse("flags", |json: String| parse_flags(&json))?,
        usage_warned_percent: f.get("usage_warned_percent")?,
        created_at: f.get::<Stamp>("created_at")?.into(),
        updated_at: f.get::<Stamp>("updated_at")?.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_in_debug() {
        let name = ClientName::new("jqabcdefghijklmnopqrst");
        let link = SubscriptionLink::new("https://sub.example.com:2096/sub/jqabcdefghijklmnopqrst");
        let debug = format!("{name:?} {link:?}");
        assert!(!debug.contains("cdefghijklmnop"), "{debug}");
        assert!(debug.contains("sub.example.com"), "{debug}");
        let odd = SubscriptionLink::new("jqabcdefghijklmnopqrst");
        assert!(!format!("{odd:?}").contains("cdefghijklmnop"));
        let activation = Activation {
            link,
            volume_bytes: 1,
            expiry: Utc::now(),
            plan: None,
            reset_usage: false,
        };
        assert!(!format!("{activation:?}").contains("cdefghijklmnop"));
        let update = UsageUpdate {
            client_name: name,
            up: 1,
            down: 2,
            enabled: true,
            expected_expiry: None,
        };
        assert!(!format!("{update:?}").contains("cdefghijklmnop"));
    }

    #[test]
    fn statuses_and_flags_round_trip() {
        for status in SubscriptionStatus::ALL {
            assert_eq!(status.as_str().parse::<SubscriptionStatus>(), Ok(status));
        }
        assert!("gone".parse::<SubscriptionStatus>().is_err());
        let flags: BTreeSet<Flag> = [Flag::DuplicateOnPanel, Flag::MissingOnPanel].into();
        let json = serde_json::to_string(&Json(flag_names(&flags))).expect("serializes");
        assert_eq!(json, r#"["missing_on_panel","duplicate_on_panel"]"#);
        assert_eq!(parse_flags(&json).expect("parses"), flags);
        // A flag from a newer jobq is skipped, not an error.
        let newer = parse_flags(r#"["disabled_on_panel","from_the_future"]"#).expect("parses");
        assert_eq!(newer, [Flag::DisabledOnPanel].into());
        assert!(parse_flags("{").is_err());
    }

    #[test]
    fn duplicate_or_negative_updates_are_refused() {
        let u = |name: &str, up: i64| UsageUpdate {
            client_name: ClientName::new(name),
            up,
            down: 0,
            enabled: true,
            expected_expiry: None,
        };
        assert!(
            check_updates(&[
                u("jqaaaaaaaaaaaaaaaaaaaa", 1),
                u("jqbbbbbbbbbbbbbbbbbbbb", 2)
            ])
            .is_ok()
        );
        let err = check_updates(&[
            u("jqaaaaaaaaaaaaaaaaaaaa", 1),
            u("jqaaaaaaaaaaaaaaaaaaaa", 2),
        ])
        .expect_err("twice")
        .to_string();
        assert!(err.contains("twice"), "{err}");
        assert!(!err.contains("aaaaaaaaaaaa"), "the name leaked: {err}");
        assert!(check_updates(&[u("jqaaaaaaaaaaaaaaaaaaaa", -1)]).is_err());
    }
}
