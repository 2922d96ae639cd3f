//! What the bots keep beside the queue (migration 0004): orders placed with `/buy`, each chat's
//! dialogue state, and the bot admins added at run time. Both backends, one behaviour: the SQL
//! is the same text on both (`$N` placeholders, which SQLite reads as numbered parameters);
//! only times differ (TIMESTAMPTZ on PostgreSQL, INTEGER microseconds on SQLite), which
//! [`on_conn!`] binds per backend.
//!
//! An order's decision is one transaction: the status moves only from `pending_approval`, the
//! provision job (key `order:ID`) is enqueued and the audit entry written with it, so two
//! admins pressing Approve at once enqueue one job and the second is told who decided.
//! After approval the order's status follows its job and the subscription it produced
//! ([`Orders::refresh`]): `provisioning` → `active` or `failed`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::audit::AuditEntry;
use crate::kinds::{Platform, ProvisionClient, SendDm, SubscriptionId, UserId};
use crate::queue::{JobTx, Queue, QueueError};
use crate::subscriptions::{SubscriptionError, SubscriptionStatus, Subscriptions};
use crate::{EnqueueOptions, JobState};

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

/// The customer's DM about the decision on order `id`: a `send_dm` job committed with the
/// decision, so a bot that dies right after deciding still tells the customer, once.
fn decision_dm_options(id: i64) -> EnqueueOptions {
    EnqueueOptions {
        key: Some(format!("order_decision:{id}")),
        ..EnqueueOptions::default()
    }
}

/// The idempotency key of order `id`'s provision job.
pub fn job_key(id: i64) -> String {
    format!("order:{id}")
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
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Subscriptions(#[from] SubscriptionError),
    /// A stored row this code cannot read (written by hand, or by a newer jobq).
    #[error("order {id}: stored {what} is not valid: {detail}")]
    Corrupt {
        id: i64,
        what: &'static str,
        detail: String,
    },
}

use crate::db::{Conn, Db, DbError, Fields};

/// Runs `$body` on the backend's connection `$c`, with `$now` the current time as that backend
/// stores it. The body is the same text on both; each arm type-checks it for its database.
macro_rules! on_conn {
    ($conn:expr, |$c:ident, $now:ident| $body:expr) => {
        match $conn {
            Conn::Postgres($c) => {
                #[allow(unused_variables)]
                let $now = Utc::now();
                $body
            }
            Conn::Sqlite($c) => {
                #[allow(unused_variables)]
                let $now = Utc::now().timestamp_micros();
                $body
            }
        }
    };
}

/// Runs `$body` with `$c` a connection acquired from the database.
macro_rules! with_pool {
    ($db:expr, |$c:ident| $body:expr) => {{
        let mut acquired = $db.acquire().await?;
        let $c = acquired.conn();
        $body
    }};
}

fn conn_of(tx: &mut JobTx) -> Result<Conn<'_>, OrderError> {
    Ok(tx.conn())
}

/// A time column, refused with its row and column named when it does not hold a time.
fn time<R: sqlx::Row>(r: &R, id: i64, column: &'static str) -> Result<DateTime<Utc>, DbError>
where
    &'static str: sqlx::ColumnIndex<R>,
    crate::db::Stamp: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let stamp: crate::db::Stamp = Fields::new(r, "jobq_orders", id).get(column)?;
    Ok(stamp.into())
}

const ORDER_COLUMNS: &str = "id, platform, user_id, chat_id, plan, kind, subscription_id, \
     status, origin_key, decided_by, job_id, created_at, updated_at";

