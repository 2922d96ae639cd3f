//! The admin job commands both bots offer (`failed`, `retry`, `discard`, `stats`), free of any
//! chat library: arguments arrive as text, results leave as plain data with short renderers.
//!
//! Reads go through the queue's driver, repairs through [`Queue`]'s audited repairs, so a
//! retry from Discord lands in the same audit log as one from the dashboard, with who asked
//! ([`Actor`]) and where (`surface` = the platform).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use jobs::audit::{AuditEntry, describe_ids};
use jobs::driver::{JobFilter, Listed};
use jobs::kinds::Platform;
use jobs::queue::QueueError;
use jobs::{JobState, Queue};

/// Failed jobs shown per page: five fit one chat message with room for their errors.
pub const PAGE_SIZE: u32 = 5;
/// Longest last error shown per job, in characters (5 of them stay well under 2000).
const ERROR_CHARS: usize = 200;
/// Longest display name written to the audit log.
const NAME_CHARS: usize = 64;

/// Who acts: the chat user behind a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub platform: Platform,
    pub user_id: i64,
    pub display_name: String,
}

impl Actor {
    pub fn new(platform: Platform, user_id: i64, display_name: impl Into<String>) -> Self {
        Actor {
            platform,
            user_id,
            display_name: display_name.into(),
        }
    }

    /// `alice (discord 1234)`: the name people recognise, the id that cannot be faked. The
    /// name is the user's own text, so control characters go and its length is capped.
    pub fn audit_name(&self) -> String {
        let name: String = self
            .display_name
            .chars()
            .filter(|c| !c.is_control())
            .take(NAME_CHARS)
            .collect();
        let name = name.trim();
        if name.is_empty() {
            format!("{} {}", self.platform, self.user_id)
        } else {
            format!("{name} ({} {})", self.platform, self.user_id)
        }
    }

    fn audit(&self, action: &'static str, id: i64) -> AuditEntry {
        AuditEntry {
            actor: self.audit_name(),
            surface: self.platform.as_str(),
            action,
            target: describe_ids(&[id]),
        }
    }
}

/// What went wrong, worded for the admin who typed the command.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("“{0}” is not a job id: write the number shown in the failed list, like 42.")]
    BadId(String),
    #[error("There is no job #{0} (it may have been pruned after it finished).")]
    UnknownJob(i64),
    #[error("Cannot {action} job #{id}: {reason}.")]
    NotRepairable {
        action: &'static str,
        id: i64,
        reason: String,
    },
    #[error("“{0}” is not a job kind: kinds are lowercase letters, digits and _ (like send_dm).")]
    BadKind(String),
    #[error("“{0}” is not a page marker: use the one the previous page gave.")]
    BadPage(String),
    #[error("The queue's database could not be read; try again shortly.")]
    Database(#[from] QueueError),
}

impl AdminError {
    /// A database failure is ours, not the admin's: worth a WARN in the log.
    pub fn is_internal(&self) -> bool {
        matches!(self, AdminError::Database(_))
    }
}

/// Parses a job id as typed (`42` or `#42`).
pub fn parse_job_id(text: &str) -> Result<i64, AdminError> {
    let trimmed = text.trim();
    trimmed
        .strip_prefix('#')
        .unwrap_or(trimmed)
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| AdminError::BadId(trimmed.to_string()))
}

/// Which failed jobs to list: optionally one kind, and where the page starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailedQuery {
    pub kind: Option<String>,
    /// The page token: only jobs older (lower id) than this one. `None` is the newest page.
    pub before: Option<i64>,
}

impl FailedQuery {
    /// From the command's words: `[KIND] [PAGE]`, where PAGE is the marker the previous page
    /// printed (`p42`). Either may be absent.
    pub fn parse(kind: Option<&str>, page: Option<&str>) -> Result<FailedQuery, AdminError> {
        let kind = kind.map(str::trim).filter(|k| !k.is_empty());
        let kind = match kind {
            Some(k) if valid_kind(k) => Some(k.to_string()),
            Some(k) => return Err(AdminError::BadKind(k.to_string())),
            None => None,
        };
        let before = match page.map(str::trim).filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => Some(parse_page(p)?),
        };
        Ok(FailedQuery { kind, before })
    }
}

fn valid_kind(kind: &str) -> bool {
    (1..=64).contains(&kind.len())
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `p42` (or `42`): the id the next page starts below.
fn parse_page(text: &str) -> Result<i64, AdminError> {
    text.strip_prefix('p')
        .unwrap_or(text)
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| AdminError::BadPage(text.to_string()))
}

/// One failed job as the list shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedJob {
    pub id: i64,
    pub kind: String,
    pub queue: String,
    pub attempts: i32,
    pub failed_at: Option<DateTime<Utc>>,
    /// Links masked: an error may quote a subscription link.
    pub last_error: Option<String>,
}

