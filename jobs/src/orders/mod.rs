//! What the bots keep beside the queue (migration 0004): orders placed with `/buy`, here; each
//! chat's dialogue state ([`Dialogues`], `dialogues.rs`) and the bot admins added at run time
//! ([`BotAdmins`], `admins.rs`); and the admins' notices of orders (migration 0005, [`Notice`],
//! `notices.rs`). One SQL text per statement for both backends, with times bound as
//! [`Stamp`]s (see [`crate::db`]); a stored value that does not read is an error naming its
//! table, row and column, never a default.
//!
//! An order's decision is one transaction: the status moves only from `pending_approval`, the
//! provision job (key [`job_key`], `order:ID`) is enqueued and the audit entry written with it,
//! so two admins pressing Approve at once enqueue one job and the second is told who decided.
//! After approval the order's status follows its job and the subscription it produced
//! ([`Orders::refresh`]): `provisioning` → `active` or `failed`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::audit::AuditEntry;
use crate::db::{Db, DbError, Exec, Fields, Stamp, on_conn, row_id};
use crate::driver::Listed;
use crate::kinds::{Platform, ProvisionClient, SendDm, SubscriptionId, UserId};
use crate::queue::{JobTx, Queue, QueueError};
use crate::subscriptions::{SubscriptionError, SubscriptionStatus, Subscriptions};
use crate::{EnqueueOptions, JobState};

mod admins;
mod dialogues;
mod notices;

pub use admins::BotAdmins;
pub use dialogues::Dialogues;
pub use notices::{Notice, NoticeKind};

use notices::{NoticeWhat, insert_notice};

/// Where an order is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    PendingApproval,
    Approved,
    Rejected,
    Provisioning,
    Active,
    Failed,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::PendingApproval,
        OrderStatus::Approved,
        OrderStatus::Rejected,
        OrderStatus::Provisioning,
        OrderStatus::Active,
        OrderStatus::Failed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingApproval => "pending_approval",
            OrderStatus::Approved => "approved",
            OrderStatus::Rejected => "rejected",
            OrderStatus::Provisioning => "provisioning",
            OrderStatus::Active => "active",
            OrderStatus::Failed => "failed",
        }
    }

    /// As a customer reads it.
    pub const fn describe(self) -> &'static str {
        match self {
            OrderStatus::PendingApproval => "waiting for approval",
            OrderStatus::Approved => "approved",
            OrderStatus::Rejected => "rejected",
            OrderStatus::Provisioning => "being set up",
            OrderStatus::Active => "active",
            OrderStatus::Failed => "failed (an admin has been told)",
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrderStatus {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| format!("unknown order status {text:?}"))
    }
}

/// What an order buys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderKind {
    /// A new subscription.
    New,
    /// The same plan again on an existing subscription.
    Renew,
    /// Another plan on an existing subscription.
    Upgrade,
}

impl OrderKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderKind::New => "new",
            OrderKind::Renew => "renew",
            OrderKind::Upgrade => "upgrade",
        }
    }
}

impl FromStr for OrderKind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        [OrderKind::New, OrderKind::Renew, OrderKind::Upgrade]
            .into_iter()
            .find(|k| k.as_str() == text)
            .ok_or_else(|| format!("unknown order kind {text:?}"))
    }
}

/// One row of `jobq_orders`.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: i64,
    pub platform: Platform,
    pub user_id: UserId,
    /// The chat the customer ordered in (where the bot answers them).
    pub chat_id: i64,
    pub plan: String,
    pub kind: OrderKind,
    /// Renewed or upgraded; for a new order, the subscription it produced once known.
    pub subscription_id: Option<SubscriptionId>,
    pub status: OrderStatus,
    pub origin_key: String,
    /// The admin who approved or rejected it.
    pub decided_by: Option<i64>,
    /// The provision job approval enqueued.
    pub job_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Order {
    /// The provision job's idempotency key.
    pub fn job_key(&self) -> String {
        job_key(self.id)
    }
}

/// The idempotency key of order `id`'s provision job: `order:ID`. The worker makes it the
/// origin key of the subscription the job creates, which is how [`Orders::refresh`] finds a new
/// order's subscription.
pub fn job_key(id: i64) -> String {
    format!("order:{id}")
}

/// The idempotency key of the customer's DM about the decision on order `id`:
/// `order_decision:ID`. An order is decided once, so it is told once.
pub fn decision_key(id: i64) -> String {
    format!("order_decision:{id}")
}