/// Reads an order from a row of either backend.
macro_rules! order_row {
    ($r:expr) => {{
        let r = $r;
        let id: i64 = r.try_get("id")?;
        let corrupt = |what: &'static str, detail: String| OrderError::Corrupt { id, what, detail };
        let platform: String = r.try_get("platform")?;
        let user_id: i64 = r.try_get("user_id")?;
        let kind: String = r.try_get("kind")?;
        let status: String = r.try_get("status")?;
        let subscription: Option<i64> = r.try_get("subscription_id")?;
        Ok::<Order, OrderError>(Order {
            id,
            platform: Platform::parse(&platform).map_err(|e| corrupt("platform", e))?,
            user_id: UserId::parse(user_id).map_err(|e| corrupt("user_id", e))?,
            chat_id: r.try_get("chat_id")?,
            plan: r.try_get("plan")?,
            kind: kind.parse().map_err(|e| corrupt("kind", e))?,
            subscription_id: subscription
                .map(SubscriptionId::parse)
                .transpose()
                .map_err(|e| corrupt("subscription_id", e))?,
            status: status.parse().map_err(|e| corrupt("status", e))?,
            origin_key: r.try_get("origin_key")?,
            decided_by: r.try_get("decided_by")?,
            job_id: r.try_get("job_id")?,
            created_at: time(r, id, "created_at")?,
            updated_at: time(r, id, "updated_at")?,
        })
    }};
}

