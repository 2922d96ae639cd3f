//! Subscriptions: who bought what, on which panel, under which client name, and what the panel
//! last said about it. One table (`jobq_subscriptions`, migration 0002), the same behaviour on
//! both backends; the SQL lives in [`postgres`] and [`sqlite`].
//!
//! Each write is one statement, or one transaction when it takes more ([`Subscriptions::create`]).
//! Every write also exists inside a caller's [`JobTx`] ([`Subscriptions::in_tx`]), so a handler can
//! change a subscription and enqueue the jobs that follow from it atomically.
//!
//! Client names and subscription links grant access by being known: their `Debug` output is
//! masked ([`crate::redact`]), and nothing here logs them.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::configuration::Backend;
use crate::kinds::{Platform, SubscriptionId, UserId};
use crate::queue::{JobTx, Queue, QueueError};
use crate::redact;
use crate::secret_key::SecretKey;

mod postgres;
mod sqlite;

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
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("invalid subscription data: {0}")]
    Invalid(String),
    /// A stored row this code cannot read (written by hand, or by a newer jobq).
    #[error("subscription {id}: stored {what} is not valid: {detail}")]
    Corrupt {
        id: i64,
        what: &'static str,
        detail: String,
    },
}

// ---------------------------------------------------------------------------------------------
// The repository

