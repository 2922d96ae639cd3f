//! Messages to the admins (`[telegram] admins`, `[discord] admins`), enqueued as `send_dm` jobs,
//! so an alert is as durable as the change that caused it when both share a transaction.

use jobs::EnqueueOptions;
use jobs::configuration::Settings;
use jobs::kinds::{Recipient, SendDm};
use jobs::queue::JobTx;
pub use jobs::text::clip;

use super::queue_error;
use crate::handler::JobError;

/// Lines joined under `title`, cut to fit the smallest message limit (Discord's 2000
/// characters) with a count of the lines left out. Each line is shortened to a fifth of the
/// limit first, so however long one is, the first lines are always shown.
pub fn digest(title: &str, lines: &[String]) -> String {
    const LIMIT: usize = 1900;
    let mut text = clip(title, LIMIT / 5);
    let lines: Vec<String> = lines.iter().map(|l| clip(l, LIMIT / 5)).collect();
    for (shown, line) in lines.iter().enumerate() {
        let more = format!("\n… and {} more", lines.len() - shown);
        if text.chars().count() + 1 + line.chars().count() + more.chars().count() > LIMIT {
            text.push_str(&more);
            return text;
        }
        text.push('\n');
        text.push_str(line);
    }
    text
}

/// Enqueues `text` to every admin in `tx`, keyed `<key>:<platform>:<id>` so a retried caller
/// sends each admin one. Without admins configured, logs the alert at `warn` instead.
pub async fn alert_admins(
    tx: &mut JobTx,
    settings: &Settings,
    key: &str,
    text: &str,
) -> Result<usize, JobError> {
    let admins = settings.admin_recipients();
    if admins.is_empty() {
        tracing::warn!(alert = %text, "no admins configured ([telegram] admins, [discord] admins) to alert");
        return Ok(0);
    }
    for admin in &admins {
        let dm = SendDm::new(*admin, text).map_err(JobError::permanent)?;
        let options = EnqueueOptions {
            key: Some(admin_key(key, *admin)),
            ..EnqueueOptions::default()
        };
        tx.enqueue(&dm, options).await.map_err(queue_error)?;
    }
    Ok(admins.len())
}

fn admin_key(key: &str, admin: Recipient) -> String {
    format!("{key}:{}:{}", admin.platform.as_str(), admin.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_digest_is_cut_with_a_count() {
        let lines: Vec<String> = (0..500)
            .map(|i| format!("job {i}: failed for good"))
            .collect();
        let text = digest("500 jobs failed", &lines);
        assert!(text.chars().count() <= 1900, "{}", text.len());
        assert!(text.starts_with("500 jobs failed\njob 0: failed for good\n"));
        let shown = text.lines().filter(|l| l.starts_with("job ")).count();
        assert!(
            text.ends_with(&format!("… and {} more", 500 - shown)),
            "{text}"
        );
        let short = digest("t", &["a".to_string(), "b".to_string()]);
        assert_eq!(short, "t\na\nb");
    }

    #[test]
    fn a_digest_of_huge_lines_still_names_its_first_jobs() {
        let lines: Vec<String> = (0..3)
            .map(|i| format!("#{i} {} after 1 attempt: boom", "k".repeat(5000)))
            .collect();
        let text = digest("3 jobs failed for good:", &lines);
        assert!(text.chars().count() <= 1900, "{}", text.chars().count());
        assert!(text.contains("\n#0 kkk"), "{text}");
    }
}
