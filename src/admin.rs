//! The admin commands: kinds, enqueue, jobs, queues, stats. Human tables by default, JSON with
//! `--json`. Every repair is audited with the OS user who ran it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use clap::Args;
use jobs::audit::AuditEntry;
use jobs::configuration::Settings;
use jobs::driver::{JobFilter, JobRecord, Listed, Unreadable};
use jobs::job::InvalidJob;
use jobs::state::RepairAction;
use jobs::{JobSpec, JobState, Queue};
use producer::enqueue_command::{self, EnqueueInputError, EnqueueRequest};
use serde::Serialize;
use serde_json::{Value, json};
use workers::{Registry, testkit};

use crate::output::say;
use crate::repair;
use crate::startup::{check_queue_names, open, settings};
use crate::{EnqueueArgs, JobsCommand, QueuesCommand};

/// Every kind `jobq enqueue` accepts: the product's, and the engine's test kinds (for the
/// test suite: never listed, nor offered in errors).
fn all_specs() -> Vec<JobSpec> {
    let mut tests = Registry::new();
    testkit::register_tests(&mut tests);
    let mut specs = jobs::kinds::specs();
    specs.extend(tests.specs());
    specs
}

/// An unknown kind's error names the product's kinds only.
fn product_kinds_only(error: EnqueueInputError) -> EnqueueInputError {
    match error {
        EnqueueInputError::Invalid(InvalidJob::UnknownKind { kind, .. }) => {
            let known: Vec<&str> = jobs::kinds::specs().iter().map(|s| s.kind).collect();
            EnqueueInputError::Invalid(InvalidJob::UnknownKind {
                kind,
                known: known.join(", "),
            })
        }
        other => other,
    }
}

pub(crate) fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    say!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn kinds(json: bool) -> anyhow::Result<()> {
    let specs = jobs::kinds::specs();
    let rows: Vec<Value> = specs
        .iter()
        .map(|s| {
            json!({
                "kind": s.kind, "queue": s.queue, "max_attempts": s.max_attempts,
                "timeout_s": s.timeout.as_secs_f64(), "example": (s.example)(),
            })
        })
        .collect();
    if json {
        return print_json(&rows);
    }
    for s in &specs {
        say!(
            "{:<20} queue={:<12} max_attempts={:<3} timeout={:?}\n    example: {}",
            s.kind,
            s.queue,
            s.max_attempts,
            s.timeout,
            (s.example)()
        );
    }
    Ok(())
}

pub async fn enqueue(config: Option<&Path>, args: EnqueueArgs, json: bool) -> anyhow::Result<()> {
    let payload = if args.payload == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading PAYLOAD_JSON from standard input")?;
        text
    } else {
        args.payload
    };
    let request = EnqueueRequest {
        kind: args.kind,
        payload,
        key: args.key,
        at: args.at,
        priority: args.priority,
        max_attempts: args.max_attempts,
        queue: args.queue,
    };
    // Parse before connecting: bad input is refused without touching the database.
    let job = enqueue_command::parse(&request, &all_specs()).map_err(product_kinds_only)?;
    let settings = settings(config, &[])?;
    let queue = open(&settings).await?;
    let enqueued = queue.enqueue_new(job).await?;
    if json {
        print_json(&enqueued)
    } else {
        let verb = if enqueued.created {
            "enqueued"
        } else {
            "already enqueued (key held)"
        };
        say!("{verb}: job {}", enqueued.id);
        Ok(())
    }
}

/// Which jobs: every flag narrows.
#[derive(Args, Clone)]
pub struct FilterArgs {
    /// Only jobs in this state.
    #[arg(long, value_parser = job_state())]
    state: Option<JobState>,
    /// Only jobs in this queue (`jobq queues list` shows them).
    #[arg(long)]
    queue: Option<String>,
    /// Only jobs of this kind (`jobq kinds` lists them).
    #[arg(long)]
    kind: Option<String>,
}

/// `--state`, with the states listed in `--help` and in the error for any other word.
fn job_state() -> impl clap::builder::TypedValueParser<Value = JobState> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(JobState::ALL.map(JobState::as_str))
        .try_map(|state| state.parse::<JobState>())
}

impl FilterArgs {
    pub(crate) fn state(&self) -> Option<JobState> {
        self.state
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.state.is_none() && self.queue.is_none() && self.kind.is_none()
    }

    pub(crate) fn to_filter(&self) -> JobFilter {
        JobFilter {
            state: self.state,
            queue: self.queue.clone(),
            kind: self.kind.clone(),
            before_id: None,
        }
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "jobs matching state={} queue={} kind={}",
            self.state.map(|s| s.as_str()).unwrap_or("*"),
            self.queue.as_deref().unwrap_or("*"),
            self.kind.as_deref().unwrap_or("*")
        )
    }
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// How many jobs to list: 1 to 10000.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    limit: u32,
    /// Only jobs with an id below this one (the next page).
    #[arg(long)]
    before: Option<i64>,
}

