//! `provision_client`: a subscription row in `provisioning` → its client on the panel exactly
//! once → the row `active` with link, volume and expiry, and in the same transaction the DM
//! with the link (`provision_dm:<subscription>`) and the expiry job at the expiry time.
//!
//! Every step survives a retry after a crash anywhere:
//! - the row is created idempotently by origin key (the job's idempotency key, else `job:<id>`),
//!   so a retry finds the same subscription, and so the same derived client name;
//! - the panel is asked for clients of that name before one is created (a create whose answer
//!   was lost is found, not repeated); if the panel holds two (two workers, or a create that
//!   was applied twice), the extra rows are deleted, keeping the oldest, and the attempt ends
//!   with a retryable error saying so (kept in the job's errors for admins; the worker's log
//!   says it at `warn`), so the next attempt looks again;
//! - marking `active` and enqueueing the follow-ups commit together; both follow-ups are keyed;
//! - a provision that fails for good leaves nothing enabled on the panel: every row of its
//!   client's name is deleted, and the row marked `failed` (flagged `enabled_on_panel` when the
//!   rows could not be removed, so the usage sync keeps showing it) with the admins told, in
//!   one transaction.
//!
//! With `"renew": ID` the job renews (or, with another plan, upgrades) that subscription:
//! - its terms (plan, volume, new expiry = the later of now and the old expiry, plus the plan's
//!   days) are recorded first under the job's key (`jobq_renewals`), so every retry applies the
//!   same expiry and a renewal extends once however often it runs;
//! - the client is found (re-created with the new terms if an admin deleted it) and edited in
//!   one read-modify-write: enabled, new expiry, volume and inbounds, usage reset if the plan
//!   says so;
//! - marking the renewal applied, the row `active` with the new terms, the DM
//!   (`renew_dm:<key>`) and the expiry job at the new expiry commit together. The old expiry
//!   job then finds its expiry changed and does nothing.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobs::EnqueueOptions;
use jobs::configuration::{PlanSettings, Settings};
use jobs::kinds::{ExpireSubscription, ProvisionClient, SendDm, SubscriptionId, Timestamp};
use jobs::secret_key::SecretKey;
use jobs::subscriptions::{
    Activation, Flag, NewSubscription, Renewal, Subscription, SubscriptionLink, SubscriptionStatus,
    Subscriptions,
};

use super::alerts::alert_admins;
use super::{Product, db_error, lock_subscription, panel_job_error, queue_error};
use crate::handler::{Handler, JobContext, JobError};
use crate::panel::{ClientChange, NewClient, Panel, PanelClient, PanelError};

const GIB: i64 = 1024 * 1024 * 1024;

pub struct ProvisionClientHandler {
    product: Product,
}

impl ProvisionClientHandler {
    pub fn new(product: Product) -> Self {
        ProvisionClientHandler { product }
    }
}

/// The key of the DM that hands out a subscription's link.
pub fn dm_key(subscription: SubscriptionId) -> String {
    format!("provision_dm:{subscription}")
}

/// The origin key of the subscription a job creates.
pub fn origin_key(ctx: &JobContext) -> String {
    jobs::job::key_or_id(ctx.key.as_deref(), ctx.id)
}

/// The key of the DM that confirms a renewal (one per renewal, by its origin).
pub fn renew_dm_key(renewal_origin: &str) -> String {
    format!("renew_dm:{renewal_origin}")
}

#[async_trait]
impl Handler<ProvisionClient> for ProvisionClientHandler {
    async fn handle(&self, job: ProvisionClient, ctx: &JobContext) -> Result<(), JobError> {
        let panel_name = job.panel.as_str();
        let plan_name = job.plan.as_str();
        let Some(panel) = self.product.panels.get(panel_name) else {
            return Err(JobError::permanent(format!(
                "panel {panel_name:?} is not configured (no [[panels]] entry with that name)"
            )));
        };
        let Some(plan) = self.product.settings.plan(plan_name) else {
            return Err(JobError::permanent(format!(
                "plan {plan_name:?} is not configured (no [[plans]] entry with that name)"
            )));
        };
        let Some(key) = self.product.key.clone() else {
            return Err(JobError::permanent(
                "no secret key was loaded at start (JOBQ_SECRET_KEY)",
            ));
        };
        let terms = Terms::of(plan)?;
        let provision = Provision {
            job: &job,
            ctx,
            panel,
            panel_name,
            key,
            terms,
            settings: &self.product.settings,
        };
        match job.renew {
            Some(id) => provision.renew(id).await,
            None => provision.run().await,
        }
    }
}

