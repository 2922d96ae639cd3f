//! The pages that report rather than repair: failed jobs grouped by their error, and the
//! periodic jobs with their last and next runs.

use super::*;

/// The most failed jobs read to group them (newest first); more are counted as not grouped.
const FAILURES_READ: u32 = 5_000;

/// Failed jobs whose last errors read the same once ids, numbers and counts are taken out.
pub(crate) struct FailureGroup {
    /// The error with its variable parts replaced ([`normalise_error`]).
    pub(crate) signature: String,
    /// A short stable name for the group, for links.
    pub(crate) key: String,
    /// The newest job's error as it was.
    pub(crate) example: String,
    /// Job counts per kind, most first.
    pub(crate) kinds: Vec<(String, usize)>,
    /// The jobs, newest first.
    pub(crate) jobs: Vec<JobRecord>,
}

pub(crate) struct FailuresData {
    pub(crate) groups: Vec<FailureGroup>,
    /// All failed jobs, and how many of them were read and grouped.
    pub(crate) total: i64,
    pub(crate) read: usize,
    /// The one group asked for (`?group=KEY`), shown with its jobs.
    pub(crate) open: Option<usize>,
}

/// An error message with what differs between occurrences of the same failure taken out:
/// every number becomes `N`, every word that mixes digits into letters (an id, a UUID, a
/// hash) becomes `ID`; whitespace is collapsed.
pub(crate) fn normalise_error(error: &str) -> String {
    let mut out = String::with_capacity(error.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.is_empty() {
            return;
        }
        let digits = word.chars().any(|c| c.is_ascii_digit());
        if !digits {
            out.push_str(word);
        } else if word.chars().all(|c| c.is_ascii_digit() || c == '.') {
            out.push('N');
        } else {
            out.push_str("ID");
        }
        word.clear();
    };
    for c in error.chars() {
        let in_number = c == '.' && !word.is_empty() && word.chars().all(|d| d.is_ascii_digit());
        if c.is_alphanumeric() || c == '_' || c == '-' || in_number {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            if c.is_whitespace() {
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            } else {
                out.push(c);
            }
        }
    }
    flush(&mut word, &mut out);
    out.trim().to_string()
}

fn group_key(signature: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(signature.as_bytes())[..8])
}

/// Groups failed jobs (newest first) by their normalised last error, biggest group first.
pub(crate) fn group_failures(jobs: Vec<JobRecord>) -> Vec<FailureGroup> {
    let mut groups: Vec<FailureGroup> = Vec::new();
    let mut by_signature: HashMap<String, usize> = HashMap::new();
    for job in jobs {
        let error = job.last_error.clone().unwrap_or_default();
        let signature = normalise_error(&error);
        let index = *by_signature.entry(signature.clone()).or_insert_with(|| {
            groups.push(FailureGroup {
                key: group_key(&signature),
                signature,
                example: error,
                kinds: Vec::new(),
                jobs: Vec::new(),
            });
            groups.len() - 1
        });
        let group = &mut groups[index];
        match group.kinds.iter_mut().find(|(kind, _)| *kind == job.kind) {
            Some((_, n)) => *n += 1,
            None => group.kinds.push((job.kind.clone(), 1)),
        }
        group.jobs.push(job);
    }
    for group in &mut groups {
        group
            .kinds
            .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    }
    // Stable: equal groups stay newest first.
    groups.sort_by_key(|g| std::cmp::Reverse(g.jobs.len()));
    groups
}

#[derive(Debug, Deserialize)]
pub(crate) struct FailuresQuery {
    group: Option<String>,
    #[serde(flatten)]
    notice: NoticeFields,
}