/// The customer's DM about the decision on order `id`: a `send_dm` job committed with the
/// decision, so a bot that dies right after deciding still tells the customer, once.
fn decision_dm_options(id: i64) -> EnqueueOptions {
    EnqueueOptions {
        key: Some(decision_key(id)),
        ..EnqueueOptions::default()
    }
}

/// An order to place, in `pending_approval`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    pub platform: Platform,
    pub user_id: UserId,
    pub chat_id: i64,
    pub plan: String,
    pub kind: OrderKind,
    pub subscription_id: Option<SubscriptionId>,
    /// The dialogue that placed it: placing again with the same key returns the first order.
    pub origin_key: String,
}

/// What [`Orders::create`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub order: Order,
    /// `false` when the origin key had already placed this order.
    pub created: bool,
}

/// What an admin's decision did.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// This call decided: the order as it now is (approved with its job id, or rejected).
    Decided(Order),
    /// Someone decided before (or the order is past approval): the order as it is.
    AlreadyDecided(Order),
    NotFound,
}

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The database failed, or a stored row does not read ([`DbError::Corrupt`] names it).
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Subscriptions(#[from] SubscriptionError),
}

impl From<sqlx::Error> for OrderError {
    fn from(error: sqlx::Error) -> Self {
        OrderError::Db(DbError::Sqlx(error))
    }
}

const ORDER_COLUMNS: &str = "id, platform, user_id, chat_id, plan, kind, subscription_id, \
     status, origin_key, decided_by, job_id, created_at, updated_at";

/// An order from a row of `jobq_orders` ([`ORDER_COLUMNS`]) of either backend.
fn read_order<R: Row>(r: &R) -> Result<Order, DbError>
where
    &'static str: ColumnIndex<R>,
    i64: for<'a> Decode<'a, R::Database> + Type<R::Database>,
    String: for<'a> Decode<'a, R::Database> + Type<R::Database>,
    Stamp: for<'a> Decode<'a, R::Database> + Type<R::Database>,
{
    let id = row_id(r, "jobq_orders")?;
    let f = Fields::new(r, "jobq_orders", id);
    Ok(Order {
        id,
        platform: f.parse("platform", |name: String| Platform::parse(&name))?,
        user_id: f.parse("user_id", UserId::parse)?,
        chat_id: f.get("chat_id")?,
        plan: f.get("plan")?,
        kind: f.parse("kind", |kind: String| kind.parse::<OrderKind>())?,
        subscription_id: f.parse("subscription_id", |id: Option<i64>| {
            id.map(SubscriptionId::parse).transpose()
        })?,
        status: f.parse("status", |status: String| status.parse::<OrderStatus>())?,
        origin_key: f.get("origin_key")?,
        decided_by: f.get("decided_by")?,
        job_id: f.get("job_id")?,
        created_at: f.get::<Stamp>("created_at")?.into(),
        updated_at: f.get::<Stamp>("updated_at")?.into(),
    })
}

async fn get_order(exec: Exec<'_>, id: i64) -> Result<Option<Order>, OrderError> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM jobq_orders WHERE id = $1");
    Ok(on_conn!(exec, |c| {
        let row = sqlx::query(&sql).bind(id).fetch_optional(&mut *c).await?;
        row.as_ref().map(read_order).transpose()?
    }))
}

/// Reads and writes orders on the queue's database. Cheap to clone.
#[derive(Clone)]
pub struct Orders {
    db: Db,
    queue: Queue,
    subscriptions: Subscriptions,
}

impl Orders {
    pub fn new(queue: &Queue) -> Result<Self, OrderError> {
        Ok(Orders {
            db: queue.db().clone(),
            queue: queue.clone(),
            subscriptions: Subscriptions::new(queue)?,
        })
    }

    /// Places an order in `pending_approval`; with an origin key already used, returns that
    /// order with `created: false`.
    pub async fn create(&self, new: &NewOrder) -> Result<Placed, OrderError> {
        self.place(new, &[], |_| String::new()).await
    }

