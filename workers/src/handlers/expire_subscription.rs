//! `expire_subscription`: at a subscription's expiry, disable its client on the panel, mark the
//! row `expired` and DM the user, unless a renewal moved the expiry in the meantime.
//!
//! - The job is scheduled at the expiry by `provision_client` (and again by each renewal, with
//!   the new expiry: the old job then finds its expiry changed and does nothing).
//! - `"force": true` (an admin's immediate expiry) skips the time and expiry checks and expires
//!   whatever term the subscription is in now.
//! - A renewal and an expiry of one subscription never interleave: both hold the subscription
//!   (`lock_subscription`, across all workers) while they read the row, change the panel and
//!   write the row. Marking `expired` is still conditional on the expiry being unchanged, and
//!   if it changed (an admin's edit, a holder whose lock expired) after we disabled the client,
//!   we enable the client again: the renewal wins.
//! - Marking `expired` and enqueueing the DM (`expired_dm:<id>:<expiry>`) commit together; a
//!   retry after a crash disables again (a no-op on the panel) and finds the row expired.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobs::EnqueueOptions;
use jobs::kinds::{ExpireSubscription, Recipient, SendDm, SubscriptionId};
use jobs::subscriptions::{Subscription, SubscriptionStatus, Subscriptions};

use super::{Product, db_error, lock_subscription, panel_job_error, queue_error};
use crate::handler::{Handler, JobContext, JobError};
use crate::panel::{ClientChange, Panel};

pub struct ExpireSubscriptionHandler {
    product: Product,
}

impl ExpireSubscriptionHandler {
    pub fn new(product: Product) -> Self {
        ExpireSubscriptionHandler { product }
    }
}

#[async_trait]
impl Handler<ExpireSubscription> for ExpireSubscriptionHandler {
    async fn handle(&self, job: ExpireSubscription, ctx: &JobContext) -> Result<(), JobError> {
        let lock = lock_subscription(ctx, job.subscription).await?;
        let result = self.expire(job, ctx).await;
        let _ = lock.release().await;
        result
    }
}

impl ExpireSubscriptionHandler {
    async fn expire(&self, job: ExpireSubscription, ctx: &JobContext) -> Result<(), JobError> {
        let id = job.subscription;
        let subscriptions = Subscriptions::new(&ctx.queue).map_err(db_error)?;
        let Some(subscription) = subscriptions.get(id).await.map_err(db_error)? else {
            return Err(JobError::Cancel(format!(
                "subscription {id} does not exist"
            )));
        };
        let Some(expiry) = self.due_expiry(&job, &subscription)? else {
            return Ok(());
        };
        let Some(panel) = self.product.panels.get(&subscription.panel) else {
            return Err(JobError::permanent(format!(
                "subscription {id}: panel {:?} is not configured (no [[panels]] entry with that \
                 name)",
                subscription.panel
            )));
        };
        let expiry_unix = expiry.timestamp();
        let client = Client {
            panel: panel.as_ref(),
            panel_name: &subscription.panel,
            name: subscription.client_name.expose(),
        };
        client.set_enabled(false).await?;
        if mark_expired(ctx, &subscription, expiry).await? {
            tracing::info!(subscription = %id, expiry = expiry_unix, "subscription expired");
            return Ok(());
        }
        // The expiry moved (a renewal) while we were disabling: give the client back.
        let now = subscriptions.get(id).await.map_err(db_error)?;
        if now.is_some_and(|s| s.status == SubscriptionStatus::Active) {
            client.set_enabled(true).await?;
            tracing::info!(subscription = %id, "renewed while expiring: client enabled again");
        }
        Ok(())
    }
}

impl ExpireSubscriptionHandler {
    /// The expiry to act on, or `None` when there is nothing to do (renewed, already expired,
    /// disabled by an admin is still expired at its time). Early runs are put back to the
    /// expiry.
    fn due_expiry(
        &self,
        job: &ExpireSubscription,
        subscription: &Subscription,
    ) -> Result<Option<DateTime<Utc>>, JobError> {
        let id = subscription.id;
        if !matches!(
            subscription.status,
            SubscriptionStatus::Active | SubscriptionStatus::Disabled
        ) {
            tracing::info!(subscription = %id, status = %subscription.status, "nothing to expire");
            return Ok(None);
        }
        let Some(current) = subscription.expiry else {
            return Ok(None);
        };
        if job.force {
            return Ok(Some(current));
        }
        let wanted = job.expiry.as_datetime();
        if current != wanted {
            tracing::info!(subscription = %id, "expiry moved (renewed): skipping");
            return Ok(None);
        }
        let early = wanted - Utc::now();
        if let Ok(after) = early.to_std()
            && !after.is_zero()
        {
            return Err(JobError::RetryAfter {
                after,
                reason: format!("subscription {id} expires at {wanted}, not yet"),
            });
        }
        Ok(Some(current))
    }
}

/// The subscription's client on its panel.
struct Client<'a> {
    panel: &'a dyn Panel,
    panel_name: &'a str,
    name: &'a str,
}

impl Client<'_> {
    /// Sets `enable` on every row of the name (a duplicate left enabled would keep serving);
    /// a client already gone from the panel has nothing to disable.
    async fn set_enabled(&self, enable: bool) -> Result<(), JobError> {
        let fail = |e| panel_job_error(self.panel_name, &e);
        let rows = self.panel.find_by_name(self.name).await.map_err(fail)?;
        for row in rows.iter().filter(|r| r.enable != enable) {
            let change = ClientChange {
                enable: Some(enable),
                ..ClientChange::default()
            };
            self.panel
                .edit_client(row.id, &change)
                .await
                .map_err(fail)?;
        }
        Ok(())
    }
}

/// Marks the row expired (if its expiry is still `expiry`) and enqueues the DM, in one
/// transaction; `false` when the expiry had changed.
async fn mark_expired(
    ctx: &JobContext,
    subscription: &Subscription,
    expiry: DateTime<Utc>,
) -> Result<bool, JobError> {
    let id = subscription.id;
    let user = Recipient::new(subscription.platform, subscription.user_id);
    let text = format!(
        "Your subscription ({}) has expired. Renew it to keep your access.",
        subscription.plan
    );
    let dm = SendDm::new(user, text).map_err(JobError::permanent)?;
    let mut tx = ctx.queue.begin().await.map_err(queue_error)?;
    let marked = Subscriptions::in_tx(&mut tx)
        .expire_if_unchanged(id, expiry)
        .await
        .map_err(db_error)?;
    if !marked {
        let _ = tx.rollback().await;
        return Ok(false);
    }
    let options = EnqueueOptions {
        key: Some(expired_dm_key(id, expiry)),
        ..EnqueueOptions::default()
    };
    tx.enqueue(&dm, options).await.map_err(queue_error)?;
    tx.commit().await.map_err(queue_error)?;
    Ok(true)
}

/// The key of the "expired" DM of one term.
pub fn expired_dm_key(id: SubscriptionId, expiry: DateTime<Utc>) -> String {
    format!("expired_dm:{id}:{}", expiry.timestamp())
}
