//! The admins' messages about orders, sent until they arrive: `/buy` writes them (a notice of
//! each new order to each admin, and for each receipt a forward and a notice) in the same
//! transaction as the order or the receipt (`jobs::orders`), and this loop sends what is due.
//!
//! A notice is claimed before it is sent (its next attempt pushed out by [`LEASE`]), recorded
//! as sent after; a failure is retried with backoff (a 429's `retry_after` honoured), and a
//! chat that cannot receive (the admin blocked the bot, the chat is gone) is given up and
//! logged. So a crash after the order commits, a redelivered update, a 429 or a 5xx loses no
//! notice; a crash between a send and its record (the one window) sends it again after the
//! lease. The loop runs beside the update loop and never holds it up; it wakes when the bot
//! writes notices, when the next retry is due, and every [`IDLE`] for notices written
//! elsewhere. Notices of an order decided meanwhile are not sent (their buttons are stale).

use std::time::Duration;

use jobs::orders::{Notice, NoticeKind};
use teloxide::payloads::SendMessageSetters;
use teloxide::requests::Requester;
use teloxide::types::ChatId;
use teloxide::{ApiError, RequestError};

use super::buy::decision_buttons;
use super::glue::{Connection, keyboard, message_id};
use super::logic::Shop;

/// How long a claimed notice is left to its sender before another attempt may take it.
pub const LEASE: Duration = Duration::from_secs(60);
/// The longest the loop sleeps without looking at the database.
const IDLE: Duration = Duration::from_secs(30);
/// Notices claimed at a time.
const BATCH: u32 = 20;
/// Attempts before a notice is given up (about a day with the backoff below).
const MAX_ATTEMPTS: i32 = 30;

/// The wait before attempt `attempts + 1`: 1 s, doubling, at most an hour.
pub fn backoff(attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(12);
    Duration::from_secs(1u64 << doublings).min(Duration::from_secs(3600))
}

/// What to do after a failed send.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    RetryIn(Duration),
    GiveUp,
}

fn after_failure(error: &RequestError, attempts: i32) -> Next {
    match error {
        RequestError::RetryAfter(after) => Next::RetryIn(after.duration().max(backoff(1))),
        RequestError::Api(
            ApiError::BotBlocked
            | ApiError::ChatNotFound
            | ApiError::UserDeactivated
            | ApiError::CantInitiateConversation
            | ApiError::BotKicked
            | ApiError::BotKickedFromSupergroup
            | ApiError::MessageToForwardNotFound,
        ) => Next::GiveUp,
        _ if attempts >= MAX_ATTEMPTS => Next::GiveUp,
        _ => Next::RetryIn(backoff(attempts)),
    }
}

/// Sends due notices until the task is dropped.
pub async fn run(conn: Connection, shop: Shop) {
    const KEEP: Duration = Duration::from_secs(30 * 24 * 60 * 60);
    const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);
    let mut pruned_at: Option<std::time::Instant> = None;
    loop {
        if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            pruned_at = Some(std::time::Instant::now());
            if let Err(error) = shop.orders.prune_notices(KEEP).await {
                tracing::warn!(%error, "cannot forget old admin notices; will try again");
            }
        }
        let full = match shop.orders.claim_notices(BATCH, LEASE).await {
            Ok(batch) => {
                let full = batch.len() == BATCH as usize;
                for notice in batch {
                    send(&conn, &shop, notice).await;
                }
                full
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the admin notices to send");
                false
            }
        };
        if full {
            continue;
        }
        let wait = match shop.orders.next_notice_in().await {
            Ok(Some(due)) => due.min(IDLE),
            Ok(None) => IDLE,
            Err(error) => {
                tracing::warn!(%error, "cannot read when the next admin notice is due");
                Duration::from_secs(5)
            }
        };
        // Never spin: a notice due now but claimed elsewhere is pushed out by its lease.
        let wait = wait.max(Duration::from_millis(50));
        tokio::select! {
            () = shop.notices_due.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

async fn send(conn: &Connection, shop: &Shop, notice: Notice) {
    let admin = ChatId(notice.admin_id);
    let result = match &notice.kind {
        NoticeKind::Message { text } => conn
            .bot()
            .send_message(admin, text.clone())
            .reply_markup(keyboard(&decision_buttons(notice.order_id)))
            .await
            .map(drop),
        NoticeKind::Forward { message_id: id } => conn
            .bot()
            .forward_message(admin, ChatId(notice.customer_chat), message_id(*id))
            .await
            .map(drop),
    };
    let recorded = match result {
        Ok(()) => {
            tracing::info!(
                order = notice.order_id,
                admin = notice.admin_id,
                notice = notice.id,
                "admin notified of an order"
            );
            shop.orders.notice_sent(notice.id).await
        }
        Err(error) => {
            let text = conn.describe(&error);
            match after_failure(&error, notice.attempts) {
                Next::RetryIn(delay) => {
                    tracing::warn!(order = notice.order_id, admin = notice.admin_id,
                        notice = notice.id, attempts = notice.attempts, error = %text,
                        retry_in_ms = delay.as_millis() as u64,
                        "an admin notice failed; it will be sent again");
                    shop.orders.notice_failed(notice.id, delay, &text).await
                }
                Next::GiveUp => {
                    tracing::warn!(order = notice.order_id, admin = notice.admin_id,
                        notice = notice.id, attempts = notice.attempts, error = %text,
                        "an admin notice cannot be sent; given up");
                    shop.orders.notice_given_up(notice.id, &text).await
                }
            }
        }
    };
    if let Err(error) = recorded {
        // Left claimed: sent again after the lease.
        tracing::warn!(%error, notice = notice.id, "cannot record an admin notice's outcome");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_an_hour() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(40), Duration::from_secs(3600));
    }

    #[test]
    fn blocked_chats_are_given_up_and_the_rest_retried() {
        assert_eq!(
            after_failure(&RequestError::Api(ApiError::BotBlocked), 1),
            Next::GiveUp
        );
        let unknown = RequestError::Api(ApiError::Unknown("Bad Gateway".into()));
        assert_eq!(
            after_failure(&unknown, 3),
            Next::RetryIn(Duration::from_secs(4))
        );
        assert_eq!(after_failure(&unknown, MAX_ATTEMPTS), Next::GiveUp);
        let after = RequestError::RetryAfter(teloxide::types::Seconds::from_seconds(7));
        assert_eq!(
            after_failure(&after, 1),
            Next::RetryIn(Duration::from_secs(7))
        );
    }
}
