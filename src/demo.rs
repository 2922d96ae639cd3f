//! `jobq up --demo`: a newcomer's first run. Starts the dev S-UI panel and fake Telegram and
//! Discord APIs in this process, a fresh SQLite queue under `data/demo/`, and a real `jobq
//! worker` process against them; enqueues a realistic mix (a few hundred provisions, ticket
//! transcripts, DMs, some to users who blocked the bot) while the panel fails some calls;
//! shows progress; and ends with what happened (done, retried, failed and why) and where to
//! look.

use crate::output::say;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use fakes::discord::{FakeDiscord, SeedAuthor};
use fakes::sui::{DEV_TOKEN, FakeSui, Fault, SuiOptions};
use fakes::telegram::{ChatState, FakeTelegram};
use jobs::configuration::Settings;
use jobs::driver::JobFilter;
use jobs::{EnqueueOptions, JobState, NewJob, Queue};
use serde_json::json;

const DIR: &str = "data/demo";
const TELEGRAM_TOKEN: &str = "100000001:demoTelegramTokenNotARealOne00000";
const DISCORD_TOKEN: &str = "ZGVtbw.demoDiscordToken.notARealOne_0000000";
const PROVISIONS: usize = 240;
const TICKETS: u64 = 12;
const ANNOUNCEMENTS: i64 = 40;
const GUILD: u64 = 900_000_000_000_000_001;
const ADMIN: i64 = 1000;
/// How long the demo waits for the queue to settle before summing up anyway.
const AT_MOST: Duration = Duration::from_secs(180);

/// The fakes the worker talks to, alive for the demo.
struct Outside {
    panel: FakeSui,
    telegram: FakeTelegram,
    discord: FakeDiscord,
}

pub async fn run() -> anyhow::Result<()> {
    let dir = PathBuf::from(DIR);
    fresh_dir(&dir)?;
    let outside = start_outside().await?;
    let config = write_config(&dir, &outside)?;
    let settings = Settings::load(Some(&config), &[])?;
    let queue = Queue::connect(&settings.database).await?;
    queue.migrate().await?;
    say!(
        "jobq demo: queue at {DIR}/jobq.db, dev panel at {}",
        outside.panel.url()
    );
    let mut worker = spawn_worker(&config)?;
    let enqueued = enqueue_mix(&queue).await?;
    say!(
        "enqueued {enqueued} jobs; their handlers enqueue follow-ups (each provision's DM and \
         expiry job), so more complete than were enqueued. The dev panel fails some calls on \
         purpose\n"
    );
    let settled = watch(&queue, &mut worker).await;
    stop(&mut worker);
    let settled = settled?;
    summary(&queue, &outside, &config, settled).await
}

/// Starts from an empty queue each time, keeping nothing but the folder.
fn fresh_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

async fn start_outside() -> anyhow::Result<Outside> {
    let panel = FakeSui::start(SuiOptions {
        sub_bind: Some(([127, 0, 0, 1], 0).into()),
        ..SuiOptions::default()
    })
    .await
    .context("cannot start the dev panel")?;
    // Calls fail as real panels' do: a proxy's 502s, answers lost after the change was made,
    // rate limiting, and a stall past the client's timeout.
    panel.inject_on(Some("save"), Fault::BadGateway, 14);
    panel.inject_on(Some("save"), Fault::DropAfterApply, 5);
    panel.inject_on(
        Some("clients"),
        Fault::TooManyRequests {
            retry_after: "2".into(),
        },
        4,
    );
    panel.inject_on(Some("load"), Fault::Stall(Duration::from_secs(4)), 2);
    let telegram = FakeTelegram::start(TELEGRAM_TOKEN).await?;
    let discord = FakeDiscord::start(DISCORD_TOKEN).await?;
    // Some users blocked the bot or closed their DMs: those DMs fail for good.
    for user in [20_003, 20_017, 20_031] {
        telegram.set_chat(user, ChatState::Blocked);
    }
    discord.close_dms(30_003);
    seed_tickets(&discord);
    Ok(Outside {
        panel,
        telegram,
        discord,
    })
}

