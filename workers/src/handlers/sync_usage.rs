//! `sync_usage` (periodic, one job per panel): one listing call to the panel updates the usage
//! and enable state of every subscription on it, warns users at 80% and 100% of their volume,
//! and reconciles what the panel holds with what we sold.
//!
//! - Usage: S-UI credits a client's traffic to every row of its name (its stats job updates
//!   `WHERE name = ?`), so duplicates carry the same counters: the largest is taken, not the
//!   sum. Written in one statement ([`Subscriptions::sync_usage`]), only to rows whose expiry is
//!   still the one read before the listing (a renewal in between may have reset the usage; the
//!   next sync picks it up).
//! - Warnings: the highest threshold crossed, once per term: the subscription's
//!   `usage_warned_percent` is raised and the DM (`usage_warning:<id>:<percent>:<expiry>`)
//!   enqueued in one transaction, so a retried or overlapping sync sends none twice. A usage
//!   that jumps past both thresholds at once gets the 100% warning only.
//! - Reconciliation, for every subscription of the panel: one `active` or `disabled` here whose
//!   client is missing from the panel, disabled there while active here, or present more than
//!   once is flagged. Flags that appear (not those already known) are reported to the admins in
//!   one digest per sync, in the transaction that sets them. Flags clear when the panel agrees
//!   again, whatever the subscription's state. One `failed` or `expired` here with an enabled
//!   client on the panel is flagged `enabled_on_panel` (access nobody pays for). A
//!   subscription a renewal or an expiry is changing (running, waiting for its retry, due, or
//!   finished since the sync began) gets no new flag: the panel may show the change half done;
//!   its flags that the panel no longer supports still clear.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::Utc;
use jobs::EnqueueOptions;
use jobs::kinds::{Recipient, SendDm, SyncUsage};
use jobs::subscriptions::{Flag, Subscription, SubscriptionStatus, Subscriptions, UsageUpdate};

use super::alerts::{alert_admins, digest};
use super::{Product, db_error, panel_job_error, queue_error};
use crate::handler::{Handler, JobContext, JobError};
use crate::panel::PanelClient;

pub struct SyncUsageHandler {
    product: Product,
}

impl SyncUsageHandler {
    pub fn new(product: Product) -> Self {
        SyncUsageHandler { product }
    }
}

#[async_trait]
impl Handler<SyncUsage> for SyncUsageHandler {
    async fn handle(&self, job: SyncUsage, ctx: &JobContext) -> Result<(), JobError> {
        let panel_name = job.panel.as_str();
        let Some(panel) = self.product.panels.get(panel_name) else {
            return Err(JobError::permanent(format!(
                "panel {panel_name:?} is not configured (no [[panels]] entry with that name)"
            )));
        };
        // Our rows first, the panel second: a renewal landing in between shows as a changed
        // expiry, and that row is left for the next sync.
        let subscriptions = Subscriptions::new(&ctx.queue).map_err(db_error)?;
        let began = Utc::now();
        let ours = subscriptions
            .list_by_panel(panel_name)
            .await
            .map_err(db_error)?;
        let clients = panel
            .list_clients()
            .await
            .map_err(|e| panel_job_error(panel_name, &e))?;
        let by_name = group_by_name(&clients);
        let updates = usage_updates(&ours, &by_name);
        let synced = subscriptions
            .sync_usage(panel_name, &updates)
            .await
            .map_err(db_error)?;
        let mut warned = 0;
        for subscription in &synced {
            warned += usize::from(warn_once(ctx, subscription).await?);
        }
        let changing = subscriptions.changing(began).await.map_err(db_error)?;
        let flagged = self
            .reconcile(ctx, panel_name, &ours, &by_name, &changing)
            .await?;
        tracing::info!(
            panel = panel_name,
            clients = clients.len(),
            synced = synced.len(),
            warned,
            flagged,
            "usage synced"
        );
        Ok(())
    }
}

/// The panel's rows by client name.
fn group_by_name(clients: &[PanelClient]) -> BTreeMap<&str, Vec<&PanelClient>> {
    let mut by_name: BTreeMap<&str, Vec<&PanelClient>> = BTreeMap::new();
    for client in clients {
        by_name
            .entry(client.name.as_str())
            .or_default()
            .push(client);
    }
    by_name
}

/// One update per subscription found on the panel: duplicates' largest counters (the panel
/// credits each row of a name), enabled if any row is.
fn usage_updates(
    ours: &[Subscription],
    by_name: &BTreeMap<&str, Vec<&PanelClient>>,
) -> Vec<UsageUpdate> {
    ours.iter()
        .filter_map(|s| {
            let rows = by_name.get(s.client_name.expose())?;
            Some(UsageUpdate {
                client_name: s.client_name.clone(),
                up: rows.iter().map(|r| r.up.max(0)).max().unwrap_or(0),
                down: rows.iter().map(|r| r.down.max(0)).max().unwrap_or(0),
                enabled: rows.iter().any(|r| r.enable),
                expected_expiry: s.expiry,
            })
        })
        .collect()
}

/// The warning threshold a subscription's usage has reached, if any.
fn threshold(subscription: &Subscription) -> Option<i32> {
    match subscription.usage_fraction()? {
        f if f >= 1.0 => Some(100),
        f if f >= 0.8 => Some(80),
        _ => None,
    }
}