#[derive(Clone)]
enum Pool {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

/// A connection of either backend, borrowed from a pool, a transaction or a [`JobTx`].
enum Conn<'c> {
    Postgres(&'c mut sqlx::PgConnection),
    Sqlite(&'c mut sqlx::SqliteConnection),
}

/// Reads and writes subscriptions on the queue's database. Cheap to clone.
#[derive(Clone)]
pub struct Subscriptions {
    pool: Pool,
}

impl Subscriptions {
    /// The subscriptions of `queue`'s database (same pool).
    pub fn new(queue: &Queue) -> Result<Self, SubscriptionError> {
        let pool = match queue.backend() {
            Backend::Postgres => queue.db().postgres_pool().cloned().map(Pool::Postgres),
            Backend::Sqlite => queue.db().sqlite_pool().cloned().map(Pool::Sqlite),
        };
        pool.map(|pool| Subscriptions { pool }).ok_or_else(|| {
            SubscriptionError::Database(sqlx::Error::Protocol(
                "queue backend and driver disagree".into(),
            ))
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
        match &self.pool {
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let created = create(Conn::Postgres(&mut tx), key, new).await?;
                tx.commit().await?;
                Ok(created)
            }
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let created = create(Conn::Sqlite(&mut tx), key, new).await?;
                tx.commit().await?;
                Ok(created)
            }
        }
    }

    pub async fn get(&self, id: SubscriptionId) -> Result<Option<Subscription>, SubscriptionError> {
        match &self.pool {
            Pool::Postgres(pool) => postgres::get(&mut *pool.acquire().await?, id.get()).await,
            Pool::Sqlite(pool) => sqlite::get(&mut *pool.acquire().await?, id.get()).await,
        }
    }

    /// The subscription whose client has this name, if any.
    pub async fn get_by_client_name(
        &self,
        name: &ClientName,
    ) -> Result<Option<Subscription>, SubscriptionError> {
        match &self.pool {
            Pool::Postgres(pool) => {
                postgres::get_by_client_name(&mut *pool.acquire().await?, name.expose()).await
            }
            Pool::Sqlite(pool) => {
                sqlite::get_by_client_name(&mut *pool.acquire().await?, name.expose()).await
            }
        }
    }

    /// A user's subscriptions, newest first.
    pub async fn list_by_user(
        &self,
        platform: Platform,
        user_id: UserId,
    ) -> Result<Vec<Subscription>, SubscriptionError> {
        match &self.pool {
            Pool::Postgres(pool) => {
                postgres::list_by_user(&mut *pool.acquire().await?, platform, user_id.get()).await
            }
            Pool::Sqlite(pool) => {
                sqlite::list_by_user(&mut *pool.acquire().await?, platform, user_id.get()).await
            }
        }
    }

    /// A panel's subscriptions, oldest first.
    pub async fn list_by_panel(&self, panel: &str) -> Result<Vec<Subscription>, SubscriptionError> {
        match &self.pool {
            Pool::Postgres(pool) => {
                postgres::list_by_panel(&mut *pool.acquire().await?, panel).await
            }
            Pool::Sqlite(pool) => sqlite::list_by_panel(&mut *pool.acquire().await?, panel).await,
        }
    }

    /// Marks the subscription `active` with its link, volume and expiry (and, on renewal, a
    /// new plan and usage reset to zero). `None` when there is no such subscription.
    pub async fn mark_active(
        &self,
        id: SubscriptionId,
        activation: &Activation,
    ) -> Result<Option<Subscription>, SubscriptionError> {
        check_activation(activation)?;
        match &self.pool {
            Pool::Postgres(pool) => {
                postgres::mark_active(&mut *pool.acquire().await?, id.get(), activation).await
            }
            Pool::Sqlite(pool) => {
                sqlite::mark_active(&mut *pool.acquire().await?, id.get(), activation).await
            }
        }
    }

    /// Writes one panel listing: usage and enable state of every subscription on `panel` whose
    /// client name is in `updates` and whose expiry is still the update's `expected_expiry`,
    /// and its sync time, in one statement. Returns the rows updated (names not found here,
    /// and rows renewed since, are left out). Each name may
    /// appear once: merge duplicates (and flag them) first.
    pub async fn sync_usage(
        &self,
        panel: &str,
        updates: &[UsageUpdate],
    ) -> Result<Vec<Subscription>, SubscriptionError> {
        check_updates(updates)?;
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        match &self.pool {
            Pool::Postgres(pool) => {
                postgres::sync_usage(&mut *pool.acquire().await?, panel, updates).await
            }
            Pool::Sqlite(pool) => {
                sqlite::sync_usage(&mut *pool.acquire().await?, panel, updates).await
            }
        }
    }

    /// Sets the status; `false` when there is no such subscription.
    pub async fn set_status(
        &self,
        id: SubscriptionId,
        status: SubscriptionStatus,
    ) -> Result<bool, SubscriptionError> {
        match &self.pool {
            Pool::Postgres(pool) => {
                postgres::set_status(&mut *pool.acquire().await?, id.get(), status).await
            }
            Pool::Sqlite(pool) => {
                sqlite::set_status(&mut *pool.acquire().await?, id.get(), status).await
            }
        }
    }

    /// Marks the subscription `expired` only if its expiry is still `expiry` and it is `active`
    /// or `disabled`: a renewal that moved the expiry (even one landing while the caller was
    /// disabling the client) wins. `true` when it was marked.
    pub async fn expire_if_unchanged(
        &self,
        id: SubscriptionId,
        expiry: DateTime<Utc>,
    ) -> Result<bool, SubscriptionError> {
        match &self.pool {
            Pool::Postgres(pool) => {
                postgres::expire_if_unchanged(&mut *pool.acquire().await?, id.get(), expiry).await
            }
            Pool::Sqlite(pool) => {
                sqlite::expire_if_unchanged(&mut *pool.acquire().await?, id.get(), expiry).await
            }
        }
    }

    /// Records the terms of a renewal under its origin key, unless that key already has
    /// terms: then those are returned, so every retry of one renewal applies the same expiry.
    pub async fn plan_renewal(&self, planned: &Renewal) -> Result<Renewal, SubscriptionError> {
        match &self.pool {
            Pool::Postgres(pool) => {
                postgres::plan_renewal(&mut *pool.acquire().await?, planned).await
            }
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let renewal = sqlite::plan_renewal(&mut tx, planned).await?;
                tx.commit().await?;
                Ok(renewal)
            }
        }
    }

    /// Replaces the reconciliation flags; `false` when there is no such subscription.
    pub async fn set_flags(
        &self,
        id: SubscriptionId,
        flags: &BTreeSet<Flag>,
    ) -> Result<bool, SubscriptionError> {
        let flags = flags_json(flags);
        match &self.pool {
            Pool::Postgres(pool) => {
                postgres::set_flags(&mut *pool.acquire().await?, id.get(), &flags).await
            }
            Pool::Sqlite(pool) => {
                sqlite::set_flags(&mut *pool.acquire().await?, id.get(), &flags).await
            }
        }
    }
}

/// [`Subscriptions`]' operations inside a [`JobTx`]: committed or rolled back with it.
pub struct InTx<'t> {
    tx: &'t mut JobTx,
}

