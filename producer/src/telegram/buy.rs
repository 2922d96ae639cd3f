//! `/buy`: plans as buttons → confirmation → an order in `pending_approval` → each admin gets
//! Approve/Reject buttons (and any receipt photo the customer sends) → Approve enqueues
//! `provision_client` keyed `order:ID`, Reject tells the customer (either way the customer's DM is
//! a `send_dm` job keyed `order_decision:ID`, committed with the decision). The admins' messages are
//! written with the order (or receipt) and sent by [`super::notices`], so none is lost.
//!
//! The dialogue's step is in the database (`jobq_bot_dialogues`), so a restart in the middle
//! loses nothing. Buttons carry the id of the `/buy` message that opened the dialogue (the
//! nonce): a press on an older menu is stale and answered so; the order is placed under that
//! nonce (`telegram:buy:CHAT:NONCE`), so pressing Confirm twice places one order, and the
//! decision moves the order only from `pending_approval`, so Approve twice enqueues one job.

use jobs::kinds::{Name, Platform, ProvisionClient, Recipient, SendDm, SubscriptionId};
use jobs::orders::{Decision, NewOrder, Order, OrderKind, OrderStatus};
use jobs::subscriptions::{Subscription, SubscriptionStatus};
use serde::{Deserialize, Serialize};

use super::logic::{Action, BotError, Button, Incoming, Press, Shop, describe_plan, user_id};

/// Where a chat is in `/buy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Dialogue {
    /// The plans were shown (their names in button order).
    ChoosingPlan {
        nonce: i64,
        plans: Vec<String>,
    },
    Confirming {
        nonce: i64,
        plan: String,
    },
    /// The order is placed; a photo now is its receipt.
    AwaitingReceipt {
        order: i64,
    },
}

/// A button's data, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ButtonData {
    /// `b:NONCE:INDEX`
    Plan { nonce: i64, index: usize },
    /// `b:NONCE:y`
    Confirm { nonce: i64 },
    /// `b:NONCE:n`
    Cancel { nonce: i64 },
    /// `o:ID:a`
    Approve { order: i64 },
    /// `o:ID:r`
    Reject { order: i64 },
}

impl ButtonData {
    pub fn parse(data: &str) -> Option<ButtonData> {
        let mut parts = data.split(':');
        let (scope, id, what) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let id: i64 = id.parse().ok()?;
        Some(match (scope, what) {
            ("b", "y") => ButtonData::Confirm { nonce: id },
            ("b", "n") => ButtonData::Cancel { nonce: id },
            ("b", index) => ButtonData::Plan {
                nonce: id,
                index: index.parse().ok()?,
            },
            ("o", "a") => ButtonData::Approve { order: id },
            ("o", "r") => ButtonData::Reject { order: id },
            _ => return None,
        })
    }
}

const STALE: &str = "This menu is no longer active. Send /buy to start again.";

impl Shop {
    async fn dialogue(&self, chat: i64) -> Result<Option<Dialogue>, BotError> {
        let stored = self.dialogues.get(Platform::Telegram, chat).await?;
        // A state this version cannot read (an older bot's) starts over rather than failing.
        Ok(stored.and_then(|json| serde_json::from_str(&json).ok()))
    }

    async fn set_dialogue(&self, chat: i64, dialogue: &Dialogue) -> Result<(), BotError> {
        let json = serde_json::to_string(dialogue).map_err(|e| BotError::Invalid(e.to_string()))?;
        Ok(self.dialogues.set(Platform::Telegram, chat, &json).await?)
    }

