//! The bot admins added at run time (`jobq_bot_admins`, migration 0004), each change audited in
//! its own transaction.

use crate::Queue;
use crate::audit::AuditEntry;
use crate::db::{Db, DbError, Fields, Stamp, on_conn};
use crate::kinds::{Platform, UserId};

use super::{OrderError, write_audit};

/// The bot admins added at run time (the config's admins are admins too, and decide who else
/// is). Cheap to clone.
#[derive(Clone)]
pub struct BotAdmins {
    db: Db,
    queue: Queue,
}

impl BotAdmins {
    pub fn new(queue: &Queue) -> Result<Self, OrderError> {
        Ok(BotAdmins {
            db: queue.db().clone(),
            queue: queue.clone(),
        })
    }

    /// The admins in the database, by user id.
    pub async fn list(&self, platform: Platform) -> Result<Vec<i64>, OrderError> {
        let sql = "SELECT user_id FROM jobq_bot_admins WHERE platform = $1 ORDER BY user_id";
        Ok(on_conn!(self.db.exec(), |c| {
            let rows = sqlx::query(sql)
                .bind(platform.as_str())
                .fetch_all(&mut *c)
                .await?;
            // The user id is the key being read, so the row is named by its platform.
            let of_platform = format!("of {platform}");
            rows.iter()
                .map(|r| Fields::new(r, "jobq_bot_admins", &of_platform).get("user_id"))
                .collect::<Result<Vec<i64>, DbError>>()?
        }))
    }

    pub async fn contains(&self, platform: Platform, user: i64) -> Result<bool, OrderError> {
        let sql = "SELECT 1 FROM jobq_bot_admins WHERE platform = $1 AND user_id = $2";
        Ok(on_conn!(self.db.exec(), |c| {
            sqlx::query(sql)
                .bind(platform.as_str())
                .bind(user)
                .fetch_optional(&mut *c)
                .await?
                .is_some()
        }))
    }

    /// Adds an admin (with `audit`, in one transaction): `false` when already one.
    pub async fn add(
        &self,
        platform: Platform,
        user: UserId,
        by: i64,
        audit: &AuditEntry,
    ) -> Result<bool, OrderError> {
        let sql = "INSERT INTO jobq_bot_admins (platform, user_id, added_by, added_at)
                   VALUES ($1, $2, $3, $4) ON CONFLICT (platform, user_id) DO NOTHING";
        let mut tx = self.queue.begin().await?;
        let added = on_conn!(tx.exec(), |c| {
            sqlx::query(sql)
                .bind(platform.as_str())
                .bind(user.get())
                .bind(by)
                .bind(Stamp::now())
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        write_audit(&mut tx, audit, i64::try_from(added).unwrap_or(1)).await?;
        tx.commit().await?;
        Ok(added == 1)
    }

    /// Removes an admin (with `audit`, in one transaction): `false` when not one.
    pub async fn remove(
        &self,
        platform: Platform,
        user: UserId,
        audit: &AuditEntry,
    ) -> Result<bool, OrderError> {
        let sql = "DELETE FROM jobq_bot_admins WHERE platform = $1 AND user_id = $2";
        let mut tx = self.queue.begin().await?;
        let removed = on_conn!(tx.exec(), |c| {
            sqlx::query(sql)
                .bind(platform.as_str())
                .bind(user.get())
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
        write_audit(&mut tx, audit, i64::try_from(removed).unwrap_or(1)).await?;
        tx.commit().await?;
        Ok(removed == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::test_queue;

    fn audit(action: &'static str) -> AuditEntry {
        AuditEntry {
            actor: "7".into(),
            surface: "telegram",
            action,
            target: "admin 42".into(),
        }
    }

    async fn audited(queue: &Queue) -> Vec<(String, i64)> {
        let pool = queue.db().sqlite_pool().expect("sqlite");
        sqlx::query_as("SELECT action, count FROM jobq_audit ORDER BY id")
            .fetch_all(pool)
            .await
            .expect("audit")
    }

    #[tokio::test]
    async fn adding_and_removing_say_whether_they_changed_anything_and_are_audited() {
        let (_dir, queue) = test_queue().await;
        let admins = BotAdmins::new(&queue).expect("admins");
        let (tg, user) = (Platform::Telegram, UserId::parse(42).expect("id"));
        assert!(
            admins
                .add(tg, user, 7, &audit("add_admin"))
                .await
                .expect("add")
        );
        assert!(
            !admins
                .add(tg, user, 7, &audit("add_admin"))
                .await
                .expect("again")
        );
        assert!(admins.contains(tg, 42).await.expect("contains"));
        assert!(
            !admins
                .contains(Platform::Discord, 42)
                .await
                .expect("contains")
        );
        assert_eq!(admins.list(tg).await.expect("list"), vec![42]);
        assert!(
            admins
                .remove(tg, user, &audit("remove_admin"))
                .await
                .expect("remove")
        );
        assert!(
            !admins
                .remove(tg, user, &audit("remove_admin"))
                .await
                .expect("again")
        );
        assert!(admins.list(tg).await.expect("list").is_empty());
        let expected = [
            ("add_admin", 1),
            ("add_admin", 0),
            ("remove_admin", 1),
            ("remove_admin", 0),
        ];
        let expected: Vec<(String, i64)> =
            expected.iter().map(|(a, n)| (a.to_string(), *n)).collect();
        assert_eq!(
            audited(&queue).await,
            expected,
            "every attempt, with what it changed"
        );
    }
}