/// What a plan gives, in the panel's units.
struct Terms {
    plan: String,
    volume_bytes: i64,
    days: i64,
    inbounds: Vec<u64>,
    reset_usage_on_renew: bool,
}

impl Terms {
    fn of(plan: &PlanSettings) -> Result<Terms, JobError> {
        let bad = |what: &str| {
            JobError::permanent(format!("plan {:?}: {what} is out of range", plan.name))
        };
        let volume_bytes = plan
            .volume_gb
            .checked_mul(GIB)
            .filter(|v| *v >= 0)
            .ok_or_else(|| bad("volume_gb"))?;
        if plan.days <= 0 || plan.days > 100 * 366 {
            return Err(bad("days"));
        }
        let inbounds = plan
            .inbounds
            .iter()
            .map(|&i| u64::try_from(i).map_err(|_| bad("inbounds")))
            .collect::<Result<_, _>>()?;
        Ok(Terms {
            plan: plan.name.clone(),
            volume_bytes,
            days: plan.days,
            inbounds,
            reset_usage_on_renew: plan.reset_usage_on_renew,
        })
    }
}

struct Provision<'a> {
    job: &'a ProvisionClient,
    ctx: &'a JobContext,
    panel: Arc<dyn Panel>,
    panel_name: &'a str,
    key: Arc<SecretKey>,
    terms: Terms,
    /// Who the admins are, to be told when a provision fails for good.
    settings: &'a Settings,
}

