//! `jobq`: one binary, subcommands for every role. See README.md and ARCHITECTURE.md.

mod admin;
mod bench;
mod config_check;
mod demo;
mod output;
mod panels;
mod repair;
mod startup;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "jobq", version, about = "A durable job queue and worker pool")]
struct Cli {
    /// Machine-readable output (JSON on standard output).
    #[arg(long, global = true)]
    json: bool,
    /// The config file (settings over config/default.toml; JOBQ_* variables override it).
    #[arg(long, global = true, env = "JOBQ_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the schema migrations (forward-only).
    Migrate(StayUp),
    /// Run a worker process.
    Worker(WorkerArgs),
    /// Migrate, then run a worker, the Telegram and Discord bots whose tokens are set, and the
    /// dashboard when an admin token is set; it says which it skipped.
    Up(UpArgs),
    /// Serve the admin dashboard (needs JOBQ_ADMIN_TOKEN or [[admins]]).
    Web(WebArgs),
    /// List every job kind with its queue, attempts, timeout and an example payload.
    Kinds,
    /// Enqueue one job. PAYLOAD_JSON `-` reads standard input.
    Enqueue(EnqueueArgs),
    /// Inspect and repair jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// List, pause and resume queues.
    #[command(subcommand)]
    Queues(QueuesCommand),
    /// Counts per queue and state, oldest available job, live workers.
    Stats,
    /// Check the configuration and print the effective settings.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Measure insert, drain and pickup latency against JOBQ_DATABASE_URL.
    Bench(bench::BenchArgs),
    /// Run a fake S-UI panel on 127.0.0.1 for developing without a real one.
    DevPanel(DevPanelArgs),
    /// The panels of the config: check each one's reachability, version, credentials, inbounds.
    #[command(subcommand)]
    Panels(PanelsCommand),
    /// Run the Telegram bot (token from JOBQ_TELEGRAM_TOKEN): long polling, or --webhook.
    Telegram(TelegramArgs),
    /// Run the Discord bot (token from JOBQ_DISCORD_TOKEN): slash commands in [discord] guilds.
    Discord(StayUp),
}

/// For process managers that stop every process when one exits (honcho, foreman): the
/// shipped Procfile runs each process with it.
#[derive(Args, Clone, Copy, Default)]
pub struct StayUp {
    /// Never exit on your own: `migrate` stays up once done; a worker or the dashboard waits
    /// for a database not migrated yet; a bot without its token, or the dashboard without an
    /// admin token, says so in one log line and idles. Until SIGTERM or SIGINT. A bad setting
    /// or a malformed token still stops it.
    #[arg(long)]
    pub stay_up: bool,
}

#[derive(Args, Clone)]
pub struct TelegramArgs {
    /// Receive updates by webhook at this public https URL (it must route to
    /// --webhook-bind, path /telegram/webhook) instead of long polling.
    #[arg(long, value_name = "URL")]
    webhook: Option<String>,
    /// Where the webhook server listens.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8443")]
    webhook_bind: String,
    #[command(flatten)]
    stay: StayUp,
}

#[derive(Subcommand)]
pub enum PanelsCommand {
    /// Check each configured panel: reachable, version, credentials, inbounds, latency.
    Check,
}

#[derive(Args)]
pub struct DevPanelArgs {
    /// The panel's port (S-UI's default is 2095).
    #[arg(long, default_value_t = 2095)]
    port: u16,
    /// The API token (default: a fixed development token, printed at start).
    #[arg(long)]
    token: Option<String>,
    /// The subscription listener's port (0: any free port).
    #[arg(long, default_value_t = 0)]
    sub_port: u16,
    /// The S-UI version to behave as (1.1.x, 1.2.x, 1.4.x, 1.5.x).
    #[arg(long, default_value = "1.5.1")]
    panel_version: String,
}

#[derive(Args, Clone)]
pub struct WorkerArgs {
    /// Jobs run at once per queue (overrides worker.concurrency).
    #[arg(long)]
    concurrency: Option<u32>,
    /// The queues to work, comma-separated (overrides worker.queues).
    #[arg(long, value_delimiter = ',')]
    queues: Option<Vec<String>>,
    /// Serve this process's metrics at GET /metrics on ADDR:PORT; ADDR:FIRST-LAST takes the
    /// first free port of the range (several workers on one host), and a bare PORT is on
    /// 127.0.0.1 (`$PORT` under honcho or foreman). Overrides worker.metrics_bind.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_bind: Option<String>,
    /// Also run the engine's test kinds (for the test suite).
    #[arg(long, hide = true)]
    test_kinds: bool,
    #[command(flatten)]
    stay: StayUp,
}

#[derive(Args, Clone)]
pub struct UpArgs {
    #[command(flatten)]
    worker: WorkerArgs,
    /// A first run with nothing to set up: starts a dev panel and fake Telegram and Discord
    /// APIs, a fresh queue in data/demo/, and a worker; enqueues a few hundred realistic jobs
    /// (some failing on purpose), shows progress and sums up what happened.
    #[arg(long)]
    demo: bool,
}

