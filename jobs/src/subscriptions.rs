//! Subscriptions: who bought what, on which panel, under which client name, and what the panel
//! last said about it. One table (`jobq_subscriptions`, migration 0002), the same behaviour on
//! both backends: one SQL text per statement (see [`crate::db`]), two only for the usage sync,
//! whose batch travels differently on each.
//!
//! Each write is one statement, or one transaction when it takes more ([`Subscriptions::create`]).
//! Each operation is written once over an [`Exec`]: on the pool ([`Subscriptions`]) or inside a
//! caller's [`JobTx`] ([`Subscriptions::in_tx`]), so a handler can change a subscription and
//! enqueue the jobs that follow from it atomically.
//!
//! Client names and subscription links grant access by being known: their `Debug` output is
//! masked ([`crate::redact`]), and nothing here logs them.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::db::{Conn, Db, DbError, Exec, Fields, Stamp, on_conn, row_id};
use crate::kinds::{Platform, SubscriptionId, UserId};
use crate::queue::{JobTx, Queue};
use crate::redact;
use crate::secret_key::SecretKey;

// ---------------------------------------------------------------------------------------------
// Values

/// A client's name on its panel: also the secret part of the subscription link. `Debug` masks
/// it; [`ClientName::expose`] gives it, for the panel call that needs it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientName(String);

impl ClientName {
    /// Wraps a name (derived with [`SecretKey::client_name`], or read from a panel).
    pub fn new(name: impl Into<String>) -> Self {
        ClientName(name.into())
    }

    /// The name itself: only for talking to the panel, never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClientName")
            .field(&redact::mask(&self.0))
            .finish()
    }
}

/// A subscription link (the panel's `subURI` and the client name): whoever knows it can use
/// the subscription. `Debug` keeps the scheme and host only.
#[derive(Clone, PartialEq, Eq)]
pub struct SubscriptionLink(String);

impl SubscriptionLink {
    pub fn new(link: impl Into<String>) -> Self {
        SubscriptionLink(link.into())
    }

    /// The link itself: only for the message that hands it to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SubscriptionLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let masked = redact::mask_urls(&self.0);
        // Not a URL (nothing was masked): mask it whole.
        let masked = if masked == self.0 {
            redact::mask(&self.0)
        } else {
            masked
        };
        f.debug_tuple("SubscriptionLink").field(&masked).finish()
    }
}

/// Where a subscription is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubscriptionStatus {
    /// Row written, client not yet confirmed on the panel.
    Provisioning,
    /// Client on the panel, link handed out.
    Active,
    /// Past its expiry; client disabled on the panel.
    Expired,
    /// Disabled by an admin or by reconciliation.
    Disabled,
    /// Provisioning failed for good.
    Failed,
}

impl SubscriptionStatus {
    pub const ALL: [SubscriptionStatus; 5] = [
        SubscriptionStatus::Provisioning,
        SubscriptionStatus::Active,
        SubscriptionStatus::Expired,
        SubscriptionStatus::Disabled,
        SubscriptionStatus::Failed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Provisioning => "provisioning",
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::Expired => "expired",
            SubscriptionStatus::Disabled => "disabled",
            SubscriptionStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for SubscriptionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SubscriptionStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| format!("unknown subscription status {text:?}"))
    }
}

/// A reconciliation finding about a subscription's client on its panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// No client of this name on the panel.
    MissingOnPanel,
    /// The client is disabled on the panel while the subscription is active here.
    DisabledOnPanel,
    /// The panel holds more than one client of this name.
    DuplicateOnPanel,
}