impl InTx<'_> {
    fn conn(&mut self) -> Result<Conn<'_>, SubscriptionError> {
        Ok(match self.tx.conn() {
            crate::db::Conn::Postgres(c) => Conn::Postgres(c),
            crate::db::Conn::Sqlite(c) => Conn::Sqlite(c),
        })
    }

    pub async fn create(
        &mut self,
        key: &SecretKey,
        new: &NewSubscription,
    ) -> Result<Created, SubscriptionError> {
        create(self.conn()?, key, new).await
    }

    pub async fn get(
        &mut self,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>, SubscriptionError> {
        match self.conn()? {
            Conn::Postgres(c) => postgres::get(c, id.get()).await,
            Conn::Sqlite(c) => sqlite::get(c, id.get()).await,
        }
    }

    pub async fn mark_active(
        &mut self,
        id: SubscriptionId,
        activation: &Activation,
    ) -> Result<Option<Subscription>, SubscriptionError> {
        check_activation(activation)?;
        match self.conn()? {
            Conn::Postgres(c) => postgres::mark_active(c, id.get(), activation).await,
            Conn::Sqlite(c) => sqlite::mark_active(c, id.get(), activation).await,
        }
    }

    pub async fn set_status(
        &mut self,
        id: SubscriptionId,
        status: SubscriptionStatus,
    ) -> Result<bool, SubscriptionError> {
        match self.conn()? {
            Conn::Postgres(c) => postgres::set_status(c, id.get(), status).await,
            Conn::Sqlite(c) => sqlite::set_status(c, id.get(), status).await,
        }
    }

    pub async fn expire_if_unchanged(
        &mut self,
        id: SubscriptionId,
        expiry: DateTime<Utc>,
    ) -> Result<bool, SubscriptionError> {
        match self.conn()? {
            Conn::Postgres(c) => postgres::expire_if_unchanged(c, id.get(), expiry).await,
            Conn::Sqlite(c) => sqlite::expire_if_unchanged(c, id.get(), expiry).await,
        }
    }

    pub async fn set_flags(
        &mut self,
        id: SubscriptionId,
        flags: &BTreeSet<Flag>,
    ) -> Result<bool, SubscriptionError> {
        let flags = flags_json(flags);
        match self.conn()? {
            Conn::Postgres(c) => postgres::set_flags(c, id.get(), &flags).await,
            Conn::Sqlite(c) => sqlite::set_flags(c, id.get(), &flags).await,
        }
    }
}

impl InTx<'_> {
    /// Records that a usage warning of `percent` was given for the current term; `false` when
    /// one as high was given already (then send nothing).
    pub async fn mark_warned(
        &mut self,
        id: SubscriptionId,
        percent: i32,
    ) -> Result<bool, SubscriptionError> {
        match self.conn()? {
            Conn::Postgres(c) => postgres::mark_warned(c, id.get(), percent).await,
            Conn::Sqlite(c) => sqlite::mark_warned(c, id.get(), percent).await,
        }
    }

    /// Marks a planned renewal applied; `false` when an earlier attempt applied it.
    pub async fn apply_renewal(&mut self, origin_key: &str) -> Result<bool, SubscriptionError> {
        match self.conn()? {
            Conn::Postgres(c) => postgres::apply_renewal(c, origin_key).await,
            Conn::Sqlite(c) => sqlite::apply_renewal(c, origin_key).await,
        }
    }
}