    /// `/buy`: the plans as buttons.
    pub(super) async fn buy(&self, message: &Incoming) -> Result<Vec<Action>, BotError> {
        if self.settings.plans.is_empty() {
            return Ok(vec![Action::send(
                message.chat,
                "Nothing is for sale right now.",
            )]);
        }
        let nonce = message.message_id;
        let plans: Vec<String> = self.settings.plans.iter().map(|p| p.name.clone()).collect();
        self.set_dialogue(message.chat, &Dialogue::ChoosingPlan { nonce, plans })
            .await?;
        let buttons = self
            .settings
            .plans
            .iter()
            .enumerate()
            .map(|(i, plan)| {
                let label = describe_plan(plan).trim_start_matches("• ").to_string();
                vec![Button::new(label, format!("b:{nonce}:{i}"))]
            })
            .collect();
        Ok(vec![Action::Send {
            chat: message.chat,
            text: "Choose a plan:".into(),
            buttons,
        }])
    }

    pub(super) async fn press(&self, press: &Press) -> Result<Vec<Action>, BotError> {
        let Some(data) = ButtonData::parse(&press.data) else {
            return Ok(vec![Action::answer(&press.callback_id, STALE)]);
        };
        match data {
            ButtonData::Plan { nonce, index } => self.choose(press, nonce, index).await,
            ButtonData::Confirm { nonce } => self.confirm(press, nonce).await,
            ButtonData::Cancel { nonce } => self.cancel(press, nonce).await,
            ButtonData::Approve { order } => self.decide(press, order, true).await,
            ButtonData::Reject { order } => self.decide(press, order, false).await,
        }
    }

    async fn choose(
        &self,
        press: &Press,
        nonce: i64,
        index: usize,
    ) -> Result<Vec<Action>, BotError> {
        let plan = match self.dialogue(press.chat).await? {
            Some(Dialogue::ChoosingPlan { nonce: n, plans }) if n == nonce => {
                plans.get(index).cloned()
            }
            _ => None,
        };
        let Some(plan) = plan.and_then(|name| self.settings.plan(&name).cloned()) else {
            return self.stale(press, nonce).await;
        };
        let existing = self.renewable(press.user).await?;
        let what = match &existing {
            Some(s) if s.plan == plan.name => format!("This renews your subscription #{}.", s.id),
            Some(s) => format!("This changes your subscription #{} to {}.", s.id, plan.name),
            None => "This is a new subscription.".to_string(),
        };
        self.set_dialogue(
            press.chat,
            &Dialogue::Confirming {
                nonce,
                plan: plan.name.clone(),
            },
        )
        .await?;
        let text = format!(
            "You chose {}\n{what}\nConfirm the order? Payment is arranged with an admin; \
             send a photo of the receipt here after confirming.",
            describe_plan(&plan).trim_start_matches("• ")
        );
        let buttons = vec![vec![
            Button::new("Confirm", format!("b:{nonce}:y")),
            Button::new("Cancel", format!("b:{nonce}:n")),
        ]];
        Ok(vec![
            Action::Answer {
                callback_id: press.callback_id.clone(),
                text: None,
            },
            Action::Edit {
                chat: press.chat,
                message_id: press.message_id,
                text,
                buttons,
            },
        ])
    }

    /// The customer's newest subscription that a renewal can extend.
    async fn renewable(&self, user: i64) -> Result<Option<Subscription>, BotError> {
        let list = self
            .subscriptions
            .list_by_user(Platform::Telegram, user_id(user)?)
            .await?;
        Ok(list.into_iter().find(|s| {
            matches!(
                s.status,
                SubscriptionStatus::Active
                    | SubscriptionStatus::Expired
                    | SubscriptionStatus::Disabled
            )
        }))
    }

    fn origin(chat: i64, nonce: i64) -> String {
        format!("telegram:buy:{chat}:{nonce}")
    }

