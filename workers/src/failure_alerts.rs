//! Tells the admins (`[telegram] admins`, `[discord] admins`) when jobs fail for good, so
//! failures do not wait to be discovered: a job failing alone is reported at once; many failing
//! together are gathered into one digest; at most one message per
//! `maintenance.failure_digest_every`. Every worker process runs this; the cursor in
//! [`jobs::failures`] makes each failure reported once.

use std::sync::Arc;
use std::time::Duration;

use jobs::Job;
use jobs::Queue;
use jobs::configuration::Settings;
use jobs::failures::{FailedJob, NewFailures, NotReported, take_new_failures};
use jobs::kinds::SendDm;
use tokio::sync::watch;

use crate::handlers::alerts::{alert_admins, clip, digest};

/// The key of the alert for the window starting at a time: one alert per window.
const DIGEST_KEY_PREFIX: &str = "failure_digest:";

/// The alerts are not reported themselves: an admin who blocked the bot would otherwise get
/// an endless stream of alerts about alerts.
const ALERTS: NotReported<'static> = NotReported {
    kind: SendDm::KIND,
    key_prefix: DIGEST_KEY_PREFIX,
};

/// Runs until `stop` turns true. Does nothing when no admin is configured.
pub async fn run(queue: Queue, settings: Arc<Settings>, mut stop: watch::Receiver<bool>) {
    if settings.admin_recipients().is_empty() {
        return;
    }
    let every = settings.maintenance.failure_digest_every;
    // Look often enough that a lone failure is reported within seconds.
    let check = (every / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        if let Err(error) = report_new_failures(&queue, &settings).await {
            tracing::warn!(%error, "could not report failed jobs to the admins; trying again");
        }
        tokio::select! {
            _ = tokio::time::sleep(check) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// One look: the failures not yet reported, and the DMs reporting them, in one transaction.
pub async fn report_new_failures(queue: &Queue, settings: &Settings) -> Result<usize, String> {
    let every = settings.maintenance.failure_digest_every;
    let mut tx = queue.begin().await.map_err(|e| e.to_string())?;
    let found = take_new_failures(&mut tx, every, ALERTS)
        .await
        .map_err(|e| e.to_string())?;
    let Some(failures) = found else {
        tx.commit().await.map_err(|e| e.to_string())?;
        return Ok(0);
    };
    let key = format!("{DIGEST_KEY_PREFIX}{}", failures.since_us);
    alert_admins(&mut tx, settings, &key, &alert_text(&failures))
        .await
        .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    tracing::info!(
        failed = failures.total,
        "failed jobs reported to the admins"
    );
    Ok(failures.listed.len())
}

fn alert_text(failures: &NewFailures) -> String {
    if let [job] = failures.listed.as_slice()
        && failures.total == 1
    {
        return format!(
            "Job {} failed for good: {}\nInspect it: jobq jobs show {}",
            job.id,
            describe(job),
            job.id
        );
    }
    let lines: Vec<String> = failures
        .listed
        .iter()
        .map(|job| format!("#{} {}", job.id, describe(job)))
        .collect();
    let mut text = digest(&format!("{} jobs failed for good:", failures.total), &lines);
    let unlisted = failures.total - failures.listed.len() as i64;
    if unlisted > 0 {
        text.push_str(&format!(
            "\n(+{unlisted} more: jobq jobs list --state failed)"
        ));
    }
    text
}

/// `kind after N attempts: error`, the kind and the error cut short (a row written by hand
/// may hold a kind of any length, and the alert must still fit a chat message).
fn describe(job: &FailedJob) -> String {
    let error = job.last_error.as_deref().unwrap_or("no error recorded");
    let short: String = error.chars().take(200).collect();
    let cut = if short.len() < error.len() { "…" } else { "" };
    format!(
        "{} after {} attempt{}: {short}{cut}",
        clip(&job.kind, 80),
        job.attempts,
        if job.attempts == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn job(id: i64, error: &str) -> FailedJob {
        FailedJob {
            id,
            kind: "provision_client".into(),
            queue: "panel".into(),
            attempts: 3,
            last_error: Some(error.into()),
            failed_at: Utc::now(),
        }
    }

    #[test]
    fn one_failure_is_told_alone_and_many_in_a_digest() {
        let one = NewFailures {
            listed: vec![job(7, "panel main: rejected")],
            total: 1,
            since_us: 0,
        };
        assert_eq!(
            alert_text(&one),
            "Job 7 failed for good: provision_client after 3 attempts: panel main: rejected\n\
             Inspect it: jobq jobs show 7"
        );
        let many = NewFailures {
            listed: vec![job(7, "a"), job(8, &"x".repeat(500))],
            total: 60,
            since_us: 0,
        };
        let text = alert_text(&many);
        assert!(
            text.starts_with("60 jobs failed for good:\n#7 provision_client"),
            "{text}"
        );
        assert!(text.contains(&format!(
            "#8 provision_client after 3 attempts: {}…",
            "x".repeat(200)
        )));
        assert!(
            text.ends_with("(+58 more: jobq jobs list --state failed)"),
            "{text}"
        );
    }

    #[test]
    fn a_failure_of_a_huge_kind_is_told_and_fits_a_message() {
        let mut huge = job(9, "boom");
        huge.kind = "k".repeat(5000);
        let one = NewFailures {
            listed: vec![huge.clone()],
            total: 1,
            since_us: 0,
        };
        let text = alert_text(&one);
        assert!(text.starts_with("Job 9 failed for good: kkk"), "{text}");
        assert!(text.chars().count() < 2000, "{}", text.chars().count());
        let many = NewFailures {
            listed: vec![huge.clone(), job(10, "a")],
            total: 2,
            since_us: 0,
        };
        let text = alert_text(&many);
        assert!(
            text.contains("#9 kkk") && text.contains("#10 provision_client"),
            "{text}"
        );
        assert!(text.chars().count() < 2000, "{}", text.chars().count());
    }
}