    /// Places an order as [`Orders::create`] and, in the same transaction, a notice to each of
    /// `admins` (the text `note` writes for the order, sent with its Approve/Reject buttons by
    /// [`Orders::claim_notices`]' caller). An order placed before gets no new notices: its own
    /// were written with it.
    pub async fn place(
        &self,
        new: &NewOrder,
        admins: &[i64],
        note: impl FnOnce(&Order) -> String,
    ) -> Result<Placed, OrderError> {
        let sql = format!(
            "INSERT INTO jobq_orders (platform, user_id, chat_id, plan, kind, subscription_id,
                                      origin_key, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
             ON CONFLICT (origin_key) DO NOTHING
             RETURNING {ORDER_COLUMNS}"
        );
        let mut tx = self.queue.begin().await?;
        let inserted: Option<Order> = on_conn!(tx.exec(), |c| {
            let row = sqlx::query(&sql)
                .bind(new.platform.as_str())
                .bind(new.user_id.get())
                .bind(new.chat_id)
                .bind(&new.plan)
                .bind(new.kind.as_str())
                .bind(new.subscription_id.map(SubscriptionId::get))
                .bind(&new.origin_key)
                .bind(Stamp::now())
                .fetch_optional(&mut *c)
                .await?;
            row.as_ref().map(read_order).transpose()?
        });
        if let Some(order) = inserted {
            let text = note(&order);
            for admin in admins {
                insert_notice(tx.exec(), order.id, *admin, 0, NoticeWhat::Message, &text).await?;
            }
            tx.commit().await?;
            return Ok(Placed {
                order,
                created: true,
            });
        }
        tx.rollback().await?;
        let existing = self.by_origin(&new.origin_key).await?;
        existing
            .map(|order| Placed {
                order,
                created: false,
            })
            .ok_or_else(|| {
                OrderError::from(sqlx::Error::Protocol(
                    "an order's origin key was taken but no order holds it".into(),
                ))
            })
    }

    pub async fn get(&self, id: i64) -> Result<Option<Order>, OrderError> {
        get_order(self.db.exec(), id).await
    }

    pub async fn by_origin(&self, origin_key: &str) -> Result<Option<Order>, OrderError> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM jobq_orders WHERE origin_key = $1");
        Ok(on_conn!(self.db.exec(), |c| {
            let row = sqlx::query(&sql)
                .bind(origin_key)
                .fetch_optional(&mut *c)
                .await?;
            row.as_ref().map(read_order).transpose()?
        }))
    }

    /// A user's orders, newest first, at most `limit`.
    pub async fn list_by_user(
        &self,
        platform: Platform,
        user_id: UserId,
        limit: u32,
    ) -> Result<Vec<Order>, OrderError> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM jobq_orders WHERE platform = $1 AND user_id = $2
             ORDER BY id DESC LIMIT $3"
        );
        Ok(on_conn!(self.db.exec(), |c| {
            let rows = sqlx::query(&sql)
                .bind(platform.as_str())
                .bind(user_id.get())
                .bind(i64::from(limit))
                .fetch_all(&mut *c)
                .await?;
            rows.iter()
                .map(read_order)
                .collect::<Result<Vec<_>, DbError>>()?
        }))
    }

    /// Approves a pending order: in one transaction the status becomes `approved`, `job` is
    /// enqueued with key [`job_key`] (and its id recorded), `tell` (the customer's DM) with key
    /// [`decision_key`], and `audit` written. Anything but `pending_approval` is left as it is
    /// and returned as [`Decision::AlreadyDecided`].
    pub async fn approve(
        &self,
        id: i64,
        admin: i64,
        job: &ProvisionClient,
        tell: &SendDm,
        audit: &AuditEntry,
    ) -> Result<Decision, OrderError> {
        let mut tx = self.queue.begin().await?;
        if !decide(tx.exec(), id, admin, OrderStatus::Approved).await? {
            tx.rollback().await?;
            return self.already(id).await;
        }
        let options = EnqueueOptions {
            key: Some(job_key(id)),
            ..EnqueueOptions::default()
        };
        let enqueued = tx.enqueue(job, options).await?;
        tx.enqueue(tell, decision_dm_options(id)).await?;
        set_job(tx.exec(), id, enqueued.id).await?;
        write_audit(&mut tx, audit, 1).await?;
        let order = get_order(tx.exec(), id).await?;
        tx.commit().await?;
        Ok(order.map_or(Decision::NotFound, Decision::Decided))
    }

    /// Rejects a pending order (with `audit`, in one transaction); as [`Orders::approve`].
    pub async fn reject(
        &self,
        id: i64,
        admin: i64,
        tell: &SendDm,
        audit: &AuditEntry,
    ) -> Result<Decision, OrderError> {
        let mut tx = self.queue.begin().await?;
        if !decide(tx.exec(), id, admin, OrderStatus::Rejected).await? {
            tx.rollback().await?;
            return self.already(id).await;
        }
        tx.enqueue(tell, decision_dm_options(id)).await?;
        write_audit(&mut tx, audit, 1).await?;
        let order = get_order(tx.exec(), id).await?;
        tx.commit().await?;
        Ok(order.map_or(Decision::NotFound, Decision::Decided))
    }

    async fn already(&self, id: i64) -> Result<Decision, OrderError> {
        Ok(match self.refresh(id).await? {
            Some(order) => Decision::AlreadyDecided(order),
            None => Decision::NotFound,
        })
    }

    /// Brings an approved order's status up to date with its job and the subscription it
    /// produced or renewed ([`carried_status`]: `provisioning` while the job runs or retries,
    /// or while the subscription is still being provisioned; `active` once the job completed
    /// and the subscription is past provisioning; `failed` when the job failed, was discarded
    /// or cancelled, or the subscription failed), records a new subscription's id, and returns
    /// the order.
    pub async fn refresh(&self, id: i64) -> Result<Option<Order>, OrderError> {
        let Some(order) = self.get(id).await? else {
            return Ok(None);
        };
        let Some(job_id) = order.job_id else {
            return Ok(Some(order));
        };
        let job = self.queue.driver().job(job_id).await?;
        let job_state = job.map(Listed::readable).transpose()?.map(|j| j.state);
        let produced = match order.subscription_id {
            Some(id) => Some(id),
            None => self.subscription_by_origin(&order.job_key()).await?,
        };
        let subscription = match produced {
            Some(id) => self.subscriptions.get(id).await?.map(|s| s.status),
            None => None,
        };
        let status = carried_status(job_state, subscription, order.status);
        if status == order.status && produced == order.subscription_id {
            return Ok(Some(order));
        }
        let sql = "UPDATE jobq_orders SET status = $2, subscription_id = $3, updated_at = $4
                   WHERE id = $1";
        on_conn!(self.db.exec(), |c| {
            sqlx::query(sql)
                .bind(id)
                .bind(status.as_str())
                .bind(produced.map(SubscriptionId::get))
                .bind(Stamp::now())
                .execute(&mut *c)
                .await?;
        });
        self.get(id).await
    }

    /// The subscription whose origin key is `key` (the one a provision job with that key
    /// created), if any.
    async fn subscription_by_origin(
        &self,
        key: &str,
    ) -> Result<Option<SubscriptionId>, OrderError> {
        let sql = "SELECT id FROM jobq_subscriptions WHERE origin_key = $1";
        Ok(on_conn!(self.db.exec(), |c| {
            let row = sqlx::query(sql).bind(key).fetch_optional(&mut *c).await?;
            row.as_ref()
                .map(|r| {
                    Fields::new(r, "jobq_subscriptions", key).parse("id", SubscriptionId::parse)
                })
                .transpose()?
        }))
    }
}