    async fn confirm(&self, press: &Press, nonce: i64) -> Result<Vec<Action>, BotError> {
        let plan = match self.dialogue(press.chat).await? {
            Some(Dialogue::Confirming { nonce: n, plan }) if n == nonce => plan,
            _ => return self.stale(press, nonce).await,
        };
        let existing = self.renewable(press.user).await?;
        let kind = match &existing {
            Some(s) if s.plan == plan => OrderKind::Renew,
            Some(_) => OrderKind::Upgrade,
            None => OrderKind::New,
        };
        let new = NewOrder {
            platform: Platform::Telegram,
            user_id: user_id(press.user)?,
            chat_id: press.chat,
            plan,
            kind,
            subscription_id: existing.map(|s| s.id),
            origin_key: Self::origin(press.chat, nonce),
        };
        // The admins' notices are written with the order, in one transaction, and sent by the
        // notice loop ([`super::notices`]): a crash after this commit, a redelivered update or
        // a failed send loses none of them, and a repeated Confirm adds none.
        let admins = self.all_admins().await?;
        let placed = self
            .orders
            .place(&new, &admins, |order| {
                format!(
                    "New order #{}: {} ({}) from {} (id {}). Approve once paid.",
                    order.id,
                    order.plan,
                    describe_kind(order),
                    press.name,
                    press.user
                )
            })
            .await?;
        let order = placed.order;
        self.set_dialogue(press.chat, &Dialogue::AwaitingReceipt { order: order.id })
            .await?;
        let text = format!(
            "Order #{} placed: {}. Pay as the shop told you, then send a photo of the receipt \
             here. An admin will approve the order and you will get your link here.",
            order.id, order.plan
        );
        if placed.created {
            tracing::info!(order = order.id, user = press.user, plan = %order.plan, kind = order.kind.as_str(),
                "order placed");
        }
        self.wake_notices();
        Ok(vec![
            Action::answer(&press.callback_id, format!("Order #{} placed", order.id)),
            Action::Edit {
                chat: press.chat,
                message_id: press.message_id,
                text,
                buttons: Vec::new(),
            },
        ])
    }

    async fn cancel(&self, press: &Press, nonce: i64) -> Result<Vec<Action>, BotError> {
        let current = matches!(
            self.dialogue(press.chat).await?,
            Some(Dialogue::ChoosingPlan { nonce: n, .. } | Dialogue::Confirming { nonce: n, .. }) if n == nonce
        );
        if !current {
            return self.stale(press, nonce).await;
        }
        self.dialogues.clear(Platform::Telegram, press.chat).await?;
        Ok(vec![
            Action::answer(&press.callback_id, "Cancelled"),
            Action::Edit {
                chat: press.chat,
                message_id: press.message_id,
                text: "Cancelled. Send /buy to start again.".into(),
                buttons: Vec::new(),
            },
        ])
    }

    /// A press on a menu that is not the chat's current step: if that menu placed an order,
    /// say where the order is; else that the menu is no longer active.
    async fn stale(&self, press: &Press, nonce: i64) -> Result<Vec<Action>, BotError> {
        let placed = self
            .orders
            .by_origin(&Self::origin(press.chat, nonce))
            .await?;
        let text = match placed {
            Some(order) => {
                let order = self.orders.refresh(order.id).await?.unwrap_or(order);
                format!(
                    "Order #{} is already placed: {}.",
                    order.id,
                    order.status.describe()
                )
            }
            None => STALE.to_string(),
        };
        Ok(vec![Action::answer(&press.callback_id, text)])
    }

    /// A photo: the receipt of the chat's order awaiting one, forwarded to the admins once
    /// (through the notice loop, as an order's notices).
    pub(super) async fn receipt(&self, message: &Incoming) -> Result<Vec<Action>, BotError> {
        let Some(Dialogue::AwaitingReceipt { order }) = self.dialogue(message.chat).await? else {
            return Ok(vec![Action::send(
                message.chat,
                "I only take photos of payment receipts: send /buy first, then the receipt.",
            )]);
        };
        let Some(order) = self.orders.get(order).await? else {
            return Ok(vec![Action::send(
                message.chat,
                "That order no longer exists. Send /buy.",
            )]);
        };
        if order.status != OrderStatus::PendingApproval {
            let text = format!(
                "Order #{} is already {}.",
                order.id,
                order.status.describe()
            );
            return Ok(vec![Action::send(message.chat, text)]);
        }
        let note = format!(
            "Receipt for order #{}: {} ({}) from {} (id {}).",
            order.id,
            order.plan,
            describe_kind(&order),
            message.name,
            message.user
        );
        let admins = self.all_admins().await?;
        // Recorded with its notices in one transaction; a redelivered photo adds none (and
        // its reply, which may not have gone out the first time, is given again).
        self.orders
            .receive(order.id, message.message_id, &admins, &note)
            .await?;
        self.wake_notices();
        Ok(vec![Action::send(
            message.chat,
            format!(
                "Receipt received for order #{}. An admin will check it.",
                order.id
            ),
        )])
    }