impl Flag {
    pub const fn as_str(self) -> &'static str {
        match self {
            Flag::MissingOnPanel => "missing_on_panel",
            Flag::DisabledOnPanel => "disabled_on_panel",
            Flag::DuplicateOnPanel => "duplicate_on_panel",
        }
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of `jobq_subscriptions`.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub platform: Platform,
    pub user_id: UserId,
    /// A `[[panels]]` name.
    pub panel: String,
    /// A `[[plans]]` name.
    pub plan: String,
    pub client_name: ClientName,
    /// The key of the request that created it, if one was given.
    pub origin_key: Option<String>,
    /// Bytes; 0 is unlimited.
    pub volume_bytes: i64,
    /// `None` until active.
    pub expiry: Option<DateTime<Utc>>,
    pub status: SubscriptionStatus,
    pub subscription_link: Option<SubscriptionLink>,
    /// Cumulative bytes, as the panel said at the last sync.
    pub usage_up: i64,
    pub usage_down: i64,
    /// Whether the client was enabled on the panel at the last sync (`None`: never synced).
    pub panel_enabled: Option<bool>,
    pub last_synced_at: Option<DateTime<Utc>>,
    pub flags: BTreeSet<Flag>,
    /// The highest usage warning (0, 80 or 100 percent) sent for the current term.
    pub usage_warned_percent: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Subscription {
    /// Bytes used, up and down together.
    pub fn usage_bytes(&self) -> i64 {
        self.usage_up.saturating_add(self.usage_down)
    }

    /// The share of the volume used (1.0 = all of it); `None` when the volume is unlimited.
    pub fn usage_fraction(&self) -> Option<f64> {
        (self.volume_bytes > 0).then(|| self.usage_bytes() as f64 / self.volume_bytes as f64)
    }
}

/// A subscription to create, in `provisioning`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSubscription {
    pub platform: Platform,
    pub user_id: UserId,
    pub panel: String,
    pub plan: String,
    /// Bytes; 0 is unlimited.
    pub volume_bytes: i64,
    /// Makes creation idempotent: a second create with the same key returns the first row
    /// (e.g. the provision job's idempotency key, so a retried job finds its subscription).
    pub origin_key: Option<String>,
}

/// What [`Subscriptions::create`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub subscription: Subscription,
    /// `false` when a subscription with the same `origin_key` already existed (returned as is).
    pub created: bool,
}

/// The terms a subscription becomes (or, on renewal, stays) `active` with.
#[derive(Debug, Clone, PartialEq)]
pub struct Activation {
    pub link: SubscriptionLink,
    /// Bytes; 0 is unlimited.
    pub volume_bytes: i64,
    pub expiry: DateTime<Utc>,
    /// A new plan (an upgrade on renewal); `None` keeps the plan.
    pub plan: Option<String>,
    /// Start the usage count again from zero (a renewal whose plan says so).
    pub reset_usage: bool,
}

/// A renewal or upgrade of a subscription, its terms fixed at the first attempt (see
/// [`Subscriptions::plan_renewal`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Renewal {
    /// The request's key (the job's idempotency key, else `job:<id>`).
    pub origin_key: String,
    pub subscription: SubscriptionId,
    pub plan: String,
    /// Bytes; 0 is unlimited.
    pub volume_bytes: i64,
    /// The new expiry.
    pub expiry: DateTime<Utc>,
    /// Whether the subscription row has been updated with it (the follow-ups enqueued).
    pub applied: bool,
}

/// A stored renewal as read back: it must be of the subscription the caller names.
fn renewal(origin_key: &str, stored_id: i64, read: Renewal) -> Result<Renewal, SubscriptionError> {
    if stored_id != read.subscription.get() {
        return Err(SubscriptionError::Invalid(format!(
            "renewal key {origin_key:?} was used for subscription {stored_id}, not {}",
            read.subscription
        )));
    }
    Ok(read)
}

/// What a panel listing says of one client, for [`Subscriptions::sync_usage`].
#[derive(Debug, Clone, PartialEq)]
pub struct UsageUpdate {
    pub client_name: ClientName,
    /// Cumulative bytes.
    pub up: i64,
    pub down: i64,
    pub enabled: bool,
    /// The subscription's expiry as read before the panel was listed: a row whose expiry has
    /// changed since (a renewal, which may have reset the usage) is left for the next sync
    /// rather than given counters from before the change.
    pub expected_expiry: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    /// The database failed, or a stored value does not read ([`DbError::Corrupt`] names the
    /// row and the column).
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("invalid subscription data: {0}")]
    Invalid(String),
}

impl From<sqlx::Error> for SubscriptionError {
    fn from(error: sqlx::Error) -> Self {
        SubscriptionError::Db(DbError::Sqlx(error))
    }
}

// ---------------------------------------------------------------------------------------------
// The repository

/// Reads and writes subscriptions on the queue's database. Cheap to clone.
#[derive(Clone)]
pub struct Subscriptions {
    db: Db,
}