/// Ticket channels with a conversation each (the last ticket id has none: its channel is gone).
fn seed_tickets(discord: &FakeDiscord) {
    let authors = [
        SeedAuthor::new(30_001, "customer"),
        SeedAuthor::new(30_099, "support"),
    ];
    for ticket in 1..TICKETS {
        let channel = ticket_channel(ticket);
        discord.set_channel(channel, &format!("ticket-{ticket}"), Some(GUILD));
        discord.seed_many(channel, 150, &authors);
    }
}

fn ticket_channel(ticket: u64) -> u64 {
    910_000_000_000_000_000 + ticket
}

fn write_config(dir: &Path, outside: &Outside) -> anyhow::Result<PathBuf> {
    let config = format!(
        r#"# Written by `jobq up --demo`: the dev panel and fake chat APIs of that run.
[database]
url = "sqlite://{DIR}/jobq.db"

[worker]
concurrency = 16

[maintenance]
failure_digest_every = "15s"

[log]
# Warnings, each in its job's span (id, kind, queue, attempt); sqlx's slow-statement warnings,
# which quote whole statements, left out.
filter = "warn,sqlx=error"

[[panels]]
name = "demo"
kind = "s-ui"
url = "{panel}"
token_env = "JOBQ_DEMO_PANEL_TOKEN"
timeout = "3s"
concurrency = 8

[[plans]]
name = "basic"
volume_gb = 10
days = 30
inbounds = [1]

[[plans]]
name = "pro"
volume_gb = 100
days = 90
inbounds = [1]

[telegram]
api_url = "{telegram}"
admins = [{ADMIN}]

[discord]
api_url = "{discord}"

[transcripts]
store = "local"
local_dir = "{DIR}/transcripts"
public_base_url = "http://127.0.0.1:8080/"
"#,
        panel = outside.panel.url(),
        telegram = outside.telegram.url(),
        discord = outside.discord.url(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, config).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// A real worker process, as production runs it, with the demo's credentials only.
fn spawn_worker(config: &Path) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("cannot find the jobq executable")?;
    let log = std::fs::File::create(Path::new(DIR).join("worker.log"))?;
    let mut command = Command::new(exe);
    for (name, _) in std::env::vars_os() {
        // The demo's settings are its own: nothing from the caller's JOBQ_* environment.
        if name.to_string_lossy().starts_with("JOBQ_") {
            command.env_remove(name);
        }
    }
    command
        .args(["--config"])
        .arg(config)
        .arg("worker")
        .env("JOBQ_DEMO_PANEL_TOKEN", DEV_TOKEN)
        .env("JOBQ_TELEGRAM_TOKEN", TELEGRAM_TOKEN)
        .env("JOBQ_DISCORD_TOKEN", DISCORD_TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    command.spawn().context("cannot start the demo worker")
}

/// Provisions for Telegram and Discord customers (one of an unknown plan), ticket transcripts
/// (one of a channel that is gone), and announcements (a few to users who blocked the bot).
async fn enqueue_mix(queue: &Queue) -> anyhow::Result<usize> {
    let mut jobs = Vec::new();
    for n in 0..PROVISIONS {
        let (platform, user) = match n % 4 {
            3 => ("discord", 30_000 + n),
            _ => ("telegram", 20_000 + n),
        };
        let plan = match n {
            7 => "platinum",
            n if n % 5 == 0 => "pro",
            _ => "basic",
        };
        let payload =
            json!({"panel": "demo", "plan": plan, "user": {"platform": platform, "id": user}});
        jobs.push(keyed(
            "provision_client",
            payload,
            format!("demo-order-{n}"),
        )?);
    }
    for ticket in 1..=TICKETS {
        let payload = json!({"guild": GUILD, "channel": ticket_channel(ticket),
                             "owner": {"platform": "discord", "id": 30_001}});
        jobs.push(keyed(
            "upload_transcript",
            payload,
            format!("demo-ticket-{ticket}"),
        )?);
    }
    for n in 0..ANNOUNCEMENTS {
        let user = 20_000 + n;
        let text = "Maintenance tonight 02:00-02:30 UTC: your connection may drop briefly.";
        let payload = json!({"user": {"platform": "telegram", "id": user}, "text": text});
        jobs.push(keyed("send_dm", payload, format!("demo-announcement-{n}"))?);
    }
    let count = jobs.len();
    queue.enqueue_many(&jobs).await?;
    Ok(count)
}

fn keyed(kind: &str, payload: serde_json::Value, key: String) -> anyhow::Result<NewJob> {
    let spec = jobs::kinds::spec(kind).with_context(|| format!("no kind {kind}"))?;
    let options = EnqueueOptions {
        key: Some(key),
        ..EnqueueOptions::default()
    };
    Ok(NewJob::from_json(&spec, &payload, options)?)
}

/// Prints progress every second until nothing is left to run soon (expiry jobs wait for their
/// day), the worker dies, or [`AT_MOST`] passes. `true` when the queue settled; an error only
/// when standard output closed (the worker is stopped either way).
async fn watch(queue: &Queue, worker: &mut Child) -> anyhow::Result<bool> {
    let started = Instant::now();
    loop {
        let counts = counts(queue).await.unwrap_or_default();
        let pending = pending(queue, &counts).await;
        say!(
            "  {:>4.0}s  completed {:>4}  failed {:>3}  retrying {:>3}  running {:>3}  waiting {:>4}",
            started.elapsed().as_secs_f64(),
            counts.get(&JobState::Completed).copied().unwrap_or(0),
            counts.get(&JobState::Failed).copied().unwrap_or(0),
            counts.get(&JobState::Retrying).copied().unwrap_or(0),
            counts.get(&JobState::Running).copied().unwrap_or(0),
            pending,
        );
        if pending == 0 {
            return Ok(true);
        }
        if let Ok(Some(status)) = worker.try_wait() {
            say!("the worker exited ({status}): see {DIR}/worker.log");
            return Ok(false);
        }
        if started.elapsed() > AT_MOST {
            say!("still running after {AT_MOST:?}: summing up what happened so far");
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn counts(queue: &Queue) -> anyhow::Result<std::collections::HashMap<JobState, i64>> {
    let mut by_state = std::collections::HashMap::new();
    for row in queue.driver().state_counts().await? {
        *by_state.entry(row.state).or_insert(0) += row.count;
    }
    Ok(by_state)
}

/// Jobs still to run now or soon: all available, running and retrying ones, and scheduled
/// ones other than the expiry jobs (which run at each subscription's end).
async fn pending(queue: &Queue, counts: &std::collections::HashMap<JobState, i64>) -> i64 {
    let active: i64 = [JobState::Available, JobState::Running, JobState::Retrying]
        .iter()
        .map(|s| counts.get(s).copied().unwrap_or(0))
        .sum();
    let scheduled = counts.get(&JobState::Scheduled).copied().unwrap_or(0);
    let expiries = queue
        .driver()
        .count_matching(&JobFilter {
            state: Some(JobState::Scheduled),
            kind: Some("expire_subscription".into()),
            ..JobFilter::default()
        })
        .await
        .unwrap_or(0);
    active + scheduled - expiries
}

fn stop(worker: &mut Child) {
    #[cfg(unix)]
    {
        let _ = Command::new("kill")
            .args(["-TERM", &worker.id().to_string()])
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = worker.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = worker.kill();
    let _ = worker.wait();
}

async fn summary(
    queue: &Queue,
    outside: &Outside,
    config: &Path,
    settled: bool,
) -> anyhow::Result<()> {
    let jobs = all_jobs(queue).await?;
    say!(
        "\nwhat happened{}:",
        if settled { "" } else { " (not finished)" }
    );
    let mut kinds: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for job in &jobs {
        let entry = kinds.entry(job.kind.as_str()).or_default();
        match job.state {
            JobState::Completed => {
                entry.0 += 1;
                if job.attempts > 1 {
                    entry.1 += 1;
                }
            }
            JobState::Failed => entry.2 += 1,
            _ => {}
        }
    }
    for (kind, (done, retried, failed)) in &kinds {
        say!("  {kind:<20} done {done:>4} (of which retried {retried:>3})   failed {failed:>3}");
    }
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for job in jobs.iter().filter(|j| j.state == JobState::Failed) {
        let reason = job.last_error.clone().unwrap_or_default();
        // Handlers' errors may already start with their kind.
        let kind_prefix = format!("{}: ", job.kind);
        let reason = reason.strip_prefix(&kind_prefix).unwrap_or(&reason);
        *reasons
            .entry(format!("{kind_prefix}{}", first_line(reason)))
            .or_default() += 1;
    }
    if !reasons.is_empty() {
        say!("\nfailed for good, and why:");
        for (reason, count) in &reasons {
            say!("  {count:>3} x {reason}");
        }
    }
    // A rate limit's wait (a 429, no turn left) is recorded like a failed attempt but is not a
    // failure: shown apart.
    let (waits, failures): (Vec<&str>, Vec<&str>) = jobs
        .iter()
        .flat_map(|j| &j.errors)
        .map(|e| e.error.as_str())
        .partition(|e| e.contains(WAITED));
    show_attempts(
        "failed attempts (retried unless the job failed for good)",
        &failures,
    )?;
    show_attempts(
        "waits for a rate limit (each retried once allowed, not a failure)",
        &waits,
    )?;
    say!("\nthe outside world afterwards:");
    say!(
        "  panel clients           {}",
        outside.panel.clients().len()
    );
    say!(
        "  Telegram messages sent  {}",
        outside.telegram.sent().len()
    );
    say!("  Discord messages sent   {}", outside.discord.sent().len());
    say!(
        "  transcripts stored      {}",
        count_files(&Path::new(DIR).join("transcripts"))
    );
    let config = config.display();
    let jobq = jobq_command();
    say!("\nwhere to look:");
    say!("  {jobq} --config {config} jobs list --state failed");
    say!("  {jobq} --config {config} jobs show ID");
    say!("  JOBQ_ADMIN_TOKEN=pick-one-of-16-chars {jobq} --config {config} web   (the dashboard)");
    say!("  the worker's log: {DIR}/worker.log");
    Ok(())
}

async fn all_jobs(queue: &Queue) -> anyhow::Result<Vec<jobs::driver::JobRecord>> {
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let filter = JobFilter {
            before_id: before,
            ..JobFilter::default()
        };
        let page = queue.driver().list_jobs(&filter, 500).await?;
        let Some(last) = page.last() else {
            return Ok(all);
        };
        before = Some(last.id());
        for row in page {
            all.push(row.readable()?);
        }
    }
}

/// An attempt's error without the parts that differ between attempts of the same cause.
/// How to run this jobq from here: `jobq` when the PATH has it, else this binary's path (a
/// first run with `cargo run` has not installed it).
fn jobq_command() -> String {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("jobq").is_file()));
    match std::env::current_exe() {
        Ok(exe) if !on_path => exe.display().to_string(),
        _ => "jobq".to_string(),
    }
}

/// How an attempt that waits for a rate limit ends its error (`JobError::RetryAfter`).
const WAITED: &str = " (retry no sooner than";

/// The most frequent of `errors`, counted, under `title`.
fn show_attempts(title: &str, errors: &[&str]) -> anyhow::Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    let mut counted: BTreeMap<String, usize> = BTreeMap::new();
    for error in errors {
        *counted.entry(attempt_reason(error)).or_default() += 1;
    }
    let mut counted: Vec<(String, usize)> = counted.into_iter().collect();
    counted.sort_by_key(|r| std::cmp::Reverse(r.1));
    say!("\n{title}:");
    for (error, count) in counted.iter().take(8) {
        say!("  {count:>3} x {error}");
    }
    Ok(())
}

fn attempt_reason(error: &str) -> String {
    let error = first_line(error);
    match error.find(WAITED) {
        Some(cut) => error[..cut].to_string(),
        None => error,
    }
}

/// The first line, at most [`SHOWN_CHARS`] characters, cut between words.
fn first_line(text: &str) -> String {
    const SHOWN_CHARS: usize = 110;
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() <= SHOWN_CHARS {
        return line.to_string();
    }
    let short: String = line.chars().take(SHOWN_CHARS).collect();
    let cut = short.rfind(' ').unwrap_or(short.len());
    format!("{}…", short[..cut].trim_end())
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() { count_files(&path) } else { 1 }
        })
        .sum()
}