    /// Approve or Reject, by an admin: decided once in the database.
    async fn decide(
        &self,
        press: &Press,
        order_id: i64,
        approve: bool,
    ) -> Result<Vec<Action>, BotError> {
        if !self.is_admin(press.user).await? {
            tracing::info!(
                user = press.user,
                order = order_id,
                "telegram order decision refused: not an admin"
            );
            return Ok(vec![Action::answer(
                &press.callback_id,
                "Only admins can decide orders.",
            )]);
        }
        let Some(order) = self.orders.get(order_id).await? else {
            return Ok(vec![Action::answer(
                &press.callback_id,
                format!("There is no order #{order_id}."),
            )]);
        };
        let action = if approve {
            "approve_order"
        } else {
            "reject_order"
        };
        let audit = self.audit(
            press.user,
            &press.name,
            action,
            format!("order {order_id} ({}, user {})", order.plan, order.user_id),
        );
        let decision = if approve {
            let job = match self.provision_job(&order).await? {
                Ok(job) => job,
                Err(problem) => return Ok(vec![Action::answer(&press.callback_id, problem)]),
            };
            let tell = customer_dm(
                &order,
                format!(
                    "Your order #{order_id} is approved. Your subscription is being set up; the link will arrive here shortly."
                ),
            )?;
            self.orders
                .approve(order_id, press.user, &job, &tell, &audit)
                .await?
        } else {
            let tell = customer_dm(
                &order,
                format!(
                    "Your order #{order_id} was not approved. If you paid, contact the shop with your receipt."
                ),
            )?;
            self.orders
                .reject(order_id, press.user, &tell, &audit)
                .await?
        };
        Ok(self.decided(press, decision))
    }

    /// What approving `order` enqueues: a new subscription on the default panel (the first
    /// `[[panels]]` entry), or a renewal/upgrade of its subscription on that one's panel.
    async fn provision_job(
        &self,
        order: &Order,
    ) -> Result<Result<ProvisionClient, String>, BotError> {
        let panel = match order.subscription_id {
            Some(id) => match self.subscriptions.get(id).await? {
                Some(s) => s.panel,
                None => {
                    return Ok(Err(format!(
                        "Subscription #{id} of order #{} no longer exists.",
                        order.id
                    )));
                }
            },
            None => match self.settings.panels.first() {
                Some(panel) => panel.name.clone(),
                None => {
                    return Ok(Err(
                        "No panel is configured ([[panels]]): cannot provision.".into(),
                    ));
                }
            },
        };
        let job = build_job(&panel, &order.plan, order.user_id, order.subscription_id)
            .map_err(BotError::Invalid)?;
        Ok(Ok(job))
    }