/// The status an approved order carries from its provision job and the subscription it
/// produced or renewed (`None` when there is none to read).
///
/// The job decides while it is unfinished or has failed. Once it completed, the subscription
/// does: still `provisioning` keeps the order `provisioning`, `failed` fails it, and `active`
/// (or any later state, `expired` or `disabled`: the order did deliver) makes it `active`.
fn carried_status(
    job: Option<JobState>,
    subscription: Option<SubscriptionStatus>,
    current: OrderStatus,
) -> OrderStatus {
    let delivered = match subscription {
        Some(SubscriptionStatus::Provisioning) => OrderStatus::Provisioning,
        Some(SubscriptionStatus::Failed) => OrderStatus::Failed,
        Some(
            SubscriptionStatus::Active | SubscriptionStatus::Expired | SubscriptionStatus::Disabled,
        )
        | None => OrderStatus::Active,
    };
    match job {
        Some(JobState::Completed) => delivered,
        Some(JobState::Failed | JobState::Discarded | JobState::Cancelled) => OrderStatus::Failed,
        Some(_) => OrderStatus::Provisioning,
        // Pruned after completion (failed jobs stay until an admin acts).
        None if current == OrderStatus::Failed => OrderStatus::Failed,
        None => delivered,
    }
}

/// Moves a pending order to `status`, by `admin`: `false` when it was not pending.
async fn decide(
    exec: Exec<'_>,
    id: i64,
    admin: i64,
    status: OrderStatus,
) -> Result<bool, OrderError> {
    let sql = "UPDATE jobq_orders SET status = $2, decided_by = $3, updated_at = $4
               WHERE id = $1 AND status = 'pending_approval'";
    let changed = on_conn!(exec, |c| {
        sqlx::query(sql)
            .bind(id)
            .bind(status.as_str())
            .bind(admin)
            .bind(Stamp::now())
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(changed == 1)
}

async fn set_job(exec: Exec<'_>, id: i64, job: i64) -> Result<(), OrderError> {
    let sql = "UPDATE jobq_orders SET job_id = $2 WHERE id = $1";
    on_conn!(exec, |c| {
        sqlx::query(sql).bind(id).bind(job).execute(&mut *c).await?;
    });
    Ok(())
}

/// Writes an audit entry inside the caller's transaction (the change it records commits, or
/// rolls back, with it). `count` is the number of things changed.
pub async fn write_audit(tx: &mut JobTx, entry: &AuditEntry, count: i64) -> Result<(), OrderError> {
    let sql = "INSERT INTO jobq_audit (at, actor, surface, action, target, count)
               VALUES ($1, $2, $3, $4, $5, $6)";
    on_conn!(tx.exec(), |c| {
        sqlx::query(sql)
            .bind(Stamp::now())
            .bind(&entry.actor)
            .bind(entry.surface)
            .bind(entry.action)
            .bind(&entry.target)
            .bind(count)
            .execute(&mut *c)
            .await?;
    });
    Ok(())
}

/// A migrated SQLite queue in a directory of its own, for the unit tests of this module and its
/// parts (the integration tests run both backends).
#[cfg(test)]
pub(crate) async fn test_queue() -> (tempfile::TempDir, Queue) {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("jobq.db").display());
    let settings =
        crate::configuration::Settings::load_with_env(None, [("JOBQ_DATABASE_URL", url)], &[])
            .expect("settings");
    let queue = Queue::connect(&settings.database).await.expect("connect");
    queue.migrate().await.expect("migrate");
    (dir, queue)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orders_keys_are_built_in_one_place_each() {
        assert_eq!(job_key(17), "order:17");
        assert_eq!(decision_key(17), "order_decision:17");
        assert_eq!(
            decision_dm_options(17).key.as_deref(),
            Some("order_decision:17")
        );
    }

    #[test]
    fn statuses_and_kinds_round_trip_their_names() {
        for status in OrderStatus::ALL {
            assert_eq!(status.as_str().parse::<OrderStatus>(), Ok(status));
        }
        for kind in [OrderKind::New, OrderKind::Renew, OrderKind::Upgrade] {
            assert_eq!(kind.as_str().parse::<OrderKind>(), Ok(kind));
        }
        assert!("paid".parse::<OrderStatus>().is_err());
    }

    #[test]
    fn an_approved_order_carries_its_jobs_and_subscriptions_outcome() {
        use JobState as J;
        use OrderStatus::*;
        use SubscriptionStatus as S;
        // Each case: the provision job's state, the subscription's status, the stored order
        // status, and the status shown.
        let check = |cases: &[(Option<JobState>, Option<S>, OrderStatus, OrderStatus)]| {
            for &(job, subscription, stored, shown) in cases {
                assert_eq!(
                    carried_status(job, subscription, stored),
                    shown,
                    "job {job:?}, subscription {subscription:?}, order {stored:?}"
                );
            }
        };
        // The job decides while it runs, and when it fails.
        check(&[
            (Some(J::Running), None, Approved, Provisioning),
            (
                Some(J::Retrying),
                Some(S::Provisioning),
                Approved,
                Provisioning,
            ),
            (Some(J::Failed), Some(S::Active), Provisioning, Failed),
            (Some(J::Discarded), None, Provisioning, Failed),
        ]);
        // Retried by an admin after failing: provisioning again.
        check(&[(Some(J::Available), None, Failed, Provisioning)]);
        // Pruned: completed jobs are pruned, failed ones are not.
        check(&[
            (None, Some(S::Active), Provisioning, Active),
            (None, None, Provisioning, Active),
            (None, Some(S::Active), Failed, Failed),
            (None, Some(S::Provisioning), Provisioning, Provisioning),
        ]);
        // The job completed: the subscription decides, but a later state of its own is shown
        // beside the delivered order.
        check(&[
            (Some(J::Completed), Some(S::Active), Provisioning, Active),
            (
                Some(J::Completed),
                Some(S::Provisioning),
                Approved,
                Provisioning,
            ),
            (Some(J::Completed), Some(S::Failed), Provisioning, Failed),
            (Some(J::Completed), Some(S::Expired), Provisioning, Active),
            (Some(J::Completed), Some(S::Disabled), Provisioning, Active),
        ]);
    }
}
