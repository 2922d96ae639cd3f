//! The bot's decisions, free of teloxide: an incoming message or button press (plain data)
//! becomes database writes, enqueued jobs and [`Action`]s (replies, edits, forwards) that the
//! glue in [`super::glue`] performs. Tested without a Bot API.
//!
//! Keys are derived from the Telegram message (`telegram:<what>:<chat>:<message>`), so an
//! update delivered twice enqueues nothing new; orders are placed under the dialogue that
//! placed them and decided once in the database ([`jobs::orders`]).

use std::sync::Arc;

use jobs::Queue;
use jobs::audit::AuditEntry;
use jobs::configuration::{PlanSettings, Settings};
use jobs::kinds::{Platform, Recipient, UserId};
use jobs::orders::{BotAdmins, Dialogues, OrderError, Orders};
use jobs::subscriptions::{SubscriptionError, Subscriptions};

use super::command::{self, Command, ParseError};
use crate::admin_jobs::Actor;
use crate::command_limit::{CommandLimit, Verdict, limited_reply};

/// A message someone sent the bot.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub chat: i64,
    pub message_id: i64,
    pub user: i64,
    /// The sender's name as Telegram shows it (for the audit log).
    pub name: String,
    pub text: Option<String>,
    /// A photo (a payment receipt, in a `/buy` dialogue).
    pub has_photo: bool,
}

/// An inline button someone pressed.
#[derive(Debug, Clone, PartialEq)]
pub struct Press {
    pub callback_id: String,
    pub user: i64,
    pub name: String,
    /// The chat and message the button is on.
    pub chat: i64,
    pub message_id: i64,
    pub data: String,
}

/// An inline button: its label and the data its press sends back (at most 64 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Button {
    pub label: String,
    pub data: String,
}

impl Button {
    pub fn new(label: impl Into<String>, data: impl Into<String>) -> Self {
        Button {
            label: label.into(),
            data: data.into(),
        }
    }
}

/// What the glue does with the Bot API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send {
        chat: i64,
        text: String,
        buttons: Vec<Vec<Button>>,
    },
    Edit {
        chat: i64,
        message_id: i64,
        text: String,
        buttons: Vec<Vec<Button>>,
    },
    /// Answers a button press (the small notice Telegram shows); every press gets one.
    Answer {
        callback_id: String,
        text: Option<String>,
    },
    Forward {
        to: i64,
        from_chat: i64,
        message_id: i64,
    },
}

impl Action {
    pub fn send(chat: i64, text: impl Into<String>) -> Action {
        Action::Send {
            chat,
            text: text.into(),
            buttons: Vec::new(),
        }
    }

    pub fn answer(callback_id: &str, text: impl Into<String>) -> Action {
        Action::Answer {
            callback_id: callback_id.to_owned(),
            text: Some(text.into()),
        }
    }
}