    fn decided(&self, press: &Press, decision: Decision) -> Vec<Action> {
        let edit = |text: String| Action::Edit {
            chat: press.chat,
            message_id: press.message_id,
            text,
            buttons: Vec::new(),
        };
        match decision {
            Decision::NotFound => vec![Action::answer(
                &press.callback_id,
                "There is no such order.",
            )],
            Decision::AlreadyDecided(order) => {
                let by = order
                    .decided_by
                    .map(|id| format!(" by admin {id}"))
                    .unwrap_or_default();
                let text = format!(
                    "Order #{} was already decided{by}: {}.",
                    order.id, order.status
                );
                vec![Action::answer(&press.callback_id, text.clone()), edit(text)]
            }
            Decision::Decided(order) if order.status == OrderStatus::Approved => {
                let job = order
                    .job_id
                    .map(|id| format!(", job #{id}"))
                    .unwrap_or_default();
                tracing::info!(order = order.id, admin = press.user, "order approved");
                vec![
                    Action::answer(&press.callback_id, format!("Order #{} approved", order.id)),
                    edit(format!(
                        "Order #{} ({}, user {}) approved by {}{job}.",
                        order.id, order.plan, order.user_id, press.name
                    )),
                ]
            }
            Decision::Decided(order) => {
                tracing::info!(order = order.id, admin = press.user, "order rejected");
                vec![
                    Action::answer(&press.callback_id, format!("Order #{} rejected", order.id)),
                    edit(format!(
                        "Order #{} ({}, user {}) rejected by {}.",
                        order.id, order.plan, order.user_id, press.name
                    )),
                ]
            }
        }
    }
}

/// The customer's DM about a decision: a `send_dm` job the decision commits with (the worker
/// sends it, so a bot that dies right after deciding still tells the customer, once).
fn customer_dm(order: &Order, text: String) -> Result<SendDm, BotError> {
    let to = Recipient::new(Platform::Telegram, order.user_id);
    SendDm::new(to, text).map_err(BotError::Invalid)
}

/// An order's Approve/Reject buttons, on each admin notice.
pub fn decision_buttons(order: i64) -> Vec<Vec<Button>> {
    vec![vec![
        Button::new("Approve", format!("o:{order}:a")),
        Button::new("Reject", format!("o:{order}:r")),
    ]]
}

/// A `provision_client` job; `renew` for a renewal or upgrade.
pub(super) fn build_job(
    panel: &str,
    plan: &str,
    user: jobs::kinds::UserId,
    renew: Option<SubscriptionId>,
) -> Result<ProvisionClient, String> {
    Ok(ProvisionClient {
        panel: Name::parse_as("panel", panel.to_string())?,
        plan: Name::parse_as("plan", plan.to_string())?,
        user: Recipient::new(Platform::Telegram, user),
        renew,
    })
}

fn describe_kind(order: &Order) -> String {
    match (order.kind, order.subscription_id) {
        (OrderKind::Renew, Some(id)) => format!("renewal of #{id}"),
        (OrderKind::Upgrade, Some(id)) => format!("upgrade of #{id}"),
        _ => "new".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn button_data_round_trips_and_rejects_junk() {
        assert_eq!(
            ButtonData::parse("b:17:2"),
            Some(ButtonData::Plan {
                nonce: 17,
                index: 2
            })
        );
        assert_eq!(
            ButtonData::parse("b:17:y"),
            Some(ButtonData::Confirm { nonce: 17 })
        );
        assert_eq!(
            ButtonData::parse("b:17:n"),
            Some(ButtonData::Cancel { nonce: 17 })
        );
        assert_eq!(
            ButtonData::parse("o:5:a"),
            Some(ButtonData::Approve { order: 5 })
        );
        assert_eq!(
            ButtonData::parse("o:5:r"),
            Some(ButtonData::Reject { order: 5 })
        );
        for junk in ["", "b", "b:x:1", "o:5:z", "b:1:2:3", "x:1:a", "b:1:-1"] {
            assert_eq!(ButtonData::parse(junk), None, "{junk}");
        }
    }

    #[test]
    fn dialogue_state_is_stable_json() {
        let state = Dialogue::Confirming {
            nonce: 9,
            plan: "basic".into(),
        };
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(json, r#"{"step":"confirming","nonce":9,"plan":"basic"}"#);
        assert_eq!(serde_json::from_str::<Dialogue>(&json).unwrap(), state);
    }
}