/// Sends the usage warning for the highest threshold reached, unless it was sent this term.
async fn warn_once(ctx: &JobContext, subscription: &Subscription) -> Result<bool, JobError> {
    if subscription.status != SubscriptionStatus::Active {
        return Ok(false);
    }
    let Some(percent) = threshold(subscription) else {
        return Ok(false);
    };
    if percent <= subscription.usage_warned_percent {
        return Ok(false);
    }
    let id = subscription.id;
    let text = match percent {
        100 => format!(
            "You have used all the traffic of your subscription ({}). Renew or upgrade it to \
             keep your access.",
            subscription.plan
        ),
        _ => format!(
            "You have used {}% of the traffic of your subscription ({}).",
            percent, subscription.plan
        ),
    };
    let user = Recipient::new(subscription.platform, subscription.user_id);
    let dm = SendDm::new(user, text).map_err(JobError::permanent)?;
    let term = subscription.expiry.map_or(0, |e| e.timestamp());
    let mut tx = ctx.queue.begin().await.map_err(queue_error)?;
    if !Subscriptions::in_tx(&mut tx)
        .mark_warned(id, percent)
        .await
        .map_err(db_error)?
    {
        let _ = tx.rollback().await;
        return Ok(false);
    }
    let options = EnqueueOptions {
        key: Some(usage_warning_key(id, percent, term)),
        ..EnqueueOptions::default()
    };
    tx.enqueue(&dm, options).await.map_err(queue_error)?;
    tx.commit().await.map_err(queue_error)?;
    tracing::info!(subscription = %id, percent, "usage warning enqueued");
    Ok(true)
}

/// What the panel says about one of our subscriptions that needs an admin's eye.
fn findings(subscription: &Subscription, rows: Option<&Vec<&PanelClient>>) -> BTreeSet<Flag> {
    let mut flags = BTreeSet::new();
    match subscription.status {
        SubscriptionStatus::Active | SubscriptionStatus::Disabled => {}
        // Ended here: nothing of it should be enabled there.
        SubscriptionStatus::Failed | SubscriptionStatus::Expired => {
            if rows.is_some_and(|rows| rows.iter().any(|r| r.enable)) {
                flags.insert(Flag::EnabledOnPanel);
            }
            return flags;
        }
        // Its provision job is in flight, or failing: that job cleans up.
        SubscriptionStatus::Provisioning => return flags,
    }
    match rows {
        None => {
            flags.insert(Flag::MissingOnPanel);
        }
        Some(rows) => {
            if rows.len() > 1 {
                flags.insert(Flag::DuplicateOnPanel);
            }
            // At its expiry the panel disables the client itself before our expiry job runs:
            // only a client disabled while the term still runs is a disagreement.
            let running = subscription.expiry.is_none_or(|e| e > Utc::now());
            if subscription.status == SubscriptionStatus::Active
                && running
                && !rows.iter().any(|r| r.enable)
            {
                flags.insert(Flag::DisabledOnPanel);
            }
        }
    }
    flags
}

impl SyncUsageHandler {
    /// Sets each subscription's flags to what the panel shows, and reports new ones to the
    /// admins, all in one transaction. Returns how many subscriptions carry flags now.
    async fn reconcile(
        &self,
        ctx: &JobContext,
        panel_name: &str,
        ours: &[Subscription],
        by_name: &BTreeMap<&str, Vec<&PanelClient>>,
        changing: &BTreeSet<jobs::kinds::SubscriptionId>,
    ) -> Result<usize, JobError> {
        let mut changed = Vec::new();
        let mut flagged = 0;
        for subscription in ours {
            let found = findings(subscription, by_name.get(subscription.client_name.expose()));
            // Half done is no disagreement: keep only the known flags the panel still shows.
            let flags = if changing.contains(&subscription.id) {
                found.intersection(&subscription.flags).copied().collect()
            } else {
                found
            };
            flagged += usize::from(!flags.is_empty());
            if flags != subscription.flags {
                changed.push((subscription, flags));
            }
        }
        if changed.is_empty() {
            return Ok(flagged);
        }
        let mut report = Vec::new();
        let mut tx = ctx.queue.begin().await.map_err(queue_error)?;
        for (subscription, flags) in &changed {
            Subscriptions::in_tx(&mut tx)
                .set_flags(subscription.id, flags)
                .await
                .map_err(db_error)?;
            let new: Vec<&str> = flags
                .difference(&subscription.flags)
                .map(|f| f.as_str())
                .collect();
            if !new.is_empty() {
                report.push(format!(
                    "subscription {} ({} user {}): {}",
                    subscription.id,
                    subscription.platform.as_str(),
                    subscription.user_id,
                    new.join(", ")
                ));
            }
        }
        if !report.is_empty() {
            let title = format!(
                "Panel {panel_name} disagrees with our records on {} subscription(s):",
                report.len()
            );
            let text = digest(&title, &report);
            let key = reconcile_key(panel_name, ctx.id);
            alert_admins(&mut tx, &self.product.settings, &key, &text).await?;
        }
        tx.commit().await.map_err(queue_error)?;
        Ok(flagged)
    }
}

/// The key of the usage warning at `percent` in one term: one warning per threshold per term.
fn usage_warning_key(id: jobs::kinds::SubscriptionId, percent: i32, term: i64) -> String {
    format!("usage_warning:{id}:{percent}:{term}")
}

/// The key of the admins' digest of one sync's findings on a panel.
fn reconcile_key(panel: &str, sync_job: i64) -> String {
    format!("reconcile:{panel}:{sync_job}")
}