impl Subscriptions {
    /// The subscriptions of `queue`'s database (same pool). It cannot fail: the `Result` stays
    /// so that the callers, which pass it on with `?`, are unchanged.
    pub fn new(queue: &Queue) -> Result<Self, SubscriptionError> {
        Ok(Subscriptions {
            db: queue.db().clone(),
        })
    }

    /// The same operations inside a caller's transaction (with the jobs it enqueues).
    pub fn in_tx(tx: &mut JobTx) -> InTx<'_> {
        InTx { tx }
    }

    /// Creates a subscription in `provisioning`, its client name derived from its id with
    /// `key`, in one transaction. With an `origin_key` already used, returns that subscription
    /// with `created: false`.
    pub async fn create(
        &self,
        key: &SecretKey,
        new: &NewSubscription,
    ) -> Result<Created, SubscriptionError> {
        let mut tx = self.db.begin().await?;
        let created = create(Exec::from(&mut tx), key, new).await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn get(&self, id: SubscriptionId) -> Result<Option<Subscription>, SubscriptionError> {
        get(self.db.exec(), id).await
    }

    /// The subscription whose client has this name, if any.
    pub async fn get_by_client_name(
        &self,
        name: &ClientName,
    ) -> Result<Option<Subscription>, SubscriptionError> {
        get_by_client_name(self.db.exec(), name).await
    }

    /// A user's subscriptions, newest first.
    pub async fn list_by_user(
        &self,
        platform: Platform,
        user_id: UserId,
    ) -> Result<Vec<Subscription>, SubscriptionError> {
        list_by_user(self.db.exec(), platform, user_id).await
    }

    /// A panel's subscriptions, oldest first.
    pub async fn list_by_panel(&self, panel: &str) -> Result<Vec<Subscription>, SubscriptionError> {
        list_by_panel(self.db.exec(), panel).await
    }

    /// Marks the subscription `active` with its link, volume and expiry (and, on renewal, a
    /// new plan and usage reset to zero). `None` when there is no such subscription.
    pub async fn mark_active(
        &self,
        id: SubscriptionId,
        activation: &Activation,
    ) -> Result<Option<Subscription>, SubscriptionError> {
        mark_active(self.db.exec(), id, activation).await
    }

    /// Writes one panel listing: usage and enable state of every subscription on `panel` whose
    /// client name is in `updates` and whose expiry is still the update's `expected_expiry`,
    /// and its sync time, in one statement. Returns the rows updated, in id order (names not
    /// found here, and rows renewed since, are left out). Each name may appear once: merge
    /// duplicates (and flag them) first.
    pub async fn sync_usage(
        &self,
        panel: &str,
        updates: &[UsageUpdate],
    ) -> Result<Vec<Subscription>, SubscriptionError> {
        sync_usage(self.db.exec(), panel, updates).await
    }

    /// Sets the status; `false` when there is no such subscription.
    pub async fn set_status(
        &self,
        id: SubscriptionId,
        status: SubscriptionStatus,
    ) -> Result<bool, SubscriptionError> {
        set_status(self.db.exec(), id, status).await
    }

    /// Marks the subscription `expired` only if its expiry is still `expiry` and it is `active`
    /// or `disabled`: a renewal that moved the expiry (even one landing while the caller was
    /// disabling the client) wins. `true` when it was marked.
    pub async fn expire_if_unchanged(
        &self,
        id: SubscriptionId,
        expiry: DateTime<Utc>,
    ) -> Result<bool, SubscriptionError> {
        expire_if_unchanged(self.db.exec(), id, expiry).await
    }

    /// Records the terms of a renewal under its origin key, unless that key already has
    /// terms: then those are returned, so every retry of one renewal applies the same expiry.
    /// The write and the read back share one transaction.
    pub async fn plan_renewal(&self, planned: &Renewal) -> Result<Renewal, SubscriptionError> {
        let mut tx = self.db.begin().await?;
        let renewal = plan_renewal(Exec::from(&mut tx), planned).await?;
        tx.commit().await?;
        Ok(renewal)
    }

    /// Replaces the reconciliation flags; `false` when there is no such subscription.
    pub async fn set_flags(
        &self,
        id: SubscriptionId,
        flags: &BTreeSet<Flag>,
    ) -> Result<bool, SubscriptionError> {
        set_flags(self.db.exec(), id, flags).await
    }
}

