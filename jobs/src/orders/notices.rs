//! The admins' notices of orders (migration 0005), and the customers' receipts that bring them.
//!
//! A notice is written in the transaction that places its order or records its receipt, so a
//! crash before it goes out loses none; the bot claims what is due ([`Orders::claim_notices`]),
//! sends it and reports back, retrying with backoff. A receipt is recorded once per message
//! (insert-if-absent), so a redelivered update brings no second set of notices.

use std::time::Duration;

use super::{OrderError, Orders};
use crate::db::{DbError, Exec, Fields, Stamp, on_conn, row_id};

const TABLE: &str = "jobq_order_notices";

/// What a notice sends (the column `what`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NoticeWhat {
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

    fn parse(text: &str) -> Result<Self, String> {
        [NoticeWhat::Message, NoticeWhat::Forward]
            .into_iter()
            .find(|w| w.as_str() == text)
            .ok_or_else(|| format!("unknown notice {text:?}"))
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

/// How long from `now` until `next`, if any (zero when it is past).
fn until(next: Option<Stamp>, now: Stamp) -> Option<Duration> {
    next.map(|at| (at.0 - now.0).to_std().unwrap_or_default())
}

/// Writes a notice due now, unless the same one is there (same order, receipt, kind, admin).
pub(super) async fn insert_notice(
    exec: Exec<'_>,
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
    on_conn!(exec, |c| {
        sqlx::query(sql)
            .bind(order)
            .bind(admin)
            .bind(receipt_message_id)
            .bind(what.as_str())
            .bind(text)
            .bind(Stamp::now())
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
        let added = on_conn!(tx.exec(), |c| {
            sqlx::query(sql)
                .bind(order)
                .bind(message_id)
                .bind(Stamp::now())
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        if added != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        for admin in admins {
            insert_notice(
                tx.exec(),
                order,
                *admin,
                message_id,
                NoticeWhat::Forward,
                "",
            )
            .await?;
            insert_notice(
                tx.exec(),
                order,
                *admin,
                message_id,
                NoticeWhat::Message,
                text,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The receipt message ids of an order, oldest first.
    pub async fn receipts(&self, order: i64) -> Result<Vec<i64>, OrderError> {
        let sql = "SELECT message_id FROM jobq_order_receipts WHERE order_id = $1
                   ORDER BY received_at, message_id";
        Ok(on_conn!(self.db.exec(), |c| {
            let rows = sqlx::query(sql).bind(order).fetch_all(&mut *c).await?;
            // The message id is the key being read, so the row is named by its order.
            let of_order = format!("of order {order}");
            rows.iter()
                .map(|r| Fields::new(r, "jobq_order_receipts", &of_order).get("message_id"))
                .collect::<Result<Vec<i64>, DbError>>()?
        }))
    }

    /// Claims up to `limit` notices that are due, oldest first: each one's attempt is counted
    /// and its next attempt pushed `lease` out, so a process that dies while sending leaves it
    /// to be retried after the lease (it may then arrive twice: the one window), and two
    /// processes never claim the same notice at once.
    pub async fn claim_notices(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<Notice>, OrderError> {
        let due = format!(
            "SELECT n.id, n.order_id, n.admin_id, o.chat_id, n.receipt_message_id, n.what, n.text
             {NOTICES_PENDING} AND n.next_attempt_at <= $1 ORDER BY n.id LIMIT $2"
        );
        let claim = "UPDATE jobq_order_notices SET attempts = attempts + 1, next_attempt_at = $2
                     WHERE id = $1 AND sent_at IS NULL AND gave_up_at IS NULL
                       AND next_attempt_at <= $3
                     RETURNING attempts";
        let now = Stamp::now();
        let due: Vec<Notice> = on_conn!(self.db.exec(), |c| {
            let rows = sqlx::query(&due)
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&mut *c)
                .await?;
            rows.iter()
                .map(|r| {
                    let id = row_id(r, TABLE)?;
                    let f = Fields::new(r, TABLE, id);
                    let order_id = f.get("order_id")?;
                    let receipt = f.get("receipt_message_id")?;
                    let text = f.get("text")?;
                    let kind = match f.parse("what", |what: String| NoticeWhat::parse(&what))? {
                        NoticeWhat::Forward => NoticeKind::Forward {
                            message_id: receipt,
                        },
                        NoticeWhat::Message => NoticeKind::Message { text },
                    };
                    Ok(Notice {
                        id,
                        order_id,
                        admin_id: f.get("admin_id")?,
                        // The order's column, so a bad value names the order's row.
                        customer_chat: Fields::new(r, "jobq_orders", order_id).get("chat_id")?,
                        kind,
                        attempts: 0,
                    })
                })
                .collect::<Result<Vec<_>, DbError>>()?
        });
        let mut claimed = Vec::new();
        for notice in due {
            let now = Stamp::now();
            let attempts: Option<i32> = on_conn!(self.db.exec(), |c| {
                let row = sqlx::query(claim)
                    .bind(notice.id)
                    .bind(now.after(lease))
                    .bind(now)
                    .fetch_optional(&mut *c)
                    .await?;
                row.as_ref()
                    .map(|r| Fields::new(r, TABLE, notice.id).get("attempts"))
                    .transpose()?
            });
            let Some(attempts) = attempts else {
                continue; // another process claimed it first
            };
            claimed.push(Notice { attempts, ..notice });
        }
        Ok(claimed)
    }

    /// How long until the next pending notice is due (zero if one is), `None` if none waits.
    pub async fn next_notice_in(&self) -> Result<Option<Duration>, OrderError> {
        // The earliest row rather than MIN(): the same time, read from a row that a bad value
        // can be named by.
        let sql = format!(
            "SELECT n.id, n.next_attempt_at {NOTICES_PENDING}
             ORDER BY n.next_attempt_at, n.id LIMIT 1"
        );
        let now = Stamp::now();
        let next: Option<Stamp> = on_conn!(self.db.exec(), |c| {
            let row = sqlx::query(&sql).fetch_optional(&mut *c).await?;
            row.as_ref()
                .map(|r| Fields::new(r, TABLE, row_id(r, TABLE)?).get("next_attempt_at"))
                .transpose()?
        });
        Ok(until(next, now))
    }

    /// A claimed notice went out.
    pub async fn notice_sent(&self, id: i64) -> Result<(), OrderError> {
        let sql = "UPDATE jobq_order_notices SET sent_at = $2, last_error = NULL WHERE id = $1";
        on_conn!(self.db.exec(), |c| {
            sqlx::query(sql)
                .bind(id)
                .bind(Stamp::now())
                .execute(&mut *c)
                .await?;
        });
        Ok(())
    }

    /// A claimed notice failed: try again after `retry_in`. `error` must be free of secrets.
    pub async fn notice_failed(
        &self,
        id: i64,
        retry_in: Duration,
        error: &str,
    ) -> Result<(), OrderError> {
        let sql = "UPDATE jobq_order_notices SET next_attempt_at = $2, last_error = $3
                   WHERE id = $1 AND sent_at IS NULL";
        on_conn!(self.db.exec(), |c| {
            sqlx::query(sql)
                .bind(id)
                .bind(Stamp::now().after(retry_in))
                .bind(error)
                .execute(&mut *c)
                .await?;
        });
        Ok(())
    }

    /// Forgets notices sent or given up more than `older_than` ago (a redelivered update is
    /// days old at most, so their rows are no longer needed to keep it from notifying twice).
    /// Returns how many were deleted.
    pub async fn prune_notices(&self, older_than: Duration) -> Result<u64, OrderError> {
        let sql = "DELETE FROM jobq_order_notices WHERE sent_at < $1 OR gave_up_at < $1";
        Ok(on_conn!(self.db.exec(), |c| {
            sqlx::query(sql)
                .bind(Stamp::now().before(older_than))
                .execute(&mut *c)
                .await?
                .rows_affected()
        }))
    }

    /// A claimed notice cannot be sent (the admin blocked the bot, say): not tried again.
    pub async fn notice_given_up(&self, id: i64, error: &str) -> Result<(), OrderError> {
        let sql = "UPDATE jobq_order_notices SET gave_up_at = $2, last_error = $3
                   WHERE id = $1 AND sent_at IS NULL";
        on_conn!(self.db.exec(), |c| {
            sqlx::query(sql)
                .bind(id)
                .bind(Stamp::now())
                .bind(error)
                .execute(&mut *c)
                .await?;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::{Platform, UserId};
    use crate::orders::{NewOrder, OrderKind, test_queue};

    #[test]
    fn what_a_notice_sends_round_trips_its_name() {
        for what in [NoticeWhat::Message, NoticeWhat::Forward] {
            assert_eq!(NoticeWhat::parse(what.as_str()), Ok(what));
        }
        assert!(NoticeWhat::parse("photo").is_err());
    }

    #[test]
    fn the_wait_is_zero_once_due() {
        let now = Stamp::now();
        let later = now.after(Duration::from_secs(90));
        assert_eq!(until(None, now), None);
        assert_eq!(
            until(Some(now.before(Duration::from_secs(5))), now),
            Some(Duration::ZERO)
        );
        assert_eq!(until(Some(later), now), Some(Duration::from_secs(90)));
    }

    #[tokio::test]
    async fn a_claimed_notice_is_leased_retried_and_sent_once() {
        let (_dir, queue) = test_queue().await;
        let orders = Orders::new(&queue).expect("orders");
        let new = NewOrder {
            platform: Platform::Telegram,
            user_id: UserId::parse(9).expect("id"),
            chat_id: 9,
            plan: "basic".into(),
            kind: OrderKind::New,
            subscription_id: None,
            origin_key: "telegram:buy:9:1".into(),
        };
        let placed = orders
            .place(&new, &[1], |order| format!("order {}", order.id))
            .await
            .expect("place");
        let lease = Duration::from_secs(60);
        let claimed = orders.claim_notices(10, lease).await.expect("claim");
        assert_eq!(claimed.len(), 1);
        let notice = &claimed[0];
        let text = format!("order {}", placed.order.id);
        assert_eq!(notice.kind, NoticeKind::Message { text });
        assert_eq!(
            (notice.admin_id, notice.customer_chat, notice.attempts),
            (1, 9, 1)
        );
        assert!(
            orders
                .claim_notices(10, lease)
                .await
                .expect("claim")
                .is_empty(),
            "leased"
        );
        let wait = orders
            .next_notice_in()
            .await
            .expect("next")
            .expect("one waits");
        assert!(wait > Duration::from_secs(50) && wait <= lease, "{wait:?}");

        orders
            .notice_failed(notice.id, Duration::ZERO, "busy")
            .await
            .expect("failed");
        let again = orders.claim_notices(10, lease).await.expect("claim");
        assert_eq!(
            again.iter().map(|n| n.attempts).collect::<Vec<_>>(),
            vec![2]
        );
        orders.notice_sent(notice.id).await.expect("sent");
        assert_eq!(
            orders.next_notice_in().await.expect("next"),
            None,
            "nothing waits"
        );

        // A receipt brings a forward and a notice per admin, once however often it arrives.
        let order = placed.order.id;
        assert!(
            orders
                .receive(order, 77, &[1], "paid?")
                .await
                .expect("receive")
        );
        assert!(
            !orders
                .receive(order, 77, &[1], "paid?")
                .await
                .expect("again")
        );
        assert_eq!(orders.receipts(order).await.expect("receipts"), vec![77]);
        let kinds: Vec<NoticeKind> = orders
            .claim_notices(10, lease)
            .await
            .expect("claim")
            .into_iter()
            .map(|n| n.kind)
            .collect();
        let paid = NoticeKind::Message {
            text: "paid?".into(),
        };
        assert_eq!(kinds, vec![NoticeKind::Forward { message_id: 77 }, paid]);
    }
}