/// A job as listed: the columns scripts rely on.
#[derive(Serialize)]
struct ListRow<'a> {
    id: i64,
    kind: &'a str,
    queue: &'a str,
    state: JobState,
    attempts: i32,
    max_attempts: i32,
    priority: i16,
    key: Option<&'a str>,
    run_at: String,
    created_at: String,
    last_error: Option<&'a str>,
}

impl<'a> From<&'a JobRecord> for ListRow<'a> {
    fn from(j: &'a JobRecord) -> Self {
        ListRow {
            id: j.id,
            kind: &j.kind,
            queue: &j.queue,
            state: j.state,
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            priority: j.priority,
            key: j.key.as_deref(),
            run_at: j.run_at.to_rfc3339(),
            created_at: j.created_at.to_rfc3339(),
            last_error: j.last_error.as_deref(),
        }
    }
}

/// A row that cannot be read, as `--json` shows it: its id, and the column and what is wrong.
fn unreadable_json(row: &Unreadable) -> Value {
    json!({"id": row.id, "unreadable": {"column": row.column, "detail": row.detail}})
}

fn listed_json(listed: &Listed) -> Value {
    match listed {
        Listed::Job(job) => json!(ListRow::from(job.as_ref())),
        Listed::Unreadable(row) => unreadable_json(row),
    }
}

/// The payload as people may see it: the kind's own redaction; unknown kinds shown as stored.
fn redacted(job: &JobRecord) -> Value {
    all_specs()
        .iter()
        .find(|s| s.kind == job.kind)
        .map(|s| (s.redact)(&job.payload))
        .unwrap_or_else(|| job.payload.clone())
}

pub async fn jobs(config: Option<&Path>, command: JobsCommand, json: bool) -> anyhow::Result<()> {
    let settings = settings(config, &[])?;
    let queue = open(&settings).await?;
    match command {
        JobsCommand::List(args) => list(&queue, args, json).await,
        JobsCommand::Show { id } => show(&queue, id, json).await,
        JobsCommand::Retry(args) => repair::run(&queue, RepairAction::Retry, args, json).await,
        JobsCommand::Discard(args) => repair::run(&queue, RepairAction::Discard, args, json).await,
        JobsCommand::Cancel(args) => repair::run(&queue, RepairAction::Cancel, args, json).await,
    }
}