async fn get_order(conn: Conn<'_>, id: i64) -> Result<Option<Order>, OrderError> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM jobq_orders WHERE id = $1");
    on_conn!(conn, |c, now| {
        let row = sqlx::query(&sql).bind(id).fetch_optional(&mut *c).await?;
        row.as_ref().map(|r| order_row!(r)).transpose()
    })
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
        let inserted: Option<Order> = on_conn!(conn_of(&mut tx)?, |c, now| {
            let row = sqlx::query(&sql)
                .bind(new.platform.as_str())
                .bind(new.user_id.get())
                .bind(new.chat_id)
                .bind(&new.plan)
                .bind(new.kind.as_str())
                .bind(new.subscription_id.map(SubscriptionId::get))
                .bind(&new.origin_key)
                .bind(now)
                .fetch_optional(&mut *c)
                .await?;
            row.as_ref().map(|r| order_row!(r)).transpose()?
        });
        if let Some(order) = inserted {
            let text = note(&order);
            for admin in admins {
                insert_notice(
                    conn_of(&mut tx)?,
                    order.id,
                    *admin,
                    0,
                    NoticeWhat::Message,
                    &text,
                )
                .await?;
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
                OrderError::Database(sqlx::Error::Protocol(
                    "an order's origin key was taken but no order holds it".into(),
                ))
            })
    }

    pub async fn get(&self, id: i64) -> Result<Option<Order>, OrderError> {
        with_pool!(self.db, |conn| get_order(conn, id).await)
    }

    pub async fn by_origin(&self, origin_key: &str) -> Result<Option<Order>, OrderError> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM jobq_orders WHERE origin_key = $1");
        with_pool!(self.db, |conn| on_conn!(conn, |c, now| {
            let row = sqlx::query(&sql)
                .bind(origin_key)
                .fetch_optional(&mut *c)
                .await?;
            row.as_ref().map(|r| order_row!(r)).transpose()
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
        with_pool!(self.db, |conn| on_conn!(conn, |c, now| {
            let rows = sqlx::query(&sql)
                .bind(platform.as_str())
                .bind(user_id.get())
                .bind(i64::from(limit))
                .fetch_all(&mut *c)
                .await?;
            rows.iter().map(|r| order_row!(r)).collect()
        }))
    }

    /// Approves a pending order: in one transaction the status becomes `approved`, `job` is
    /// enqueued with key `order:ID` (and its id recorded), `tell` (the customer's DM) with key
    /// `order_decision:ID`, and `audit` written. Anything but
    /// `pending_approval` is left as it is and returned as [`Decision::AlreadyDecided`].
    pub async fn approve(
        &self,
        id: i64,
        admin: i64,
        job: &ProvisionClient,
        tell: &SendDm,
        audit: &AuditEntry,
    ) -> Result<Decision, OrderError> {
        let mut tx = self.queue.begin().await?;
        if !decide(conn_of(&mut tx)?, id, admin, OrderStatus::Approved).await? {
            tx.rollback().await?;
            return self.already(id).await;
        }
        let options = EnqueueOptions {
            key: Some(job_key(id)),
            ..EnqueueOptions::default()
        };
        let enqueued = tx.enqueue(job, options).await?;
        tx.enqueue(tell, decision_dm_options(id)).await?;
        set_job(conn_of(&mut tx)?, id, enqueued.id).await?;
        write_audit(&mut tx, audit, 1).await?;
        let order = get_order(conn_of(&mut tx)?, id).await?;
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
        if !decide(conn_of(&mut tx)?, id, admin, OrderStatus::Rejected).await? {
            tx.rollback().await?;
            return self.already(id).await;
        }
        tx.enqueue(tell, decision_dm_options(id)).await?;
        write_audit(&mut tx, audit, 1).await?;
        let order = get_order(conn_of(&mut tx)?, id).await?;
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
        let job_state = self.queue.driver().job(job_id).await?.map(|j| j.state);
        let produced = match order.subscription_id {
            Some(id) => Some(id.get()),
            None => self.subscription_by_origin(&order.job_key()).await?,
        };
        let subscription = match produced.map(SubscriptionId::parse).transpose() {
            Ok(Some(id)) => self.subscriptions.get(id).await?.map(|s| s.status),
            Ok(None) => None,
            Err(detail) => {
                return Err(OrderError::Corrupt {
                    id,
                    what: "subscription_id",
                    detail,
                });
            }
        };
        let status = carried_status(job_state, subscription, order.status);
        if status == order.status && produced == order.subscription_id.map(SubscriptionId::get) {
            return Ok(Some(order));
        }
        let sql = "UPDATE jobq_orders SET status = $2, subscription_id = $3, updated_at = $4
                   WHERE id = $1";
        with_pool!(self.db, |conn| on_conn!(conn, |c, now| {
            sqlx::query(sql)
                .bind(id)
                .bind(status.as_str())
                .bind(produced)
                .bind(now)
                .execute(&mut *c)
                .await?;
        }));
        self.get(id).await
    }

    async fn subscription_by_origin(&self, key: &str) -> Result<Option<i64>, OrderError> {
        let sql = "SELECT id FROM jobq_subscriptions WHERE origin_key = $1";
        with_pool!(self.db, |conn| on_conn!(conn, |c, now| {
            Ok(sqlx::query_scalar(sql)
                .bind(key)
                .fetch_optional(&mut *c)
                .await?)
        }))
    }

    /// Records a receipt message for an order: `true` the first time (forward it then),
    /// `false` when it was recorded before (a redelivered update).
    pub async fn add_receipt(&self, order: i64, message_id: i64) -> Result<bool, OrderError> {
        self.receive(order, message_id, &[], "").await
    }

    /// Records a receipt as [`Orders::add_receipt`] and, in the same transaction, for each of
    /// `admins` a forward of the receipt message and then a notice with `text` and the
    /// order's buttons. A receipt recorded before gets no new notices.
    pub async fn receive(
        &self,
        order: i64,
        message_id: i64,
        admins: &[i64],
        text: &str,
    ) -> Result<bool, OrderError> {
        let sql = "INSERT INTO jobq_order_receipts (order_id, message_id, received_at)
                   VALUES ($1, $2, $3) ON CONFLICT (order_id, message_id) DO NOTHING";
        let mut tx = self.queue.begin().await?;
        let added = on_conn!(conn_of(&mut tx)?, |c, now| {
            sqlx::query(sql)
                .bind(order)
                .bind(message_id)
                .bind(now)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        if added != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        for admin in admins {
            let conn = conn_of(&mut tx)?;
            insert_notice(conn, order, *admin, message_id, NoticeWhat::Forward, "").await?;
            let conn = conn_of(&mut tx)?;
            insert_notice(conn, order, *admin, message_id, NoticeWhat::Message, text).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The receipt message ids of an order, oldest first.
    pub async fn receipts(&self, order: i64) -> Result<Vec<i64>, OrderError> {
        let sql = "SELECT message_id FROM jobq_order_receipts WHERE order_id = $1
                   ORDER BY received_at, message_id";
        with_pool!(self.db, |conn| on_conn!(conn, |c, now| {
            Ok(sqlx::query_scalar(sql)
                .bind(order)
                .fetch_all(&mut *c)
                .await?)
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
    conn: Conn<'_>,
    id: i64,
    admin: i64,
    status: OrderStatus,
) -> Result<bool, OrderError> {
    let sql = "UPDATE jobq_orders SET status = $2, decided_by = $3, updated_at = $4
               WHERE id = $1 AND status = 'pending_approval'";
    let changed = on_conn!(conn, |c, now| {
        sqlx::query(sql)
            .bind(id)
            .bind(status.as_str())
            .bind(admin)
            .bind(now)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(changed == 1)
}

async fn set_job(conn: Conn<'_>, id: i64, job: i64) -> Result<(), OrderError> {
    let sql = "UPDATE jobq_orders SET job_id = $2 WHERE id = $1";
    on_conn!(conn, |c, now| {
        sqlx::query(sql).bind(id).bind(job).execute(&mut *c).await?;
    });
    Ok(())
}

/// Writes an audit entry inside the caller's transaction (the change it records commits, or
/// rolls back, with it). `count` is the number of things changed.
pub async fn write_audit(tx: &mut JobTx, entry: &AuditEntry, count: i64) -> Result<(), OrderError> {
    let sql = "INSERT INTO jobq_audit (at, actor, surface, action, target, count)
               VALUES ($1, $2, $3, $4, $5, $6)";
    on_conn!(conn_of(tx)?, |c, now| {
        sqlx::query(sql)
            .bind(now)
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

// ---------------------------------------------------------------------------------------------
// Admin notices (migration 0005)

/// What a notice sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoticeWhat {
    Message,
    Forward,
}

impl NoticeWhat {
    const fn as_str(self) -> &'static str {
        match self {
            NoticeWhat::Message => "message",
            NoticeWhat::Forward => "forward",
        }
    }
}

/// A message to an admin about a pending order, claimed for sending by
/// [`Orders::claim_notices`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub id: i64,
    pub order_id: i64,
    /// The admin's user id (their private chat with the bot).
    pub admin_id: i64,
    /// The customer's chat (where a receipt to forward is).
    pub customer_chat: i64,
    pub kind: NoticeKind,
    /// Sends tried, this one included.
    pub attempts: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeKind {
    /// `text`, with the order's Approve/Reject buttons.
    Message { text: String },
    /// The customer's receipt message, forwarded.
    Forward { message_id: i64 },
}

/// A time as a backend stores it, moved on by a duration (for `next_attempt_at`).
trait Stamp: Copy {
    fn after(self, delay: std::time::Duration) -> Self;
    fn before(self, delay: std::time::Duration) -> Self;
    /// How long from `now` until `self` (zero when past).
    fn since(self, now: Self) -> std::time::Duration;
}

impl Stamp for DateTime<Utc> {
    fn after(self, delay: std::time::Duration) -> Self {
        let delay = chrono::TimeDelta::from_std(delay).unwrap_or(chrono::TimeDelta::days(1));
        self.checked_add_signed(delay).unwrap_or(self)
    }
    fn before(self, delay: std::time::Duration) -> Self {
        let delay = chrono::TimeDelta::from_std(delay).unwrap_or(chrono::TimeDelta::days(1));
        self.checked_sub_signed(delay).unwrap_or(self)
    }
    fn since(self, now: Self) -> std::time::Duration {
        (self - now).to_std().unwrap_or_default()
    }
}

impl Stamp for i64 {
    fn after(self, delay: std::time::Duration) -> Self {
        self.saturating_add(i64::try_from(delay.as_micros()).unwrap_or(i64::MAX))
    }
    fn before(self, delay: std::time::Duration) -> Self {
        self.saturating_sub(i64::try_from(delay.as_micros()).unwrap_or(i64::MAX))
    }
    fn since(self, now: Self) -> std::time::Duration {
        std::time::Duration::from_micros(u64::try_from(self.saturating_sub(now)).unwrap_or(0))
    }
}

/// How long from `now` until `next`, if any.
fn until<T: Stamp>(next: Option<T>, now: T) -> Option<std::time::Duration> {
    next.map(|at| at.since(now))
}

async fn insert_notice(
    conn: Conn<'_>,
    order: i64,
    admin: i64,
    receipt_message_id: i64,
    what: NoticeWhat,
    text: &str,
) -> Result<(), OrderError> {
    let sql = "INSERT INTO jobq_order_notices
                   (order_id, admin_id, receipt_message_id, what, text, next_attempt_at, created_at)
               VALUES ($1, $2, $3, $4, $5, $6, $6)
               ON CONFLICT (order_id, receipt_message_id, what, admin_id) DO NOTHING";
    on_conn!(conn, |c, now| {
        sqlx::query(sql)
            .bind(order)
            .bind(admin)
            .bind(receipt_message_id)
            .bind(what.as_str())
            .bind(text)
            .bind(now)
            .execute(&mut *c)
            .await?;
    });
    Ok(())
}

/// Notices still to send whose order is still pending (a decided order's Approve/Reject
/// buttons would only be stale).
const NOTICES_PENDING: &str = "FROM jobq_order_notices n JOIN jobq_orders o ON o.id = n.order_id
     WHERE n.sent_at IS NULL AND n.gave_up_at IS NULL AND o.status = 'pending_approval'";

impl Orders {
    /// Claims up to `limit` notices that are due, oldest first: each one's attempt is counted
    /// and its next attempt pushed `lease` out, so a process that dies while sending leaves it
    /// to be retried after the lease (it may then arrive twice: the one window), and two
    /// processes never claim the same notice at once.
    pub async fn claim_notices(
        &self,
        limit: u32,
        lease: std::time::Duration,
    ) -> Result<Vec<Notice>, OrderError> {
        let due = format!(
            "SELECT n.id, n.order_id, n.admin_id, o.chat_id, n.receipt_message_id, n.what, n.text
             {NOTICES_PENDING} AND n.next_attempt_at <= $1 ORDER BY n.id LIMIT $2"
        );
        let claim = "UPDATE jobq_order_notices SET attempts = attempts + 1, next_attempt_at = $2
                     WHERE id = $1 AND sent_at IS NULL AND gave_up_at IS NULL
                       AND next_attempt_at <= $3
                     RETURNING attempts";
        type DueRow = (i64, i64, i64, i64, i64, String, String);
        let rows: Vec<DueRow> = with_pool!(self.db, |conn| on_conn!(conn, |c, now| {
            sqlx::query_as(&due)
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&mut *c)
                .await?
        }));
        let mut claimed = Vec::new();
        for (id, order_id, admin_id, customer_chat, receipt, what, text) in rows {
            let attempts: Option<i32> = with_pool!(self.db, |conn| on_conn!(conn, |c, now| {
                sqlx::query_scalar(claim)
                    .bind(id)
                    .bind(now.after(lease))
                    .bind(now)
                    .fetch_optional(&mut *c)
                    .await?
            }));
            let Some(attempts) = attempts else {
                continue; // another process claimed it first
            };
            let kind = match what.as_str() {
                "forward" => NoticeKind::Forward {
                    message_id: receipt,
                },
                _ => NoticeKind::Message { text },
            };
            claimed.push(Notice {
                id,
                order_id,
                admin_id,
                customer_chat,
                kind,
                attempts,
            });
        }
        Ok(claimed)
    }

    /// How long until the next pending notice is due (zero if one is), `None` if none waits.
    pub async fn next_notice_in(&self) -> Result<Option<std::time::Duration>, OrderError> {
        let sql = format!("SELECT MIN(n.next_attempt_at) {NOTICES_PENDING}");
        with_pool!(self.db, |conn| on_conn!(conn, |c, now| {
            let next = sqlx::query_scalar(&sql).fetch_one(&mut *c).await?;
            Ok(until(next, now))
        }))
    }

    /// A claimed notice went out.
    pub async fn notice_sent(&self, id: i64) -> Result<(), OrderError> {
        let sql = "UPDATE jobq_order_notices SET sent_at = $2, last_error = NULL WHERE id = $1";
        with_pool!(self.db, |conn| on_conn!(conn, |c, now| {
            sqlx::query(sql).bind(id).bind(now).execute(&mut *c).await?;
        }));
        Ok(())
    }

    /// A claimed notice failed: try again after `retry_in`. `error` must be free of secrets.
    pub async fn notice_failed(
        &self,
        id: i64,
        retry_in: std::time::Duration,
        error: &str,
    ) -> Result<(), OrderError> {
        let sql = "UPDATE jobq_order_notices SET next_attempt_at = $2, last_error = $3
                   WHERE id = $1 AND sent_at IS NULL";
        with_pool!(self.db, |conn| on_conn!(conn, |c, now| {
            sqlx::query(sql)
                .bind(id)
                .bind(now.after(retry_in))
                .bind(error)
                .execute(&mut *c)
                .await?;
        }));
        Ok(())
    }

    /// Forgets notices sent or given up more than `older_than` ago (a redelivered update is
    /// days old at most, so their rows are no longer needed to keep it from notifying twice).
    /// Returns how many were deleted.
    pub async fn prune_notices(&self, older_than: std::time::Duration) -> Result<u64, OrderError> {
        let sql = "DELETE FROM jobq_order_notices WHERE sent_at < $1 OR gave_up_at < $1";
        with_pool!(self.db, |conn| on_conn!(conn, |c, now| {
            let done = sqlx::query(sql)
                .bind(now.before(older_than))
                .execute(&mut *c)
                .await?;
            Ok(done.rows_affected())
        }))
    }

    /// A claimed notice cannot be sent (the admin blocked the bot, say): not tried again.
    pub async fn notice_given_up(&self, id: i64, error: &str) -> Result<(), OrderError> {
        let sql = "UPDATE jobq_order_notices SET gave_up_at = $2, last_error = $3
                   WHERE id = $1 AND sent_at IS NULL";
        with_pool!(self.db, |conn| on_conn!(conn, |c, now| {
            sqlx::query(sql)
                .bind(id)
                .bind(now)
                .bind(error)
                .execute(&mut *c)
                .await?;
        }));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Dialogues

/// Each chat's dialogue state with a bot, as JSON the bot writes (opaque here). Cheap to clone.
#[derive(Clone)]
pub struct Dialogues {
    db: Db,
}

impl Dialogues {
    pub fn new(queue: &Queue) -> Result<Self, OrderError> {
        Ok(Dialogues {
            db: queue.db().clone(),
        })
    }

    pub async fn get(&self, platform: Platform, chat: i64) -> Result<Option<String>, OrderError> {
        let sql = "SELECT state FROM jobq_bot_dialogues WHERE platform = $1 AND chat_id = $2";
        with_pool!(self.db, |conn| on_conn!(conn, |c, now| {
            Ok(sqlx::query_scalar(sql)
                .bind(platform.as_str())
                .bind(chat)
                .fetch_optional(&mut *c)
                .await?)
        }))
    }

    pub async fn set(&self, platform: Platform, chat: i64, state: &str) -> Result<(), OrderError> {
        let sql = "INSERT INTO jobq_bot_dialogues (platform, chat_id, state, updated_at)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (platform, chat_id)
                   DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at";
        with_pool!(self.db, |conn| on_conn!(conn, |c, now| {
            sqlx::query(sql)
                .bind(platform.as_str())
                .bind(chat)
                .bind(state)
                .bind(now)
                .execute(&mut *c)
                .await?;
        }));
        Ok(())
    }

    pub async fn clear(&self, platform: Platform, chat: i64) -> Result<(), OrderError> {
        let sql = "DELETE FROM jobq_bot_dialogues WHERE platform = $1 AND chat_id = $2";
        with_pool!(self.db, |conn| on_conn!(conn, |c, now| {
            sqlx::query(sql)
                .bind(platform.as_str())
                .bind(chat)
                .execute(&mut *c)
                .await?;
        }));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Bot admins

/// The bot admins added at run time (the config's admins are admins too, and decide who else
/// is). Cheap to clone.
#[derive(Clone)]
pub struct BotAdmins {
    db: Db,
    queue: Queue,
}

impl BotAdmins {
    pub fn new(queue: &Queue) -> Result<Self, OrderError> {
        Ok(BotAdmins {
            db: queue.db().clone(),
            queue: queue.clone(),
        })
    }

    /// The admins in the database, by user id.
    pub async fn list(&self, platform: Platform) -> Result<Vec<i64>, OrderError> {
        let sql = "SELECT user_id FROM jobq_bot_admins WHERE platform = $1 ORDER BY user_id";
        with_pool!(self.db, |conn| on_conn!(conn, |c, now| {
            Ok(sqlx::query_scalar(sql)
                .bind(platform.as_str())
                .fetch_all(&mut *c)
                .await?)
        }))
    }

    pub async fn contains(&self, platform: Platform, user: i64) -> Result<bool, OrderError> {
        let sql = "SELECT 1 FROM jobq_bot_admins WHERE platform = $1 AND user_id = $2";
        let found: Option<i32> = with_pool!(self.db, |conn| on_conn!(conn, |c, now| {
            sqlx::query_scalar(sql)
                .bind(platform.as_str())
                .bind(user)
                .fetch_optional(&mut *c)
                .await?
        }));
        Ok(found.is_some())
    }

    /// Adds an admin (with `audit`, in one transaction): `false` when already one.
    pub async fn add(
        &self,
        platform: Platform,
        user: UserId,
        by: i64,
        audit: &AuditEntry,
    ) -> Result<bool, OrderError> {
        let sql = "INSERT INTO jobq_bot_admins (platform, user_id, added_by, added_at)
                   VALUES ($1, $2, $3, $4) ON CONFLICT (platform, user_id) DO NOTHING";
        let mut tx = self.queue.begin().await?;
        let added = on_conn!(conn_of(&mut tx)?, |c, now| {
            sqlx::query(sql)
                .bind(platform.as_str())
                .bind(user.get())
                .bind(by)
                .bind(now)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        write_audit(&mut tx, audit, i64::try_from(added).unwrap_or(1)).await?;
        tx.commit().await?;
        Ok(added == 1)
    }

    /// Removes an admin (with `audit`, in one transaction): `false` when not one.
    pub async fn remove(
        &self,
        platform: Platform,
        user: UserId,
        audit: &AuditEntry,
    ) -> Result<bool, OrderError> {
        let sql = "DELETE FROM jobq_bot_admins WHERE platform = $1 AND user_id = $2";
        let mut tx = self.queue.begin().await?;
        let removed = on_conn!(conn_of(&mut tx)?, |c, now| {
            sqlx::query(sql)
                .bind(platform.as_str())
                .bind(user.get())
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        write_audit(&mut tx, audit, i64::try_from(removed).unwrap_or(1)).await?;
        tx.commit().await?;
        Ok(removed == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        use OrderStatus::*;
        use SubscriptionStatus as S;
        let sub = Some(S::Active);
        assert_eq!(
            carried_status(Some(JobState::Running), None, Approved),
            Provisioning
        );
        assert_eq!(
            carried_status(Some(JobState::Retrying), Some(S::Provisioning), Approved),
            Provisioning
        );
        assert_eq!(
            carried_status(Some(JobState::Completed), sub, Provisioning),
            Active
        );
        assert_eq!(
            carried_status(Some(JobState::Failed), sub, Provisioning),
            Failed
        );
        assert_eq!(
            carried_status(Some(JobState::Discarded), None, Provisioning),
            Failed
        );
        // Retried by an admin after failing: provisioning again.
        assert_eq!(
            carried_status(Some(JobState::Available), None, Failed),
            Provisioning
        );
        // Pruned: completed jobs are pruned, failed ones are not.
        assert_eq!(carried_status(None, sub, Provisioning), Active);
        assert_eq!(carried_status(None, None, Provisioning), Active);
        assert_eq!(carried_status(None, sub, Failed), Failed);
        // The job completed: the subscription decides.
        assert_eq!(
            carried_status(Some(JobState::Completed), Some(S::Provisioning), Approved),
            Provisioning
        );
        assert_eq!(
            carried_status(Some(JobState::Completed), Some(S::Failed), Provisioning),
            Failed
        );
        for later in [S::Expired, S::Disabled] {
            assert_eq!(
                carried_status(Some(JobState::Completed), Some(later), Provisioning),
                Active,
                "the order delivered; the subscription's own state is shown beside it"
            );
        }
        assert_eq!(
            carried_status(None, Some(S::Provisioning), Provisioning),
            Provisioning
        );
    }
}
