//! `send_dm`: one direct message to a Telegram or Discord user, sent once per job key.
//!
//! 1. **Ledger first.** The ledger key is the job's idempotency key, else `job:<id>`
//!    ([`jobs::ledger::ledger_key`]). A key already in `jobq_sent_messages` means an earlier
//!    attempt (or an earlier job with the same key) sent the message: nothing is sent, the job
//!    succeeds.
//! 2. **Rate limits** (Telegram), shared by every worker process through the database:
//!    `telegram:chat:<id>` at `[telegram] messages_per_chat_per_second` and `telegram:bot` at
//!    `messages_per_second`, each evenly spaced (burst 1). A turn not free within
//!    [`MAX_TURN_WAIT`] reschedules the job durably (`RetryAfter`) instead of holding a worker
//!    slot. Discord has no local limit: its 429s are obeyed (`RetryAfter`, never sooner).
//! 3. **Send**, errors classified by [`crate::chat`]: blocked, deactivated, unknown chat, closed
//!    DMs, a bad token: failed for good; 429: retry no sooner than it says; network, 5xx,
//!    timeouts: retry after the kind's backoff. No token for the platform: failed for good,
//!    naming the variable.
//! 4. **Record** the send in the ledger (insert-if-absent).
//!
//! **The one window that remains:** a message sent but not yet recorded (the worker dies, or
//! the platform's answer is lost on the way back, between the send and the insert) is sent
//! again by the retry: at-least-once in that window only. No protocol closes it: neither Bot
//! API nor Discord offers an idempotency key on sends, and recording before sending would turn
//! a failed send into a lost message instead.

use std::time::Duration;

use async_trait::async_trait;
use jobs::configuration::TelegramSettings;
use jobs::kinds::{Platform, Recipient, SendDm};
use jobs::ledger::{Ledger, SentEntry, ledger_key};
use jobs::limits::{Limits, Rate};

use crate::chat::{ChatClients, ChatError, ChatErrorKind};
use crate::handler::{Handler, JobContext, JobError};

/// The longest a DM waits in its worker slot for a rate-limit turn before it is rescheduled.
pub const MAX_TURN_WAIT: Duration = Duration::from_secs(2);

/// Sends `send_dm` jobs.
pub struct SendDmHandler {
    chat: ChatClients,
    bot_rate: Rate,
    chat_rate: Rate,
}

impl SendDmHandler {
    pub fn new(chat: ChatClients, telegram: &TelegramSettings) -> Self {
        SendDmHandler {
            chat,
            bot_rate: Rate::per_second(telegram.messages_per_second),
            chat_rate: Rate::per_second(telegram.messages_per_chat_per_second),
        }
    }

    /// A turn of the chat's limit, then of the bot's (the stricter first, so a chat waiting
    /// for its turn does not spend the bot's).
    async fn take_telegram_turns(&self, limits: &Limits, user: Recipient) -> Result<(), JobError> {
        let chat = format!("telegram:chat:{}", user.id.get());
        take_turn(limits, &chat, self.chat_rate).await?;
        take_turn(limits, "telegram:bot", self.bot_rate).await
    }
}

async fn take_turn(limits: &Limits, name: &str, rate: Rate) -> Result<(), JobError> {
    match limits.take_within(name, rate, MAX_TURN_WAIT).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(wait)) => Err(JobError::Snooze {
            after: wait,
            reason: format!("rate limit {name}: no turn within {MAX_TURN_WAIT:?}"),
        }),
        Err(error) => Err(JobError::retry(error)),
    }
}

/// A chat error as the job's outcome: a 429 is "not now" (snoozed, no attempt spent).
pub fn chat_job_error(error: &ChatError) -> JobError {
    let reason = format!("send_dm: {error}");
    match error.kind {
        ChatErrorKind::Permanent => JobError::Permanent(reason),
        ChatErrorKind::RetryAfter(after) => JobError::Snooze { after, reason },
        ChatErrorKind::Retryable => JobError::Retry(reason),
    }
}

#[async_trait]
impl Handler<SendDm> for SendDmHandler {
    #[tracing::instrument(skip_all, fields(job = ctx.id, platform = job.user().platform.as_str()))]
    async fn handle(&self, job: SendDm, ctx: &JobContext) -> Result<(), JobError> {
        let user = job.user();
        let key = ledger_key(ctx.key.as_deref(), ctx.id);
        let ledger = Ledger::new(&ctx.queue);
        if let Some(sent) = ledger.get(&key).await.map_err(JobError::retry)? {
            tracing::info!(
                sent_by_job = sent.job_id,
                sent_at = %sent.sent_at,
                "already sent under this key: nothing to do"
            );
            return Ok(());
        }
        let messenger = self
            .chat
            .get(user.platform)
            .map_err(|e| chat_job_error(&e))?;
        if user.platform == Platform::Telegram {
            let limits = Limits::new(&ctx.queue);
            self.take_telegram_turns(&limits, user).await?;
        }
        let sent = messenger
            .send_dm(user.id, job.text())
            .await
            .map_err(|e| chat_job_error(&e))?;
        tracing::info!(message = %sent.message_id, "dm sent");
        let entry = SentEntry {
            key,
            platform: user.platform,
            user_id: user.id.get(),
            message_id: Some(sent.message_id),
            job_id: Some(ctx.id),
        };
        // The message is out: the job succeeds even if the record fails (a retry would send
        // it again); only a crash before completion could then repeat it.
        if let Err(error) = ledger.record(&entry).await {
            tracing::warn!(%error, "sent, but the ledger did not record it");
        }
        Ok(())
    }
}