/// Insert with a placeholder name (unique, never committed), derive the name from the id,
/// write it, read the row back: all on `conn`, which the caller holds in one transaction.
async fn create(
    conn: Conn<'_>,
    key: &SecretKey,
    new: &NewSubscription,
) -> Result<Created, SubscriptionError> {
    check_new(new)?;
    let placeholder = format!("pending-{:032x}", fastrand::u128(..));
    let name_of = |id: i64| {
        SubscriptionId::try_from(id)
            .map(|id| key.client_name(id))
            .map_err(|detail| SubscriptionError::Corrupt {
                id,
                what: "id",
                detail,
            })
    };
    let missing = |id: i64| SubscriptionError::Corrupt {
        id,
        what: "row",
        detail: "vanished inside its own transaction".to_string(),
    };
    match conn {
        Conn::Postgres(c) => {
            let Some(id) = postgres::insert(c, new, &placeholder).await? else {
                return existing(postgres::get_by_origin(c, origin(new)?).await?);
            };
            postgres::set_client_name(c, id, name_of(id)?.expose()).await?;
            let subscription = postgres::get(c, id).await?.ok_or_else(|| missing(id))?;
            Ok(Created {
                subscription,
                created: true,
            })
        }
        Conn::Sqlite(c) => {
            let Some(id) = sqlite::insert(c, new, &placeholder).await? else {
                return existing(sqlite::get_by_origin(c, origin(new)?).await?);
            };
            sqlite::set_client_name(c, id, name_of(id)?.expose()).await?;
            let subscription = sqlite::get(c, id).await?.ok_or_else(|| missing(id))?;
            Ok(Created {
                subscription,
                created: true,
            })
        }
    }
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

fn flags_json(flags: &BTreeSet<Flag>) -> String {
    let list: Vec<&str> = flags.iter().map(|f| f.as_str()).collect();
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".to_string())
}

/// Flags as stored; names this jobq does not know (a newer one wrote them) are skipped.
fn parse_flags(id: i64, json: &str) -> Result<BTreeSet<Flag>, SubscriptionError> {
    let names: Vec<String> =
        serde_json::from_str(json).map_err(|e| SubscriptionError::Corrupt {
            id,
            what: "flags",
            detail: e.to_string(),
        })?;
    Ok(names
        .iter()
        .filter_map(|n| serde_json::from_value(serde_json::Value::String(n.clone())).ok())
        .collect())
}

/// The columns every read selects, in this order.
const COLUMNS: &str = "id, platform, user_id, panel, plan, client_name, origin_key, volume_bytes, \
                       expiry, status, subscription_link, usage_up, usage_down, panel_enabled, \
                       last_synced_at, flags, usage_warned_percent, created_at, updated_at";

/// A row's fields once read, before checking.
struct RawRow {
    id: i64,
    platform: String,
    user_id: i64,
    panel: String,
    plan: String,
    client_name: String,
    origin_key: Option<String>,
    volume_bytes: i64,
    expiry: Option<DateTime<Utc>>,
    status: String,
    subscription_link: Option<String>,
    usage_up: i64,
    usage_down: i64,
    panel_enabled: Option<bool>,
    last_synced_at: Option<DateTime<Utc>>,
    flags: String,
    usage_warned_percent: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl RawRow {
    fn check(self) -> Result<Subscription, SubscriptionError> {
        let id = self.id;
        let corrupt = |what: &'static str| {
            move |detail: String| SubscriptionError::Corrupt { id, what, detail }
        };
        Ok(Subscription {
            id: SubscriptionId::try_from(id).map_err(corrupt("id"))?,
            platform: Platform::parse(&self.platform).map_err(corrupt("platform"))?,
            user_id: UserId::try_from(self.user_id).map_err(corrupt("user_id"))?,
            panel: self.panel,
            plan: self.plan,
            client_name: ClientName(self.client_name),
            origin_key: self.origin_key,
            volume_bytes: self.volume_bytes,
            expiry: self.expiry,
            status: self.status.parse().map_err(corrupt("status"))?,
            subscription_link: self.subscription_link.map(SubscriptionLink),
            usage_up: self.usage_up,
            usage_down: self.usage_down,
            panel_enabled: self.panel_enabled,
            last_synced_at: self.last_synced_at,
            flags: parse_flags(id, &self.flags)?,
            usage_warned_percent: self.usage_warned_percent,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
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
        let json = flags_json(&flags);
        assert_eq!(json, r#"["missing_on_panel","duplicate_on_panel"]"#);
        assert_eq!(parse_flags(1, &json).expect("parses"), flags);
        // A flag from a newer jobq is skipped, not an error.
        let newer = parse_flags(1, r#"["disabled_on_panel","from_the_future"]"#).expect("parses");
        assert_eq!(newer, [Flag::DisabledOnPanel].into());
        assert!(parse_flags(1, "{").is_err());
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
