//! Each chat's dialogue state with a bot (`jobq_bot_dialogues`, migration 0004).

use crate::Queue;
use crate::db::{Db, Fields, Stamp, on_conn};
use crate::kinds::Platform;

use super::OrderError;

/// Each chat's dialogue state with a bot, as JSON the bot writes (opaque here). Cheap to clone.
#[derive(Clone)]
pub struct Dialogues {
    db: Db,
}

impl Dialogues {
    pub fn new(queue: &Queue) -> Result<Self, OrderError> {
        Ok(Dialogues {
            db: queue.db().clone(),
        })
    }

    pub async fn get(&self, platform: Platform, chat: i64) -> Result<Option<String>, OrderError> {
        let sql = "SELECT state FROM jobq_bot_dialogues WHERE platform = $1 AND chat_id = $2";
        Ok(on_conn!(self.db.exec(), |c| {
            let row = sqlx::query(sql)
                .bind(platform.as_str())
                .bind(chat)
                .fetch_optional(&mut *c)
                .await?;
            row.as_ref()
                .map(|r| Fields::new(r, "jobq_bot_dialogues", key(platform, chat)).get("state"))
                .transpose()?
        }))
    }

    pub async fn set(&self, platform: Platform, chat: i64, state: &str) -> Result<(), OrderError> {
        let sql = "INSERT INTO jobq_bot_dialogues (platform, chat_id, state, updated_at)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (platform, chat_id)
                   DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at";
        on_conn!(self.db.exec(), |c| {
            sqlx::query(sql)
                .bind(platform.as_str())
                .bind(chat)
                .bind(state)
                .bind(Stamp::now())
                .execute(&mut *c)
                .await?;
        });
        Ok(())
    }

    pub async fn clear(&self, platform: Platform, chat: i64) -> Result<(), OrderError> {
        let sql = "DELETE FROM jobq_bot_dialogues WHERE platform = $1 AND chat_id = $2";
        on_conn!(self.db.exec(), |c| {
            sqlx::query(sql)
                .bind(platform.as_str())
                .bind(chat)
                .execute(&mut *c)
                .await?;
        });
        Ok(())
    }
}

/// A dialogue's row, as messages name it: its primary key.
fn key(platform: Platform, chat: i64) -> String {
    format!("{platform}:{chat}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::test_queue;

    #[tokio::test]
    async fn a_chats_state_is_kept_replaced_and_cleared() {
        let (_dir, queue) = test_queue().await;
        let dialogues = Dialogues::new(&queue).expect("dialogues");
        let tg = Platform::Telegram;
        assert_eq!(dialogues.get(tg, 5).await.expect("get"), None);
        dialogues.set(tg, 5, r#"{"step":1}"#).await.expect("set");
        dialogues
            .set(tg, 5, r#"{"step":2}"#)
            .await
            .expect("set again");
        dialogues
            .set(Platform::Discord, 5, "other")
            .await
            .expect("set");
        let state = dialogues.get(tg, 5).await.expect("get");
        assert_eq!(
            state.as_deref(),
            Some(r#"{"step":2}"#),
            "the last write wins"
        );
        dialogues.clear(tg, 5).await.expect("clear");
        assert_eq!(dialogues.get(tg, 5).await.expect("get"), None);
        let other = dialogues.get(Platform::Discord, 5).await.expect("get");
        assert_eq!(
            other.as_deref(),
            Some("other"),
            "each platform's chats apart"
        );
    }
}