impl Provision<'_> {
    async fn run(self) -> Result<(), JobError> {
        let subscriptions = Subscriptions::new(&self.ctx.queue).map_err(db_error)?;
        let new = NewSubscription {
            platform: self.job.user.platform,
            user_id: self.job.user.id,
            panel: self.panel_name.to_string(),
            plan: self.terms.plan.clone(),
            volume_bytes: self.terms.volume_bytes,
            origin_key: Some(origin_key(self.ctx)),
        };
        let created = subscriptions
            .create(&self.key, &new)
            .await
            .map_err(db_error)?;
        let subscription = created.subscription;
        if subscription.panel != new.panel
            || subscription.platform != new.platform
            || subscription.user_id != new.user_id
        {
            return Err(JobError::permanent(format!(
                "subscription {} (origin key {:?}) belongs to another user or panel: \
                 the job's key was used for a different order",
                subscription.id,
                new.origin_key.as_deref().unwrap_or_default()
            )));
        }
        // `failed`: an earlier run gave up, and an admin retried the job: provision again.
        if !matches!(
            subscription.status,
            SubscriptionStatus::Provisioning | SubscriptionStatus::Failed
        ) {
            // Activated (with its follow-ups, in one transaction) by an earlier attempt.
            tracing::info!(
                subscription = %subscription.id,
                status = %subscription.status,
                "subscription already provisioned"
            );
            return Ok(());
        }
        let result = self.provision(&subscription).await;
        if let Err(error) = &result
            && self.ctx.ends_job(error)
            && let Err(db) = self.fail_for_good(&subscription, error).await
        {
            tracing::warn!(subscription = %subscription.id, error = %db, "could not mark the subscription failed");
        }
        result
    }

    /// The job fails for good: no client of it stays on the panel, and the customer's /status
    /// and the order show `failed` instead of `provisioning` for ever; the admins are told what
    /// was left, all in one transaction.
    async fn fail_for_good(
        &self,
        subscription: &Subscription,
        error: &JobError,
    ) -> Result<(), JobError> {
        let id = subscription.id;
        let removed = self.remove_client(subscription.client_name.expose()).await;
        let (flags, left) = match &removed {
            Ok(0) => (
                BTreeSet::new(),
                "no client of it was on the panel".to_string(),
            ),
            Ok(rows) => (
                BTreeSet::new(),
                format!("its client ({rows} row(s)) was deleted from the panel"),
            ),
            Err(why) => (
                BTreeSet::from([Flag::EnabledOnPanel]),
                format!(
                    "its client could not be removed from the panel ({why}): remove it by hand"
                ),
            ),
        };
        let text = format!(
            "Provisioning subscription {id} ({} user {}) on panel {} failed for good: {error}. {left}.",
            subscription.platform.as_str(),
            subscription.user_id,
            self.panel_name
        );
        let mut tx = self.ctx.queue.begin().await.map_err(queue_error)?;
        let mut rows = Subscriptions::in_tx(&mut tx);
        rows.set_status(id, SubscriptionStatus::Failed)
            .await
            .map_err(db_error)?;
        rows.set_flags(id, &flags).await.map_err(db_error)?;
        let key = format!("provision_failed:{id}:{}", self.ctx.id);
        alert_admins(&mut tx, self.settings, &key, &text).await?;
        tx.commit().await.map_err(queue_error)?;
        tracing::warn!(subscription = %id, panel = self.panel_name, %left, "provision failed for good");
        Ok(())
    }

    /// Deletes every row named `name` on the panel; how many there were.
    async fn remove_client(&self, name: &str) -> Result<usize, PanelError> {
        let rows = self.panel.find_by_name(name).await?;
        for row in &rows {
            self.panel.delete_client(row.id).await?;
        }
        Ok(rows.len())
    }

    /// The client on the panel, then the row active with its follow-ups.
    async fn provision(&self, subscription: &Subscription) -> Result<(), JobError> {
        let name = subscription.client_name.expose();
        let client = self
            .client_once(subscription.id, name, self.expiry_from_now())
            .await?;
        let expiry = match client.expiry {
            // The client is on the panel already: its expiry is the subscription's.
            e if e > 0 => DateTime::from_timestamp(e, 0),
            _ => None,
        }
        .unwrap_or_else(|| self.expiry_from_now());
        let link = self
            .panel
            .subscription_link(name)
            .await
            .map_err(|e| panel_job_error(self.panel_name, &e))?;
        self.activate(
            subscription.id,
            SubscriptionLink::new(link.expose()),
            expiry,
        )
        .await
    }

    /// Now plus the plan's days, to the second (the expiry job's key is to the second).
    fn expiry_from_now(&self) -> DateTime<Utc> {
        let at = Utc::now() + chrono::Duration::days(self.terms.days);
        DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)
    }

    /// Refuses, for good, a plan naming an inbound the panel lacks, before a client is
    /// created with it (naming the plan, the panel and the missing ids).
    async fn check_inbounds(&self) -> Result<(), JobError> {
        let present: Vec<u64> = self
            .panel
            .inbounds()
            .await
            .map_err(|e| panel_job_error(self.panel_name, &e))?
            .iter()
            .map(|inbound| inbound.id)
            .collect();
        let missing: Vec<u64> = (self.terms.inbounds.iter())
            .filter(|id| !present.contains(id))
            .copied()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(JobError::permanent(format!(
            "plan {:?} names inbound(s) {missing:?} that panel {} lacks (it has {present:?}): \
             fix the plan's inbounds, then retry the job",
            self.terms.plan, self.panel_name
        )))
    }

    /// The one client of this name on the panel: found, or created and read back; extra rows
    /// of the name are deleted.
    async fn client_once(
        &self,
        id: SubscriptionId,
        name: &str,
        expiry: DateTime<Utc>,
    ) -> Result<PanelClient, JobError> {
        let fail = |e| panel_job_error(self.panel_name, &e);
        let mut rows = self.panel.find_by_name(name).await.map_err(fail)?;
        if rows.is_empty() {
            self.check_inbounds().await?;
            let expiry = expiry.timestamp();
            let client = NewClient {
                name: name.to_string(),
                enable: true,
                volume: self.terms.volume_bytes,
                expiry,
                inbounds: self.terms.inbounds.clone(),
            };
            rows = self.panel.create_client(&client).await.map_err(fail)?;
            tracing::info!(subscription = %id, panel = self.panel_name, "created the panel client");
        }
        rows.sort_by_key(|c| c.id);
        let Some(kept) = rows.first().cloned() else {
            return Err(JobError::retry(format!(
                "panel {}: the client of subscription {id} is not listed after its creation",
                self.panel_name
            )));
        };
        if rows.len() > 1 {
            let extra: Vec<u64> = rows[1..].iter().map(|c| c.id).collect();
            tracing::warn!(
                subscription = %id,
                panel = self.panel_name,
                kept = kept.id,
                deleted = ?extra,
                "the panel held {} clients of this subscription's name: deleting the extra rows",
                rows.len()
            );
            for row in &extra {
                self.panel.delete_client(*row).await.map_err(fail)?;
            }
            // Said in the job's error (so an admin sees it), then looked at again next attempt.
            return Err(JobError::retry(format!(
                "panel {}: held {} clients of subscription {id}'s name (a create applied twice); \
                 deleted the extra rows {extra:?}, kept {}; checking again",
                self.panel_name,
                rows.len(),
                kept.id
            )));
        }
        // Read back the row we keep, in full.
        self.panel
            .get_client(kept.id)
            .await
            .map_err(fail)?
            .ok_or_else(|| {
                JobError::retry(format!(
                    "panel {}: client {} of subscription {id} vanished while being read back",
                    self.panel_name, kept.id
                ))
            })
    }

    /// Marks the row active and enqueues the DM and the expiry job, in one transaction.
    async fn activate(
        &self,
        id: SubscriptionId,
        link: SubscriptionLink,
        expiry: DateTime<Utc>,
    ) -> Result<(), JobError> {
        let text = format!(
            "Your subscription ({}) is ready: {}\nValid until {} UTC, {}.",
            self.terms.plan,
            link.expose(),
            expiry.format("%Y-%m-%d %H:%M"),
            traffic(self.terms.volume_bytes)
        );
        let dm = SendDm::new(self.job.user, text).map_err(JobError::permanent)?;
        let expire = ExpireSubscription {
            subscription: id,
            expiry: Timestamp::from(expiry),
            force: false,
        };
        let mut tx = self.ctx.queue.begin().await.map_err(queue_error)?;
        let activation = Activation {
            link,
            volume_bytes: self.terms.volume_bytes,
            expiry,
            plan: None,
            reset_usage: false,
        };
        let marked = Subscriptions::in_tx(&mut tx)
            .mark_active(id, &activation)
            .await
            .map_err(db_error)?;
        if marked.is_none() {
            let _ = tx.rollback().await;
            return Err(JobError::Cancel(format!("subscription {id} was deleted")));
        }
        let dm_options = EnqueueOptions {
            key: Some(dm_key(id)),
            ..EnqueueOptions::default()
        };
        tx.enqueue(&dm, dm_options).await.map_err(queue_error)?;
        let expire_options = EnqueueOptions {
            run_at: Some(expiry),
            ..EnqueueOptions::default()
        };
        tx.enqueue(&expire, expire_options)
            .await
            .map_err(queue_error)?;
        tx.commit().await.map_err(queue_error)?;
        tracing::info!(subscription = %id, expiry = %expiry, "subscription active");
        Ok(())
    }
}