#[derive(Args, Clone)]
pub struct WebArgs {
    /// Listen on ADDR:PORT (overrides web.bind; default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR:PORT")]
    bind: Option<String>,
    #[command(flatten)]
    stay: StayUp,
}

#[derive(Args)]
pub struct EnqueueArgs {
    /// The job's kind (`jobq kinds` lists them with an example payload each).
    kind: String,
    /// The payload as JSON, parsed by the kind; `-` reads it from standard input.
    #[arg(value_name = "PAYLOAD_JSON")]
    payload: String,
    /// Idempotency key: a second enqueue with a key already held returns the existing job.
    #[arg(long)]
    key: Option<String>,
    /// Run no earlier than this RFC 3339 time.
    #[arg(long)]
    at: Option<String>,
    /// Higher runs first: -100 to 100.
    #[arg(long, allow_hyphen_values = true)]
    priority: Option<i16>,
    /// Attempts before the job fails for good: 1 to 1000 (default: the kind's).
    #[arg(long, value_name = "N")]
    max_attempts: Option<u32>,
    /// Put the job in this queue instead of its kind's.
    #[arg(long)]
    queue: Option<String>,
}

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Jobs newest first, filtered by state, queue and kind.
    List(admin::ListArgs),
    /// One job: its payload (secrets masked), key, attempts and every failed attempt's error.
    Show {
        /// The job's id.
        id: i64,
    },
    /// Retry jobs by id, or every job matching --state/--queue/--kind.
    Retry(repair::RepairArgs),
    /// Discard jobs by id, or every job matching the filter.
    Discard(repair::RepairArgs),
    /// Cancel jobs by id, or every job matching the filter.
    Cancel(repair::RepairArgs),
}

#[derive(Subcommand)]
pub enum QueuesCommand {
    /// Every queue: its jobs by state, the oldest available job, whether it is paused.
    List,
    /// Stop workers taking jobs from a queue (running jobs finish); recorded in the audit log.
    Pause {
        /// A queue a job kind uses, or one holding jobs.
        queue: String,
    },
    /// Let workers take jobs from a paused queue again.
    Resume {
        /// A queue a job kind uses, or one holding jobs.
        queue: String,
    },
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Check the settings and what they need from the environment (credentials, secret key,
    /// bot tokens, S3), contacting nothing; print the effective settings, secrets masked.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            output::error_line(format_args!(
                "error: cannot start the async runtime: {error}"
            ));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader stopped reading (`| head`): it has what it wanted.
        Err(error) if output::is_closed(&error) => ExitCode::SUCCESS,
        Err(error) => {
            output::error_line(format_args!("error: {error:#}"));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config.as_deref();
    let json = cli.json;
    match cli.command {
        Command::Migrate(stay) => startup::migrate(config, stay).await,
        Command::Worker(args) => startup::worker(config, &args, false).await,
        Command::Up(args) if args.demo => demo::run().await,
        Command::Up(args) => startup::worker(config, &args.worker, true).await,
        Command::Web(args) => startup::web(config, &args).await,
        Command::Kinds => admin::kinds(json),
        Command::Enqueue(args) => admin::enqueue(config, args, json).await,
        Command::Jobs(command) => admin::jobs(config, command, json).await,
        Command::Queues(command) => admin::queues(config, command, json).await,
        Command::Stats => admin::stats(config, json).await,
        Command::Config(ConfigCommand::Check) => config_check::run(config, json),
        Command::Bench(args) => bench::run(config, args, json).await,
        Command::DevPanel(args) => dev_panel(args).await,
        Command::Panels(PanelsCommand::Check) => panels::check(config, json).await,
        Command::Telegram(args) => startup::telegram(config, &args).await,
        Command::Discord(stay) => startup::discord(config, stay).await,
    }
}

async fn dev_panel(args: DevPanelArgs) -> anyhow::Result<()> {
    use fakes::sui::{DEV_TOKEN, FakeSui, SuiOptions};
    let token = args.token.unwrap_or_else(|| DEV_TOKEN.to_owned());
    let options = SuiOptions {
        bind: ([127, 0, 0, 1], args.port).into(),
        sub_bind: Some(([127, 0, 0, 1], args.sub_port).into()),
        version: args.panel_version,
        token: Some(token.clone()),
        ..SuiOptions::default()
    };
    let panel = FakeSui::start(options).await?;
    output::note!("fake S-UI panel at {}", panel.url());
    output::note!("token: {token}  (login admin/admin)");
    if let Some(sub) = panel.sub_addr() {
        output::note!("subscriptions at http://{sub}/sub/NAME");
    }
    output::note!(
        "faults: POST {}fault, see fakes/src/sui.rs",
        panel.admin_url()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