/// [`Subscriptions`]' operations inside a [`JobTx`]: committed or rolled back with it.
pub struct InTx<'t> {
    tx: &'t mut JobTx,
}

impl InTx<'_> {
    pub async fn create(
        &mut self,
        key: &SecretKey,
        new: &NewSubscription,
    ) -> Result<Created, SubscriptionError> {
        create(self.tx.exec(), key, new).await
    }

    pub async fn get(
        &mut self,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>, SubscriptionError> {
        get(self.tx.exec(), id).await
    }

    pub async fn mark_active(
        &mut self,
        id: SubscriptionId,
        activation: &Activation,
    ) -> Result<Option<Subscription>, SubscriptionError> {
        mark_active(self.tx.exec(), id, activation).await
    }

    pub async fn set_status(
        &mut self,
        id: SubscriptionId,
        status: SubscriptionStatus,
    ) -> Result<bool, SubscriptionError> {
        set_status(self.tx.exec(), id, status).await
    }

    pub async fn expire_if_unchanged(
        &mut self,
        id: SubscriptionId,
        expiry: DateTime<Utc>,
    ) -> Result<bool, SubscriptionError> {
        expire_if_unchanged(self.tx.exec(), id, expiry).await
    }

    pub async fn set_flags(
        &mut self,
        id: SubscriptionId,
        flags: &BTreeSet<Flag>,
    ) -> Result<bool, SubscriptionError> {
        set_flags(self.tx.exec(), id, flags).await
    }

    /// Records that a usage warning of `percent` was given for the current term; `false` when
    /// one as high was given already (then send nothing).
    pub async fn mark_warned(
        &mut self,
        id: SubscriptionId,
        percent: i32,
    ) -> Result<bool, SubscriptionError> {
        mark_warned(self.tx.exec(), id, percent).await
    }

    /// Marks a planned renewal applied; `false` when an earlier attempt applied it.
    pub async fn apply_renewal(&mut self, origin_key: &str) -> Result<bool, SubscriptionError> {
        apply_renewal(self.tx.exec(), origin_key).await
    }
}

// ---------------------------------------------------------------------------------------------
// The operations, each once: on the pool or on a caller's connection, on either backend (one
// SQL text per statement, see [`crate::db`]).

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
async fn create(
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
fn origin(new: &NewSubscription) -> Result<&str, SubscriptionError> {
    new.origin_key.as_deref().ok_or_else(|| {
        SubscriptionError::Invalid("insert conflicted without an origin key".to_string())
    })
}

fn existing(found: Option<Subscription>) -> Result<Created, SubscriptionError> {
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

async fn get(
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

async fn get_by_origin(
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

async fn get_by_client_name(
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

async fn list_by_user(
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

async fn list_by_panel(
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

async fn mark_active(
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

async fn sync_usage(
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

async fn set_status(
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

async fn expire_if_unchanged(
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

async fn set_flags(
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

async fn mark_warned(
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
async fn plan_renewal(exec: Exec<'_>, r: &Renewal) -> Result<Renewal, SubscriptionError> {
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

async fn apply_renewal(exec: Exec<'_>, origin_key: &str) -> Result<bool, SubscriptionError> {
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

fn check_new(new: &NewSubscription) -> Result<(), SubscriptionError> {
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

fn check_activation(activation: &Activation) -> Result<(), SubscriptionError> {
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

fn check_updates(updates: &[UsageUpdate]) -> Result<(), SubscriptionError> {
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
fn flag_names(flags: &BTreeSet<Flag>) -> Vec<&'static str> {
    flags.iter().map(|f| f.as_str()).collect()
}

/// Flags as stored; names this jobq does not know (a newer one wrote them) are skipped.
fn parse_flags(json: &str) -> Result<BTreeSet<Flag>, serde_json::Error> {
    let names: Vec<String> = serde_json::from_str(json)?;
    Ok(names
        .into_iter()
        .filter_map(|n| serde_json::from_value(serde_json::Value::String(n)).ok())
        .collect())
}

/// One row of [`columns!`], from either backend: a value that does not decode or that the
/// domain refuses is an error naming the row and the column, never a default.
fn subscription<R: Row>(r: &R) -> Result<Subscription, DbError>
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
