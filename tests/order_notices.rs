//! Admin notices of orders are kept until sent, then forgotten after their retention: a sent or
//! given-up notice older than it is deleted, a recent one and an unsent one are kept.

mod support;

use std::time::Duration;

use jobs::orders::Orders;
use support::*;

on_both_backends!(old_sent_notices_are_forgotten_and_pending_ones_kept);

const DAY_US: i64 = 86_400_000_000;

async fn old_sent_notices_are_forgotten_and_pending_ones_kept(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let now = chrono::Utc::now().timestamp_micros();
    // (admin, sent, given up): sent 40 days ago, given up 40 days ago, sent yesterday, unsent.
    let rows = [
        (1, Some(now - 40 * DAY_US), None),
        (2, None, Some(now - 40 * DAY_US)),
        (3, Some(now - DAY_US), None),
        (4, None, None),
    ];
    insert(&queue, &rows).await;
    let orders = Orders::new(&queue).expect("orders");
    let pruned = orders
        .prune_notices(Duration::from_secs(30 * 86_400))
        .await
        .expect("prune");
    assert_eq!(pruned, 2, "the sent and the given-up notice past 30 days");
    assert_eq!(admins_left(&queue).await, vec![3, 4]);
}

/// One order and a notice per row, with times in microseconds (as timestamps on PostgreSQL).
async fn insert(queue: &jobs::Queue, rows: &[(i64, Option<i64>, Option<i64>)]) {
    if let Some(pool) = queue.db().postgres_pool() {
        sqlx::query(
            "INSERT INTO jobq_orders (id, platform, user_id, chat_id, plan, kind, origin_key)
             VALUES (1, 'telegram', 9, 9, 'basic', 'new', 'o1')",
        )
        .execute(pool)
        .await
        .expect("order");
        for (admin, sent, gave_up) in rows {
            let at = |us: &Option<i64>| us.and_then(chrono::DateTime::from_timestamp_micros);
            sqlx::query(
                "INSERT INTO jobq_order_notices
                     (order_id, admin_id, what, next_attempt_at, sent_at, gave_up_at)
                 VALUES (1, $1, 'message', now(), $2, $3)",
            )
            .bind(admin)
            .bind(at(sent))
            .bind(at(gave_up))
            .execute(pool)
            .await
            .expect("notice");
        }
        return;
    }
    let pool = queue.db().sqlite_pool().expect("one backend");
    sqlx::query(
        "INSERT INTO jobq_orders (id, platform, user_id, chat_id, plan, kind, origin_key,
                                  created_at, updated_at)
         VALUES (1, 'telegram', 9, 9, 'basic', 'new', 'o1', 0, 0)",
    )
    .execute(pool)
    .await
    .expect("order");
    for (admin, sent, gave_up) in rows {
        sqlx::query(
            "INSERT INTO jobq_order_notices
                 (order_id, admin_id, what, next_attempt_at, sent_at, gave_up_at, created_at)
             VALUES (1, ?1, 'message', 0, ?2, ?3, 0)",
        )
        .bind(admin)
        .bind(sent)
        .bind(gave_up)
        .execute(pool)
        .await
        .expect("notice");
    }
}

async fn admins_left(queue: &jobs::Queue) -> Vec<i64> {
    let sql = "SELECT admin_id FROM jobq_order_notices ORDER BY admin_id";
    match (queue.db().postgres_pool(), queue.db().sqlite_pool()) {
        (Some(pool), _) => sqlx::query_scalar(sql).fetch_all(pool).await.expect("read"),
        (_, Some(pool)) => sqlx::query_scalar(sql).fetch_all(pool).await.expect("read"),
        _ => Vec::new(),
    }
}