pub(crate) async fn failures_page(
    State(state): State<AppState>,
    admin: Admin,
    Query(query): Query<FailuresQuery>,
) -> PageResult {
    let driver = queue(&state).driver();
    let failed = JobFilter {
        state: Some(JobState::Failed),
        ..JobFilter::default()
    };
    let total = driver.count_matching(&failed).await?;
    let jobs = driver.list_jobs(&failed, FAILURES_READ).await?;
    let read = jobs.len();
    // An unreadable row has no error to group by: /jobs?state=failed lists it.
    let groups = group_failures(readable(jobs).collect());
    let open = query
        .group
        .as_deref()
        .and_then(|key| groups.iter().position(|g| g.key == key));
    let data = FailuresData {
        groups,
        total,
        read,
        open,
    };
    Ok(views::failures(&admin, &data, &query.notice.notice()).into_response())
}

// Periodic jobs

pub(crate) struct PeriodicRow {
    pub(crate) entry: jobs::configuration::PeriodicSettings,
    /// The newest job of any of its periods.
    pub(crate) last: Option<JobRecord>,
    /// When the next period's job is enqueued.
    pub(crate) next: chrono::DateTime<Utc>,
    /// The entry's queue, else its kind's.
    pub(crate) queue: String,
}

/// The configured periodic jobs, each with its last job (from its period keys) and the start
/// of its next period.
pub(crate) async fn periodic_page(State(state): State<AppState>, admin: Admin) -> PageResult {
    let driver = queue(&state).driver();
    let now = Utc::now();
    let mut rows = Vec::with_capacity(state.inner.periodic.len());
    for entry in &state.inner.periodic {
        rows.push(PeriodicRow {
            last: driver.newest_with_key_prefix(&entry.key_prefix()).await?,
            next: entry.next_period(now),
            queue: entry.queue.clone().unwrap_or_else(|| {
                jobs::kinds::spec(&entry.kind).map_or_else(String::new, |s| s.queue.to_string())
            }),
            entry: entry.clone(),
        });
    }
    Ok(views::periodic(&admin, &rows, now).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_normalise_to_what_occurrences_share() {
        assert_eq!(
            normalise_error("panel main: no client with id 4711 on the panel"),
            "panel main: no client with id N on the panel"
        );
        assert_eq!(
            normalise_error(
                "send_dm: chat 123456789 blocked the bot (attempt 3 of 10: no attempts left)"
            ),
            "send_dm: chat N blocked the bot (attempt N of N: no attempts left)"
        );
        assert_eq!(
            normalise_error("client 3f2a9c1e-77b0-4c1d-9e2f-0a1b2c3d4e5f  took 1.5 s"),
            "client ID took N s"
        );
        // Words without digits are kept as they are, names with underscores included.
        assert_eq!(
            normalise_error("plan \"platinum\" is not configured"),
            "plan \"platinum\" is not configured"
        );
    }

    fn failed(id: i64, kind: &str, error: &str) -> JobRecord {
        JobRecord {
            id,
            kind: kind.to_string(),
            queue: "q".to_string(),
            payload: json!({}),
            state: JobState::Failed,
            priority: 0,
            attempts: 1,
            max_attempts: 1,
            snoozes: 0,
            key: None,
            run_at: Utc::now(),
            created_at: Utc::now(),
            attempted_at: None,
            attempted_by: None,
            locked_until: None,
            finalized_at: None,
            errors: Vec::new(),
            last_error: Some(error.to_string()),
        }
    }

    #[test]
    fn failures_group_by_signature_biggest_first_with_their_kinds() {
        let groups = group_failures(vec![
            failed(9, "b", "timeout after 30 s"),
            failed(8, "a", "chat 1 blocked"),
            failed(7, "a", "chat 2 blocked"),
            failed(6, "c", "chat 3 blocked"),
        ]);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].signature, "chat N blocked");
        assert_eq!(groups[0].example, "chat 1 blocked", "the newest as it was");
        assert_eq!(
            groups[0].jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
            [8, 7, 6]
        );
        assert_eq!(
            groups[0].kinds,
            [("a".to_string(), 2), ("c".to_string(), 1)]
        );
        assert_eq!(groups[1].signature, "timeout after N s");
        assert_ne!(groups[0].key, groups[1].key);
        assert_eq!(
            groups[0].key,
            group_key("chat N blocked"),
            "keys are stable"
        );
    }
}