impl From<Listed> for FailedJob {
    fn from(listed: Listed) -> Self {
        match listed {
            Listed::Job(job) => FailedJob {
                id: job.id,
                kind: job.kind,
                queue: job.queue,
                attempts: job.attempts,
                failed_at: job.finalized_at,
                last_error: job.last_error.map(|e| jobs::redact::mask_urls(&e)),
            },
            // Still listed, so that an admin sees it and can discard it.
            Listed::Unreadable(row) => FailedJob {
                id: row.id,
                kind: "?".to_string(),
                queue: "?".to_string(),
                attempts: 0,
                failed_at: None,
                last_error: Some(format!("the row cannot be read: {row}")),
            },
        }
    }
}

/// A page of failed jobs, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedPage {
    pub kind: Option<String>,
    pub jobs: Vec<FailedJob>,
    /// All failed jobs of the kind (not just this page).
    pub total: i64,
    /// The marker for the next (older) page, when there is one.
    pub next: Option<String>,
}

/// The newest failed jobs matching `query`, [`PAGE_SIZE`] at a time.
pub async fn failed(queue: &Queue, query: &FailedQuery) -> Result<FailedPage, AdminError> {
    let mut filter = JobFilter {
        state: Some(JobState::Failed),
        kind: query.kind.clone(),
        ..JobFilter::default()
    };
    let driver = queue.driver();
    let total = driver.count_matching(&filter).await?;
    filter.before_id = query.before;
    // One more than a page tells whether an older page exists.
    let mut jobs = driver.list_jobs(&filter, PAGE_SIZE + 1).await?;
    let next = if jobs.len() > PAGE_SIZE as usize {
        jobs.truncate(PAGE_SIZE as usize);
        jobs.last().map(|j| format!("p{}", j.id()))
    } else {
        None
    };
    Ok(FailedPage {
        kind: query.kind.clone(),
        jobs: jobs.into_iter().map(FailedJob::from).collect(),
        total,
        next,
    })
}

/// What a repair did to one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repaired {
    pub action: &'static str,
    pub id: i64,
    pub kind: String,
    /// The state it was in before.
    pub from: JobState,
}

/// Retries job `id_text` (back to `available`, now), audited as `actor`.
pub async fn retry(queue: &Queue, actor: &Actor, id_text: &str) -> Result<Repaired, AdminError> {
    repair(queue, actor, "retry", id_text).await
}

/// Discards job `id_text` (kept out of the queue for good), audited as `actor`.
pub async fn discard(queue: &Queue, actor: &Actor, id_text: &str) -> Result<Repaired, AdminError> {
    repair(queue, actor, "discard", id_text).await
}

async fn repair(
    queue: &Queue,
    actor: &Actor,
    action: &'static str,
    id_text: &str,
) -> Result<Repaired, AdminError> {
    let id = parse_job_id(id_text)?;
    // Looked up first so that a typo writes no audit entry.
    let job = queue
        .driver()
        .job(id)
        .await?
        .ok_or(AdminError::UnknownJob(id))?
        .readable()
        .map_err(QueueError::from)?;
    let entry = actor.audit(action, id);
    let done = match action {
        "retry" => queue.retry(&[id], &entry).await?,
        _ => queue.discard(&[id], &entry).await?,
    };
    if let Some((_, reason)) = done.skipped.into_iter().next() {
        return Err(AdminError::NotRepairable { action, id, reason });
    }
    tracing::info!(actor = %entry.actor, surface = entry.surface, action, job = id,
        "admin repair from a bot");
    Ok(Repaired {
        action,
        id,
        kind: job.kind,
        from: job.state,
    })
}

/// One queue's figures.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueStats {
    pub name: String,
    pub paused: bool,
    /// Jobs now in each state (states with none left out).
    pub counts: BTreeMap<String, i64>,
    /// Outcomes of the last hour (`completed`, `retried`, `failed`, `cancelled`).
    pub last_hour: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub queues: Vec<QueueStats>,
    pub at: DateTime<Utc>,
}

/// Per-queue counts by state and the last hour's outcomes, as `jobq stats` shows them.
pub async fn stats(queue: &Queue) -> Result<Stats, AdminError> {
    let driver = queue.driver();
    let at = Utc::now();
    let mut queues: BTreeMap<String, QueueStats> = BTreeMap::new();
    for info in driver.queues().await? {
        queue_stats(&mut queues, &info.name).paused = info.paused;
    }
    for c in driver.state_counts().await? {
        *queue_stats(&mut queues, &c.queue)
            .counts
            .entry(c.state.as_str().to_string())
            .or_default() += c.count;
    }
    for o in driver
        .outcome_series(at - chrono::Duration::hours(1))
        .await?
    {
        *queue_stats(&mut queues, &o.queue)
            .last_hour
            .entry(o.outcome)
            .or_default() += o.count;
    }
    Ok(Stats {
        queues: queues.into_values().collect(),
        at,
    })
}

fn queue_stats<'a>(queues: &'a mut BTreeMap<String, QueueStats>, name: &str) -> &'a mut QueueStats {
    queues
        .entry(name.to_string())
        .or_insert_with(|| QueueStats {
            name: name.to_string(),
            ..QueueStats::default()
        })
}

// ---------------------------------------------------------------------------------------------
// Text

/// The longest answer any renderer returns: Discord's message limit (Telegram's is larger).
pub const MAX_REPLY_CHARS: usize = 2000;