impl Provision<'_> {
    /// Renews or upgrades subscription `id` to this job's plan: see the module doc.
    async fn renew(self, id: SubscriptionId) -> Result<(), JobError> {
        let lock = lock_subscription(self.ctx, id).await?;
        let result = self.renew_locked(id).await;
        let _ = lock.release().await;
        result
    }

    async fn renew_locked(&self, id: SubscriptionId) -> Result<(), JobError> {
        let subscriptions = Subscriptions::new(&self.ctx.queue).map_err(db_error)?;
        let Some(subscription) = subscriptions.get(id).await.map_err(db_error)? else {
            return Err(JobError::permanent(format!(
                "renewal of subscription {id}: there is no such subscription"
            )));
        };
        self.check_renewable(&subscription)?;
        let origin_key = origin_key(self.ctx);
        let planned = Renewal {
            origin_key: origin_key.clone(),
            subscription: id,
            plan: self.terms.plan.clone(),
            volume_bytes: self.terms.volume_bytes,
            expiry: self.renewed_expiry(subscription.expiry),
            applied: false,
        };
        let renewal = subscriptions
            .plan_renewal(&planned)
            .await
            .map_err(db_error)?;
        if renewal.applied {
            tracing::info!(subscription = %id, "renewal already applied");
            return Ok(());
        }
        let name = subscription.client_name.expose();
        let client = self.client_once(id, name, renewal.expiry).await?;
        let change = ClientChange {
            enable: Some(true),
            expiry: Some(renewal.expiry.timestamp()),
            volume: Some(renewal.volume_bytes),
            inbounds: Some(self.terms.inbounds.clone()),
            reset_usage: self.terms.reset_usage_on_renew,
        };
        self.panel
            .edit_client(client.id, &change)
            .await
            .map_err(|e| panel_job_error(self.panel_name, &e))?;
        let link = self
            .panel
            .subscription_link(name)
            .await
            .map_err(|e| panel_job_error(self.panel_name, &e))?;
        self.apply_renewal(&renewal, SubscriptionLink::new(link.expose()))
            .await
    }

    /// The subscription must be this job's user's, on this job's panel, and past provisioning.
    fn check_renewable(&self, subscription: &Subscription) -> Result<(), JobError> {
        let id = subscription.id;
        if subscription.platform != self.job.user.platform
            || subscription.user_id != self.job.user.id
        {
            return Err(JobError::permanent(format!(
                "renewal of subscription {id}: it belongs to another user"
            )));
        }
        if subscription.panel != self.panel_name {
            return Err(JobError::permanent(format!(
                "renewal of subscription {id}: it is on panel {:?}, not {:?}",
                subscription.panel, self.panel_name
            )));
        }
        match subscription.status {
            SubscriptionStatus::Provisioning => Err(JobError::retry(format!(
                "renewal of subscription {id}: it is still being provisioned"
            ))),
            SubscriptionStatus::Failed => Err(JobError::permanent(format!(
                "renewal of subscription {id}: its provisioning failed; provision a new one"
            ))),
            _ => Ok(()),
        }
    }

    /// The plan's days from the old expiry, or from now if that has passed; to the second.
    fn renewed_expiry(&self, old: Option<DateTime<Utc>>) -> DateTime<Utc> {
        let from = old.map_or_else(Utc::now, |old| old.max(Utc::now()));
        let at = from + chrono::Duration::days(self.terms.days);
        DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)
    }

    /// Marks the renewal applied and the row active with its terms, and enqueues the DM and
    /// the new expiry job, in one transaction.
    async fn apply_renewal(
        &self,
        renewal: &Renewal,
        link: SubscriptionLink,
    ) -> Result<(), JobError> {
        let id = renewal.subscription;
        let text = format!(
            "Your subscription ({}) is renewed: valid until {} UTC, {}.",
            renewal.plan,
            renewal.expiry.format("%Y-%m-%d %H:%M"),
            traffic(renewal.volume_bytes)
        );
        let dm = SendDm::new(self.job.user, text).map_err(JobError::permanent)?;
        let expire = ExpireSubscription {
            subscription: id,
            expiry: Timestamp::from(renewal.expiry),
            force: false,
        };
        let mut tx = self.ctx.queue.begin().await.map_err(queue_error)?;
        let mut rows = Subscriptions::in_tx(&mut tx);
        if !rows
            .apply_renewal(&renewal.origin_key)
            .await
            .map_err(db_error)?
        {
            let _ = tx.rollback().await;
            return Ok(());
        }
        let activation = Activation {
            link,
            volume_bytes: renewal.volume_bytes,
            expiry: renewal.expiry,
            plan: Some(renewal.plan.clone()),
            reset_usage: self.terms.reset_usage_on_renew,
        };
        if rows
            .mark_active(id, &activation)
            .await
            .map_err(db_error)?
            .is_none()
        {
            let _ = tx.rollback().await;
            return Err(JobError::Cancel(format!("subscription {id} was deleted")));
        }
        let dm_options = EnqueueOptions {
            key: Some(renew_dm_key(&renewal.origin_key)),
            ..EnqueueOptions::default()
        };
        tx.enqueue(&dm, dm_options).await.map_err(queue_error)?;
        let expire_options = EnqueueOptions {
            run_at: Some(renewal.expiry),
            ..EnqueueOptions::default()
        };
        tx.enqueue(&expire, expire_options)
            .await
            .map_err(queue_error)?;
        tx.commit().await.map_err(queue_error)?;
        tracing::info!(subscription = %id, expiry = %renewal.expiry, plan = %renewal.plan, "subscription renewed");
        Ok(())
    }
}

/// "10 GB of traffic" or "unlimited traffic".
fn traffic(volume_bytes: i64) -> String {
    match volume_bytes / GIB {
        0 => "unlimited traffic".to_string(),
        gb => format!("{gb} GB of traffic"),
    }
}
