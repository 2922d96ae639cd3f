//! The admin commands. Each job enqueued is keyed by the command's message
//! (`telegram:<command>:<chat>:<message>`) and written to the audit log in the same
//! transaction, so a redelivered command enqueues and audits nothing new. `/failed`, `/retry`,
//! `/discard` and `/stats` are the shared [`crate::admin_jobs`].

use jobs::kinds::{ExpireSubscription, Platform, Timestamp, UserId};
use jobs::orders::write_audit;
use jobs::subscriptions::{Subscription, SubscriptionStatus};
use jobs::{EnqueueOptions, Job};

use super::buy::build_job;
use super::command::{Command, Term};
use super::logic::{Action, BotError, Incoming, Shop, message_key};
use crate::admin_jobs::{self, FailedQuery};

impl Shop {
    pub(super) async fn admin_command(
        &self,
        message: &Incoming,
        command: Command,
    ) -> Result<Vec<Action>, BotError> {
        let reply = match command {
            Command::Provision { user, plan } => self.provision(message, user, &plan).await?,
            Command::Renew { user, term } => self.renew(message, user, &term).await?,
            Command::Expire { user } => self.expire(message, user).await?,
            Command::Failed { kind, page } => self.failed(kind, page).await,
            Command::Retry { job } => {
                let actor = self.actor(message.user, &message.name);
                admin_jobs::retry(&self.queue, &actor, &job)
                    .await
                    .map_or_else(|e| e.to_string(), |done| admin_jobs::render_repaired(&done))
            }
            Command::Discard { job } => {
                let actor = self.actor(message.user, &message.name);
                admin_jobs::discard(&self.queue, &actor, &job)
                    .await
                    .map_or_else(|e| e.to_string(), |done| admin_jobs::render_repaired(&done))
            }
            Command::Stats => admin_jobs::stats(&self.queue)
                .await
                .map_or_else(|e| e.to_string(), |s| admin_jobs::render_stats(&s)),
            Command::AdminsList => self.admins_list().await?,
            Command::AdminsAdd { user } => self.admins_change(message, user, true).await?,
            Command::AdminsRemove { user } => self.admins_change(message, user, false).await?,
            // Customer commands are answered in `command`.
            _ => "Send /start to see the commands.".to_string(),
        };
        Ok(vec![Action::send(message.chat, reply)])
    }

    /// Enqueues `job` keyed by the message and audits it, in one transaction: the job's id, and
    /// whether this message had already enqueued it.
    async fn enqueue_audited<J: Job>(
        &self,
        message: &Incoming,
        what: &'static str,
        job: &J,
        target: String,
    ) -> Result<(i64, bool), BotError> {
        let mut tx = self.queue.begin().await?;
        let options = EnqueueOptions {
            key: Some(message_key(what, message)),
            ..EnqueueOptions::default()
        };
        let enqueued = tx.enqueue(job, options).await?;
        if !enqueued.created {
            tx.rollback().await?;
            return Ok((enqueued.id, false));
        }
        let audit = self.audit(
            message.user,
            &message.name,
            what,
            format!("{target} (job {})", enqueued.id),
        );
        write_audit(&mut tx, &audit, 1).await?;
        tx.commit().await?;
        Ok((enqueued.id, true))
    }

    fn unknown_plan(&self, plan: &str) -> String {
        let names: Vec<&str> = self
            .settings
            .plans
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        if names.is_empty() {
            return format!("Unknown plan “{plan}”: no plans are configured ([[plans]]).");
        }
        format!("Unknown plan “{plan}”. Plans: {}.", names.join(", "))
    }

    async fn provision(
        &self,
        message: &Incoming,
        user: UserId,
        plan: &str,
    ) -> Result<String, BotError> {
        if self.settings.plan(plan).is_none() {
            return Ok(self.unknown_plan(plan));
        }
        let Some(panel) = self.settings.panels.first() else {
            return Ok("No panel is configured ([[panels]]): cannot provision.".into());
        };
        let job = build_job(&panel.name, plan, user, None).map_err(BotError::Invalid)?;
        let target = format!("user {user} plan {plan} on {}", panel.name);
        let (id, created) = self
            .enqueue_audited(message, "provision", &job, target)
            .await?;
        Ok(done(
            created,
            id,
            &format!("Provisioning {plan} for user {user}: job #{id}. They get the link by DM."),
        ))
    }

    /// The user's newest subscription in one of `statuses`.
    async fn newest(
        &self,
        user: UserId,
        statuses: &[SubscriptionStatus],
    ) -> Result<Option<Subscription>, BotError> {
        let list = self
            .subscriptions
            .list_by_user(Platform::Telegram, user)
            .await?;
        Ok(list.into_iter().find(|s| statuses.contains(&s.status)))
    }

    /// `/renew USER PLAN|DAYS`: the user's newest renewable subscription, with that plan, or
    /// with the plan of that many days (its own plan first, else the only plan that long).
    async fn renew(
        &self,
        message: &Incoming,
        user: UserId,
        term: &Term,
    ) -> Result<String, BotError> {
        use SubscriptionStatus::{Active, Disabled, Expired};
        let Some(subscription) = self.newest(user, &[Active, Expired, Disabled]).await? else {
            return Ok(format!(
                "User {user} has no subscription to renew. Use /provision {user} PLAN for a new one."
            ));
        };
        let plan = match term {
            Term::Plan(plan) if self.settings.plan(plan).is_some() => plan.clone(),
            Term::Plan(plan) => return Ok(self.unknown_plan(plan)),
            Term::Days(days) => match self.plan_of_days(&subscription.plan, *days) {
                Ok(plan) => plan,
                Err(reply) => return Ok(reply),
            },
        };
        let job = build_job(&subscription.panel, &plan, user, Some(subscription.id))
            .map_err(BotError::Invalid)?;
        let target = format!(
            "subscription {} of user {user} with plan {plan}",
            subscription.id
        );
        let (id, created) = self.enqueue_audited(message, "renew", &job, target).await?;
        Ok(done(
            created,
            id,
            &format!(
                "Renewing subscription #{} with {plan}: job #{id}.",
                subscription.id
            ),
        ))
    }