pub use jobs::text::clip;

/// The failed list; `next_hint` says how to ask for the next page on this platform, given the
/// page marker (e.g. `|m| format!("/jobs failed page:{m}")`).
pub fn render_failed(page: &FailedPage, next_hint: impl Fn(&str) -> String) -> String {
    let of_kind = page
        .kind
        .as_deref()
        .map(|k| format!(" of kind {k}"))
        .unwrap_or_default();
    if page.jobs.is_empty() {
        return format!("No failed jobs{of_kind}.");
    }
    let mut out = format!(
        "Failed jobs{of_kind}: {} in all, newest first.\n",
        page.total
    );
    for job in &page.jobs {
        let when = job
            .failed_at
            .map(|t| t.format(" at %Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default();
        let error = job.last_error.as_deref().unwrap_or("(no error recorded)");
        let _ = write!(
            out,
            "\n#{} {} ({}), {} attempt{}{when}\n  {}\n",
            job.id,
            job.kind,
            job.queue,
            job.attempts,
            if job.attempts == 1 { "" } else { "s" },
            clip(&one_line(error), ERROR_CHARS)
        );
    }
    if let Some(marker) = &page.next {
        let _ = write!(out, "\nOlder: {}", next_hint(marker));
    }
    clip(&out, MAX_REPLY_CHARS)
}

pub fn render_repaired(done: &Repaired) -> String {
    match done.action {
        "retry" => format!(
            "Job #{} ({}) was {} and will run again now.",
            done.id, done.kind, done.from
        ),
        _ => format!(
            "Job #{} ({}) was {} and is now discarded: it will not run.",
            done.id, done.kind, done.from
        ),
    }
}

pub fn render_stats(stats: &Stats) -> String {
    if stats.queues.is_empty() {
        return "No queues yet: nothing has been enqueued.".to_string();
    }
    let mut out = String::from("Queues (now; last hour):\n");
    for q in &stats.queues {
        let counts = pairs(&q.counts, "empty");
        let hour = pairs(&q.last_hour, "no outcomes");
        let paused = if q.paused { " [paused]" } else { "" };
        let _ = writeln!(out, "• {}{paused}: {counts}; {hour}", q.name);
    }
    clip(out.trim_end(), MAX_REPLY_CHARS)
}

fn pairs(map: &BTreeMap<String, i64>, none: &str) -> String {
    let shown: Vec<String> = map
        .iter()
        .filter(|(_, n)| **n != 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if shown.is_empty() {
        none.to_string()
    } else {
        shown.join(", ")
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_parse_with_or_without_hash_and_refuse_the_rest() {
        assert_eq!(parse_job_id("42").ok(), Some(42));
        assert_eq!(parse_job_id(" #7 ").ok(), Some(7));
        for bad in ["abc", "", "-3", "0", "4.5", "99999999999999999999"] {
            let error = parse_job_id(bad).err().map(|e| e.to_string());
            assert!(
                error
                    .as_deref()
                    .is_some_and(|e| e.contains("is not a job id")),
                "{bad}: {error:?}"
            );
        }
    }

    #[test]
    fn failed_query_parses_kind_and_page_marker() {
        assert_eq!(
            FailedQuery::parse(Some("send_dm"), Some("p17")).ok(),
            Some(FailedQuery {
                kind: Some("send_dm".into()),
                before: Some(17)
            })
        );
        assert_eq!(
            FailedQuery::parse(None, None).ok(),
            Some(FailedQuery::default())
        );
        assert!(matches!(
            FailedQuery::parse(Some("Send DM"), None),
            Err(AdminError::BadKind(_))
        ));
        assert!(matches!(
            FailedQuery::parse(None, Some("next")),
            Err(AdminError::BadPage(_))
        ));
    }

    #[test]
    fn audit_name_keeps_the_id_and_drops_control_characters() {
        let actor = Actor::new(Platform::Discord, 99, "al\u{7}ice\n");
        assert_eq!(actor.audit_name(), "alice (discord 99)");
        let nameless = Actor::new(Platform::Telegram, 5, " ");
        assert_eq!(nameless.audit_name(), "telegram 5");
        let long = Actor::new(Platform::Telegram, 5, "x".repeat(500));
        assert!(long.audit_name().chars().count() < 100);
    }

    #[test]
    fn failed_list_fits_a_discord_message_even_with_long_errors() {
        let job = |id| FailedJob {
            id,
            kind: "send_dm".into(),
            queue: "messages".into(),
            attempts: 8,
            failed_at: None,
            last_error: Some("boom ".repeat(2000)),
        };
        let page = FailedPage {
            kind: None,
            jobs: (1..=PAGE_SIZE as i64).map(job).collect(),
            total: 100,
            next: Some("p1".into()),
        };
        let text = render_failed(&page, |m| format!("/jobs failed page:{m}"));
        assert!(text.chars().count() <= MAX_REPLY_CHARS, "{}", text.len());
        assert!(text.contains("#5 send_dm (messages), 8 attempts"), "{text}");
        assert!(text.contains("Older: /jobs failed page:p1"), "{text}");
    }
}