async fn list(queue: &Queue, args: ListArgs, json: bool) -> anyhow::Result<()> {
    let filter = JobFilter {
        before_id: args.before,
        ..args.filter.to_filter()
    };
    let found = queue.driver().list_jobs(&filter, args.limit).await?;
    if json {
        return print_json(&found.iter().map(listed_json).collect::<Vec<_>>());
    }
    say!(
        "{:>10}  {:<20} {:<12} {:<10} {:>8}  {:<25} last error",
        "id",
        "kind",
        "queue",
        "state",
        "attempts",
        "run at"
    );
    for listed in &found {
        let job = match listed {
            Listed::Job(job) => job,
            Listed::Unreadable(row) => {
                say!("{:>10}  unreadable: {row}", row.id);
                continue;
            }
        };
        say!(
            "{:>10}  {:<20} {:<12} {:<10} {:>4}/{:<3}  {:<25} {}",
            job.id,
            job.kind,
            job.queue,
            job.state,
            job.attempts,
            job.max_attempts,
            job.run_at.format("%Y-%m-%d %H:%M:%S%.3f"),
            job.last_error.as_deref().map(first_line).unwrap_or("")
        );
    }
    Ok(())
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

async fn show(queue: &Queue, id: i64, json: bool) -> anyhow::Result<()> {
    let mut job = match queue.driver().job(id).await? {
        None => bail!("no job with id {id}"),
        Some(Listed::Job(job)) => job,
        Some(Listed::Unreadable(row)) if json => return print_json(&unreadable_json(&row)),
        Some(Listed::Unreadable(row)) => {
            say!("job {id} cannot be read: {row}");
            say!("  (discard it with `jobq jobs discard {id}`, or repair the row by hand)");
            return Ok(());
        }
    };
    job.payload = redacted(&job);
    if json {
        return print_json(&job);
    }
    say!(
        "job {} ({}) in queue {}: {}",
        job.id,
        job.kind,
        job.queue,
        job.state
    );
    say!("  payload:      {}", job.payload);
    say!("  key:          {}", job.key.as_deref().unwrap_or("-"));
    say!("  attempts:     {} of {}", job.attempts, job.max_attempts);
    say!("  priority:     {}", job.priority);
    say!("  created:      {}", job.created_at.to_rfc3339());
    say!("  run at:       {}", job.run_at.to_rfc3339());
    if let Some(at) = job.attempted_at {
        let by = job.attempted_by.as_deref().unwrap_or("?");
        say!("  last attempt: {} by {by}", at.to_rfc3339());
    }
    if let Some(at) = job.finalized_at {
        say!("  finalized:    {}", at.to_rfc3339());
    }
    for e in &job.errors {
        say!(
            "  attempt {} at {} on {} after {} ms: {}",
            e.attempt,
            e.at.to_rfc3339(),
            e.worker,
            e.duration_ms,
            e.error
        );
    }
    Ok(())
}

pub async fn queues(
    config: Option<&Path>,
    command: QueuesCommand,
    json: bool,
) -> anyhow::Result<()> {
    let settings = settings(config, &[])?;
    let queue = open(&settings).await?;
    let (name, paused) = match command {
        QueuesCommand::List => return stats_of(&queue, &settings, json).await,
        QueuesCommand::Pause { queue } => (queue, true),
        QueuesCommand::Resume { queue } => (queue, false),
    };
    if !jobs::job::is_valid_queue_name(&name) {
        bail!("queue name '{name}' is invalid: 1 to 64 characters of a-z, 0-9, '_' and '-'");
    }
    let kind_queues = all_specs().iter().map(|s| s.queue.to_string()).collect();
    check_queue_names(&queue, std::slice::from_ref(&name), kind_queues).await?;
    let action = if paused { "pause" } else { "resume" };
    let audit = AuditEntry::cli(action, format!("queue {name}"));
    queue.set_paused(&name, paused, &audit).await?;
    if json {
        print_json(&json!({"queue": name, "paused": paused}))
    } else {
        say!("queue {name} {}", if paused { "paused" } else { "resumed" });
        Ok(())
    }
}

pub async fn stats(config: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let settings = settings(config, &[])?;
    let queue = open(&settings).await?;
    stats_of(&queue, &settings, json).await
}

async fn stats_of(queue: &Queue, settings: &Settings, json: bool) -> anyhow::Result<()> {
    let counts = queue.driver().state_counts().await?;
    let infos = queue.driver().queues().await?;
    // Live: a heartbeat within three intervals. Dead ones linger until the cleaner's hour.
    let live_since = chrono::Utc::now()
        - chrono::Duration::from_std(settings.worker.heartbeat_interval * 3)
            .unwrap_or(chrono::Duration::MAX);
    let workers: Vec<_> = queue
        .driver()
        .workers()
        .await?
        .into_iter()
        .filter(|w| w.heartbeat_at > live_since)
        .collect();
    let mut per_queue: BTreeMap<String, BTreeMap<&str, i64>> = BTreeMap::new();
    for info in &infos {
        per_queue.entry(info.name.clone()).or_default();
    }
    for c in &counts {
        *per_queue
            .entry(c.queue.clone())
            .or_default()
            .entry(c.state.as_str())
            .or_default() += c.count;
    }
    // Outcomes of the last hour, from the per-minute counts the workers write.
    let mut last_hour: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    for o in queue.driver().outcome_series(hour_ago).await? {
        *last_hour
            .entry(o.queue)
            .or_default()
            .entry(o.outcome)
            .or_default() += o.count;
    }
    let rows: Vec<Value> = per_queue
        .iter()
        .map(|(name, states)| {
            let info = infos.iter().find(|i| &i.name == name);
            json!({
                "queue": name,
                "paused": info.is_some_and(|i| i.paused),
                "oldest_available_age_s": info.and_then(|i| i.oldest_available_age_s),
                "counts": states,
                "last_hour": last_hour.get(name).cloned().unwrap_or_default(),
            })
        })
        .collect();
    if json {
        return print_json(&json!({"queues": rows, "workers": workers}));
    }
    for (name, states) in &per_queue {
        let info = infos.iter().find(|i| &i.name == name);
        let paused = if info.is_some_and(|i| i.paused) {
            " (paused)"
        } else {
            ""
        };
        let oldest = info
            .and_then(|i| i.oldest_available_age_s)
            .map(|s| format!(", oldest available {s:.1}s"))
            .unwrap_or_default();
        let states: Vec<String> = states.iter().map(|(s, n)| format!("{s}={n}")).collect();
        say!("{name}{paused}: {}{oldest}", states.join(" "));
        if let Some(outcomes) = last_hour.get(name) {
            let outcomes: Vec<String> = outcomes.iter().map(|(o, n)| format!("{o}={n}")).collect();
            say!("  last hour: {}", outcomes.join(" "));
        }
    }
    say!("{} live worker(s)", workers.len());
    for w in &workers {
        say!(
            "  {} pid {} on {} queues {} since {} (heartbeat {})",
            w.id,
            w.pid,
            w.host,
            w.queues,
            w.started_at.to_rfc3339(),
            w.heartbeat_at.to_rfc3339()
        );
    }
    Ok(())
}