/// A failure of ours (database), not the user's: logged, and the user told to try again.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error(transparent)]
    Orders(#[from] OrderError),
    #[error(transparent)]
    Subscriptions(#[from] SubscriptionError),
    #[error(transparent)]
    Queue(#[from] jobs::queue::QueueError),
    #[error(transparent)]
    Limits(#[from] jobs::limits::LimitError),
    /// Data from outside that cannot be what it claims (a user id that is not positive).
    #[error("{0}")]
    Invalid(String),
}

pub const SORRY: &str = "Something went wrong on our side; please try again in a minute.";

/// Everything the bot decides with. Cheap to clone.
#[derive(Clone)]
pub struct Shop {
    pub(super) settings: Arc<Settings>,
    pub(super) queue: Queue,
    pub(super) orders: Orders,
    pub(super) dialogues: Dialogues,
    pub(super) admins: BotAdmins,
    pub(super) subscriptions: Subscriptions,
    limit: CommandLimit,
    /// Wakes the notice loop ([`super::notices`]) when notices were written.
    pub(super) notices_due: Arc<tokio::sync::Notify>,
}

impl Shop {
    pub fn new(settings: Arc<Settings>, queue: Queue) -> Result<Shop, BotError> {
        let limit = CommandLimit::new(&queue, &settings.bots, Platform::Telegram)?;
        Ok(Shop {
            orders: Orders::new(&queue)?,
            dialogues: Dialogues::new(&queue)?,
            admins: BotAdmins::new(&queue)?,
            subscriptions: Subscriptions::new(&queue)?,
            limit,
            notices_due: Arc::new(tokio::sync::Notify::new()),
            settings,
            queue,
        })
    }

    /// Tells the notice loop that notices were written (a permit is kept if it is busy).
    pub(super) fn wake_notices(&self) {
        self.notices_due.notify_one();
    }

    /// The config's admins: admins, and the owners who may change the list.
    pub(super) fn is_owner(&self, user: i64) -> bool {
        self.settings.telegram.admins.contains(&user)
    }

    pub(super) async fn is_admin(&self, user: i64) -> Result<bool, BotError> {
        Ok(self.is_owner(user) || self.admins.contains(Platform::Telegram, user).await?)
    }

    /// Everyone who gets order notifications: the config's admins and the database's.
    pub(super) async fn all_admins(&self) -> Result<Vec<i64>, BotError> {
        let mut all = self.settings.telegram.admins.clone();
        for id in self.admins.list(Platform::Telegram).await? {
            if !all.contains(&id) {
                all.push(id);
            }
        }
        Ok(all)
    }

    pub(super) fn actor(&self, user: i64, name: &str) -> Actor {
        Actor::new(Platform::Telegram, user, name)
    }

    pub(super) fn audit(
        &self,
        user: i64,
        name: &str,
        action: &'static str,
        target: String,
    ) -> AuditEntry {
        AuditEntry {
            actor: self.actor(user, name).audit_name(),
            surface: "telegram",
            action,
            target,
        }
    }

    /// The per-user command rate: `Some(reply)` when this user must wait.
    async fn limited(&self, user: i64, admin: bool) -> Option<String> {
        match self.limit.check(user, admin).await {
            Verdict::Limited { retry_after } => Some(limited_reply(retry_after)),
            Verdict::Allowed | Verdict::AdminBypass => None,
        }
    }

    /// A message: a command, or a receipt photo in a `/buy` dialogue.
    pub async fn on_message(&self, message: &Incoming) -> Vec<Action> {
        match self.message(message).await {
            Ok(actions) => actions,
            Err(error) => {
                tracing::warn!(%error, chat = message.chat, "telegram message failed");
                vec![Action::send(message.chat, SORRY)]
            }
        }
    }

    /// A button press.
    pub async fn on_press(&self, press: &Press) -> Vec<Action> {
        match self.press(press).await {
            Ok(actions) => actions,
            Err(error) => {
                tracing::warn!(%error, chat = press.chat, "telegram button press failed");
                vec![Action::answer(&press.callback_id, SORRY)]
            }
        }
    }

    async fn message(&self, message: &Incoming) -> Result<Vec<Action>, BotError> {
        let admin = self.is_admin(message.user).await?;
        if let Some(reply) = self.limited(message.user, admin).await {
            return Ok(vec![Action::send(message.chat, reply)]);
        }
        let text = message.text.as_deref().unwrap_or("");
        if message.has_photo && !text.starts_with('/') {
            return self.receipt(message).await;
        }
        if command::is_admin_command(text) && !admin {
            tracing::info!(user = message.user, chat = message.chat,
                command = %text.split_whitespace().next().unwrap_or(""),
                "telegram admin command refused: not an admin");
            return Ok(vec![Action::send(
                message.chat,
                "That command is for admins only.",
            )]);
        }
        let reply = match command::parse(text) {
            Ok(command) => return self.command(message, command).await,
            Err(ParseError::Unknown(name)) => ParseError::Unknown(name).reply(),
            Err(error) => error.reply(),
        };
        Ok(vec![Action::send(message.chat, reply)])
    }

    async fn command(&self, message: &Incoming, command: Command) -> Result<Vec<Action>, BotError> {
        let chat = message.chat;
        let reply = match command {
            Command::Start => self.start(message.user).await?,
            Command::Plans => self.plans(),
            Command::Status => self.status(message.user).await?,
            Command::Link => self.link(message).await?,
            Command::Buy => return self.buy(message).await,
            Command::Cancel => {
                self.dialogues.clear(Platform::Telegram, chat).await?;
                "Cancelled. Send /buy to start again.".to_string()
            }
            admin => return self.admin_command(message, admin).await,
        };
        Ok(vec![Action::send(chat, reply)])
    }

    async fn start(&self, user: i64) -> Result<String, BotError> {
        let mut text = String::from(
            "Welcome! I sell VPN subscriptions.\n\
             /plans: what is for sale\n\
             /buy: buy or renew a subscription\n\
             /status: your subscriptions and orders\n\
             /link: get your subscription link again\n\
             /cancel: stop what you are doing",
        );
        if self.is_admin(user).await? {
            text.push_str(
                "\n\nAdmin: /provision USER_ID PLAN, /renew USER_ID PLAN|DAYS, /expire USER_ID, \
                 /failed [KIND], /retry JOB_ID, /discard JOB_ID, /stats, /admins list|add|remove",
            );
        }
        Ok(text)
    }

    fn plans(&self) -> String {
        if self.settings.plans.is_empty() {
            return "Nothing is for sale right now.".to_string();
        }
        let lines: Vec<String> = self.settings.plans.iter().map(describe_plan).collect();
        format!("Plans:\n{}\n\nSend /buy to order one.", lines.join("\n"))
    }

    async fn status(&self, user: i64) -> Result<String, BotError> {
        let user_id = user_id(user)?;
        let subscriptions = self
            .subscriptions
            .list_by_user(Platform::Telegram, user_id)
            .await?;
        let orders = self
            .orders
            .list_by_user(Platform::Telegram, user_id, 5)
            .await?;
        let mut lines = Vec::new();
        for s in &subscriptions {
            let expiry = s
                .expiry
                .map(|e| format!(", until {} UTC", e.format("%Y-%m-%d")))
                .unwrap_or_default();
            let volume = if s.volume_bytes == 0 {
                "unlimited".to_string()
            } else {
                gib(s.volume_bytes)
            };
            lines.push(format!(
                "Subscription #{} ({}): {}{expiry}, used {} of {volume}",
                s.id,
                s.plan,
                s.status,
                gib(s.usage_bytes())
            ));
        }
        for order in orders {
            let order = self.orders.refresh(order.id).await?.unwrap_or(order);
            if matches!(
                order.status,
                jobs::orders::OrderStatus::Active | jobs::orders::OrderStatus::Rejected
            ) && order.updated_at < chrono::Utc::now() - chrono::Duration::days(7)
            {
                continue;
            }
            lines.push(format!(
                "Order #{} ({}): {}",
                order.id,
                order.plan,
                order.status.describe()
            ));
        }
        if lines.is_empty() {
            return Ok("You have no subscriptions yet. Send /buy to order one.".to_string());
        }
        Ok(lines.join("\n"))
    }

    /// `/link`: the newest active subscription's link, sent again as a DM job keyed by this
    /// message.
    async fn link(&self, message: &Incoming) -> Result<String, BotError> {
        let user = user_id(message.user)?;
        let subscriptions = self
            .subscriptions
            .list_by_user(Platform::Telegram, user)
            .await?;
        let Some((id, link)) = subscriptions.iter().find_map(|s| {
            let active = s.status == jobs::subscriptions::SubscriptionStatus::Active;
            s.subscription_link
                .as_ref()
                .filter(|_| active)
                .map(|l| (s.id, l.expose().to_owned()))
        }) else {
            return Ok("You have no active subscription with a link yet. /status shows where your order is.".to_string());
        };
        let text = format!("Your subscription link (#{id}): {link}");
        let dm = jobs::kinds::SendDm::new(Recipient::new(Platform::Telegram, user), text)
            .map_err(BotError::Invalid)?;
        let options = jobs::EnqueueOptions {
            key: Some(message_key("link", message)),
            ..jobs::EnqueueOptions::default()
        };
        self.queue.enqueue(&dm, options).await?;
        Ok("I'm sending your link in a moment.".to_string())
    }
}

/// The key of what a message asked for: the same message (a redelivered update) gives the
/// same key, so its job is enqueued once.
pub(super) fn message_key(what: &str, message: &Incoming) -> String {
    format!("telegram:{what}:{}:{}", message.chat, message.message_id)
}

pub(super) fn user_id(user: i64) -> Result<UserId, BotError> {
    UserId::parse(user).map_err(BotError::Invalid)
}

pub(super) fn describe_plan(plan: &PlanSettings) -> String {
    let volume = if plan.volume_gb == 0 {
        "unlimited traffic".to_string()
    } else {
        format!("{} GB", plan.volume_gb)
    };
    format!("• {}: {volume}, {} days", plan.name, plan.days)
}

fn gib(bytes: i64) -> String {
    format!("{:.1} GB", bytes as f64 / jobs::configuration::GIB as f64)
}