    fn plan_of_days(&self, current: &str, days: i64) -> Result<String, String> {
        if let Some(plan) = self.settings.plan(current).filter(|p| p.days == days) {
            return Ok(plan.name.clone());
        }
        let matching: Vec<&str> = self
            .settings
            .plans
            .iter()
            .filter(|p| p.days == days)
            .map(|p| p.name.as_str())
            .collect();
        match matching.as_slice() {
            [one] => Ok((*one).to_string()),
            _ => {
                let terms: Vec<String> = self
                    .settings
                    .plans
                    .iter()
                    .map(|p| format!("{} ({} days)", p.name, p.days))
                    .collect();
                Err(format!(
                    "No single plan lasts {days} days. Name the plan instead: /renew USER_ID PLAN. Plans: {}.",
                    terms.join(", ")
                ))
            }
        }
    }

    /// `/expire USER`: forces expiry of the user's newest active (or disabled) subscription.
    async fn expire(&self, message: &Incoming, user: UserId) -> Result<String, BotError> {
        use SubscriptionStatus::{Active, Disabled};
        let Some(subscription) = self.newest(user, &[Active, Disabled]).await? else {
            return Ok(format!("User {user} has no active subscription to expire."));
        };
        let Some(expiry) = subscription.expiry else {
            return Ok(format!(
                "Subscription #{} has no expiry yet.",
                subscription.id
            ));
        };
        let job = ExpireSubscription {
            subscription: subscription.id,
            expiry: Timestamp::from(expiry),
            force: true,
        };
        let target = format!("subscription {} of user {user}", subscription.id);
        let (id, created) = self
            .enqueue_audited(message, "expire", &job, target)
            .await?;
        Ok(done(
            created,
            id,
            &format!(
                "Expiring subscription #{} of user {user} now: job #{id}.",
                subscription.id
            ),
        ))
    }

    async fn failed(&self, kind: Option<String>, page: Option<String>) -> String {
        // `/failed p42` is a page of every kind (page markers are p + digits).
        let (kind, page) = match (kind, page) {
            (Some(k), None) if is_page_marker(&k) => (None, Some(k)),
            other => other,
        };
        let query = match FailedQuery::parse(kind.as_deref(), page.as_deref()) {
            Ok(query) => query,
            Err(error) => return format!("{error}\nUsage: /failed [KIND], e.g. /failed send_dm"),
        };
        match admin_jobs::failed(&self.queue, &query).await {
            Ok(page) => {
                let kind = query.kind.clone();
                admin_jobs::render_failed(&page, |marker| match &kind {
                    Some(kind) => format!("/failed {kind} {marker}"),
                    None => format!("/failed {marker}"),
                })
            }
            Err(error) => error.to_string(),
        }
    }

    async fn admins_list(&self) -> Result<String, BotError> {
        let owners: Vec<String> = self
            .settings
            .telegram
            .admins
            .iter()
            .map(i64::to_string)
            .collect();
        let added: Vec<String> = self
            .admins
            .list(Platform::Telegram)
            .await?
            .iter()
            .map(i64::to_string)
            .collect();
        let none = |list: &[String]| {
            if list.is_empty() {
                "none".to_string()
            } else {
                list.join(", ")
            }
        };
        Ok(format!(
            "Owners (config [telegram] admins): {}\nAdded admins: {}",
            none(&owners),
            none(&added)
        ))
    }

    /// `/admins add|remove`: only the owners (the config's admins) may change the list.
    async fn admins_change(
        &self,
        message: &Incoming,
        user: UserId,
        add: bool,
    ) -> Result<String, BotError> {
        if !self.is_owner(message.user) {
            tracing::info!(
                user = message.user,
                "telegram /admins change refused: not an owner"
            );
            return Ok("Only the owners named in the config ([telegram] admins) may change the admin list.".into());
        }
        if self.is_owner(user.get()) {
            return Ok(format!(
                "{user} is an owner (in the config); change the config to change that."
            ));
        }
        let action = if add { "add_admin" } else { "remove_admin" };
        let audit = self.audit(
            message.user,
            &message.name,
            action,
            format!("telegram user {user}"),
        );
        let changed = if add {
            self.admins
                .add(Platform::Telegram, user, message.user, &audit)
                .await?
        } else {
            self.admins.remove(Platform::Telegram, user, &audit).await?
        };
        Ok(match (add, changed) {
            (true, true) => format!("{user} is now an admin."),
            (true, false) => format!("{user} was already an admin."),
            (false, true) => format!("{user} is no longer an admin."),
            (false, false) => format!("{user} was not an admin."),
        })
    }
}

fn is_page_marker(text: &str) -> bool {
    text.strip_prefix('p')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The reply to an enqueueing command: a redelivered command says the job already exists.
fn done(created: bool, id: i64, text: &str) -> String {
    if created {
        text.to_string()
    } else {
        format!("Already done: job #{id} (this command was received before).")
    }
}
