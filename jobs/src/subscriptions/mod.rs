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

use crate::db::{Db, DbError, Exec};
use crate::kinds::{Platform, SubscriptionId, UserId};
use crate::queue::{JobTx, Queue};
use crate::redact;
use crate::secret_key::SecretKey;

mod sql;
use sql::*;

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
    /// An enabled client of this name is on the panel while the subscription is `failed` or
    /// `expired` here: someone has access nobody pays for.
    EnabledOnPanel,
}

impl Flag {
    pub const fn as_str(self) -> &'static str {
        match self {
            Flag::MissingOnPanel => "missing_on_panel",
            Flag::DisabledOnPanel => "disabled_on_panel",
            Flag::DuplicateOnPanel => "duplicate_on_panel",
            Flag::EnabledOnPanel => "enabled_on_panel",
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
    /// The subscriptions a renewal or an expiry is changing now (running, waiting for a retry,
    /// or due), or changed since `since`: what the panel shows of them may be half done.
    pub async fn changing(
        &self,
        since: DateTime<Utc>,
    ) -> Result<BTreeSet<SubscriptionId>, SubscriptionError> {
        sql::changing(self.db.exec(), crate::db::Stamp::from(since)).await
    }

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
