//! Turning settings into running parts: the queue, the registry of kinds, the worker.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use jobs::configuration::{MetricsBind, Settings};
use jobs::secret_key::SecretKey;
use jobs::{Job, Queue};
use workers::handlers::{self, Panels, Product};
use workers::metrics::WorkerMetrics;
use workers::{Registry, Runtime, RuntimeOptions, testkit};

use crate::output::note;
use crate::{StayUp, TelegramArgs, WebArgs, WorkerArgs};

pub fn settings(config: Option<&Path>, overrides: &[(&str, String)]) -> anyhow::Result<Settings> {
    Ok(Settings::load(config, overrides)?)
}

/// Settings and logging for commands that run for a while.
pub fn settings_with_logs(
    config: Option<&Path>,
    overrides: &[(&str, String)],
) -> anyhow::Result<Settings> {
    let settings = settings(config, overrides)?;
    crate::telemetry::init(&settings.log)?;
    Ok(settings)
}

/// Opens the queue and refuses a schema this binary does not understand.
pub async fn open(settings: &Settings) -> anyhow::Result<Queue> {
    Ok(Queue::open(&settings.database).await?)
}

pub async fn migrate(config: Option<&Path>, stay: StayUp) -> anyhow::Result<()> {
    let settings = settings_with_logs(config, &[])?;
    let queue = Queue::connect(&settings.database).await?;
    queue
        .migrate()
        .await
        .with_context(|| format!("migrating {}", settings.database.url))?;
    queue.check_schema().await?;
    tracing::info!(database = %settings.database.url, "schema is up to date");
    if stay.stay_up {
        idle("migrations done").await;
    }
    Ok(())
}

/// Says why in one log line, then idles until SIGTERM or SIGINT (`--stay-up`: the process
/// manager stops every process when one exits).
async fn idle(why: &str) {
    tracing::warn!("{why}; staying up idle until stopped (--stay-up)");
    shutdown_signal().await;
}

/// A bot under `--stay-up` without its token: one log line, then idle until stopped.
async fn idle_without_token(
    config: Option<&Path>,
    bot: &str,
    variable: &str,
) -> anyhow::Result<()> {
    settings_with_logs(config, &[])?;
    idle(&format!("{bot} bot not started: {variable} is not set")).await;
    Ok(())
}

/// The schema check. With `--stay-up`, a database not migrated yet is waited for (the
/// Procfile's release step migrates it) instead of refused; a newer one is still refused.
/// `false` when stopped while waiting.
async fn schema_ready(queue: &Queue, stay: StayUp) -> anyhow::Result<bool> {
    let stopped = shutdown_signal();
    tokio::pin!(stopped);
    let mut said = false;
    loop {
        let error = match queue.check_schema().await {
            Ok(()) => return Ok(true),
            Err(error) => error,
        };
        if !stay.stay_up {
            return Err(error.into());
        }
        if !queue.schema_is_behind().await? {
            // Newer than this jobq (refused), or migrated since the check (ready): look again.
            queue.check_schema().await?;
            return Ok(true);
        }
        if !said {
            tracing::warn!("{error}; waiting for it (--stay-up)");
            said = true;
        }
        tokio::select! {
            () = tokio::time::sleep(SCHEMA_POLL) => {}
            () = &mut stopped => return Ok(false),
        }
    }
}

/// How often a process waiting for the schema looks again.
const SCHEMA_POLL: Duration = Duration::from_millis(500);

/// Refuses queue names that no kind in play uses and no job is in (a typo would otherwise
/// become a queue of its own, paused or worked by nobody). `kind_queues` are the queues of the
/// kinds in play; queues the database already holds count too (jobs enqueued with `--queue`, a
/// queue paused before). The error lists the product's queues and the database's, never the
/// engine's own (`bench`, the test kinds' `test`).
pub async fn check_queue_names(
    queue: &Queue,
    names: &[String],
    kind_queues: BTreeSet<String>,
) -> anyhow::Result<()> {
    let mut shown = product_queues();
    shown.extend(queue.driver().queues().await?.into_iter().map(|q| q.name));
    shown.remove(testkit::Noop::RULES.queue);
    let unknown: Vec<String> = names
        .iter()
        .filter(|name| !kind_queues.contains(*name) && !shown.contains(*name))
        .map(|name| format!("'{name}'"))
        .collect();
    let (plural, them) = match unknown.len() {
        0 => return Ok(()),
        1 => ("", "it"),
        _ => ("s", "them"),
    };
    anyhow::bail!(
        "unknown queue{plural} {}: no job kind uses {them} and no job is in {them}. Known \
         queues: {}",
        unknown.join(", "),
        shown.into_iter().collect::<Vec<_>>().join(", ")
    )
}

/// The queues of the product's kinds.
fn product_queues() -> BTreeSet<String> {
    jobs::kinds::specs()
        .iter()
        .map(|s| s.queue.to_string())
        .collect()
}

/// What a worker runs: every product kind (a kind that lacks what it needs, a bot token say,
/// fails its jobs naming it), and the test kinds when asked. Not the benchmark's kind, so a
/// worker without `worker.queues` works the product's queues (and `test`) but never `bench`.
pub fn worker_registry(
    settings: &Settings,
    test_kinds: bool,
    queue: &Queue,
) -> anyhow::Result<Registry> {
    let mut registry = Registry::new();
    registry.know(jobs::kinds::specs());
    if test_kinds {
        testkit::register_tests(&mut registry);
    }
    handlers::register(&mut registry, product(settings, queue)?);
    Ok(registry)
}

/// The panels of the settings, the secret key, which is loaded here only when a panel is
/// configured (the transcript store loads it on first use), and the transcript store (S3
/// settings without their credentials stop start-up, naming what is missing).
fn product(settings: &Settings, queue: &Queue) -> anyhow::Result<Product> {
    // Every panel call goes through the panel's limits, shared by all workers in the database.
    let limits = jobs::limits::Limits::new(queue);
    let panels = Panels::from_settings(settings, &limits)?;
    let key = if settings.panels.is_empty() {
        None
    } else {
        let (key, _source) = SecretKey::load(&settings.database)
            .context("the secret key is needed to name panel clients ([[panels]] is configured)")?;
        Some(Arc::new(key))
    };
    let transcripts = workers::transcripts::Transcripts::from_settings(settings, key.clone())
        .context("cannot set up the transcript store ([transcripts])")?;
    // A token variable set to something that cannot be a token stops start-up; a missing one
    // fails only the DMs that need it, naming the variable.
    let chat = workers::chat::ChatClients::from_env(settings)?;
    Ok(Product {
        settings: Arc::new(settings.clone()),
        panels,
        key,
        chat,
        transcripts: Some(Arc::new(transcripts)),
    })
}

/// Every panel a periodic job names is configured: else each period's job would fail.
pub fn periodic_panels(settings: &Settings) -> anyhow::Result<()> {
    for job in settings.periodic_jobs() {
        if let Some(panel) = job.payload.get("panel").and_then(|p| p.as_str())
            && settings.panel(panel).is_none()
        {
            anyhow::bail!(
                "periodic job '{}' names panel '{panel}', which no [[panels]] entry has",
                job.name
            );
        }
    }
    Ok(())
}

pub async fn worker(config: Option<&Path>, args: &WorkerArgs, migrate: bool) -> anyhow::Result<()> {
    let mut overrides = Vec::new();
    if let Some(concurrency) = args.concurrency {
        overrides.push(("worker.concurrency", concurrency.to_string()));
    }
    if let Some(queues) = &args.queues {
        let quoted: Vec<String> = queues.iter().map(|q| format!("{q:?}")).collect();
        overrides.push(("worker.queues", format!("[{}]", quoted.join(","))));
    }
    if let Some(bind) = &args.metrics_bind {
        overrides.push(("worker.metrics_bind", bind.clone()));
    }
    let settings = settings_with_logs(config, &overrides)?;
    periodic_panels(&settings)?;
    let queue = Queue::connect(&settings.database).await?;
    if migrate {
        queue.migrate().await?;
    }
    if !schema_ready(&queue, args.stay).await? {
        return Ok(());
    }
    let dashboard = if migrate {
        DashboardTask::start_for_up(&settings, &queue).await?
    } else {
        None
    };
    let telegram = if migrate {
        TelegramTask::start_for_up(&settings, &queue)?
    } else {
        None
    };
    let discord = if migrate {
        DiscordTask::start_for_up(&settings, &queue)?
    } else {
        None
    };
    if args.test_kinds {
        testkit::create_effects_table(&queue).await?;
    }
    // A handler's panic is caught and recorded on its job; log it once, without a backtrace.
    std::panic::set_hook(Box::new(|info| tracing::error!(panic = %info, "panic")));
    let registry = worker_registry(&settings, args.test_kinds, &queue)?;
    let mut kind_queues = product_queues();
    kind_queues.extend(registry.queues());
    check_queue_names(&queue, &settings.worker.queues, kind_queues)
        .await
        .context("worker.queues (--queues)")?;
    let options = RuntimeOptions::from_settings(&settings, &registry);
    tracing::info!(database = %settings.database.url, "starting worker");
    let metrics = Arc::new(WorkerMetrics::new());
    let queue_for_alerts = queue.clone();
    let runtime = Runtime::new(queue, registry, options)?.with_metrics(metrics.clone());
    let server = match &settings.worker.metrics_bind {
        Some(bind) => Some(MetricsServer::start(bind, metrics).await?),
        None => None,
    };
    let (stop_alerts, alerts_stopped) = tokio::sync::watch::channel(false);
    let alerts = tokio::spawn(workers::failure_alerts::run(
        queue_for_alerts,
        Arc::new(settings.clone()),
        alerts_stopped,
    ));
    let result = runtime.run(shutdown_signal()).await;
    let _ = stop_alerts.send(true);
    let _ = alerts.await;
    if let Some(telegram) = telegram {
        telegram.stop().await;
    }
    if let Some(discord) = discord {
        discord.stop().await;
    }
    if let Some(dashboard) = dashboard {
        dashboard.stop().await;
    }
    if let Some(server) = server {
        server.stop().await;
    }
    Ok(result?)
}

/// `GET /metrics` of one worker process, stopped with it.
struct MetricsServer {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl MetricsServer {
    /// How long a stopping server waits for scrapes in progress.
    const STOP_WITHIN: Duration = Duration::from_secs(5);

    /// On the first port of `bind` that is free.
    async fn start(bind: &MetricsBind, metrics: Arc<WorkerMetrics>) -> anyhow::Result<Self> {
        let mut last_error = None;
        let mut listener = None;
        for address in bind.addresses() {
            match tokio::net::TcpListener::bind(address).await {
                Ok(bound) => {
                    listener = Some(bound);
                    break;
                }
                Err(error) => last_error = Some(error),
            }
        }
        let Some(listener) = listener else {
            let why = last_error.map(|e| e.to_string()).unwrap_or_default();
            anyhow::bail!(
                "cannot serve metrics on {bind} (worker.metrics_bind): {why}; with several \
                 workers on one host give each its own port ($PORT under honcho or foreman) or \
                 a range such as 127.0.0.1:9100-9199"
            );
        };
        let address = listener.local_addr()?;
        tracing::info!(%address, "serving metrics at http://{address}/metrics");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(workers::metrics::serve(listener, metrics, async move {
            let _ = stopped.await;
        }));
        Ok(MetricsServer { stop, task })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let abort = self.task.abort_handle();
        match tokio::time::timeout(Self::STOP_WITHIN, self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(%error, "the metrics server failed"),
            Ok(Err(error)) => tracing::warn!(%error, "the metrics server failed"),
            Err(_) => abort.abort(),
        }
    }
}

/// SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// `jobq web`: the admin dashboard, until SIGTERM or SIGINT.
pub async fn web(config: Option<&Path>, args: &WebArgs) -> anyhow::Result<()> {
    let mut overrides = Vec::new();
    if let Some(bind) = &args.bind {
        overrides.push(("web.bind", bind.clone()));
    }
    let settings = settings_with_logs(config, &overrides)?;
    let options = web::WebOptions::from_settings(&settings)?;
    if options.admins.is_empty() && args.stay.stay_up {
        idle("dashboard not started: no admin token (set JOBQ_ADMIN_TOKEN)").await;
        return Ok(());
    }
    // Refuse an unprotected address before touching the database.
    web::check_bind(options.bind, &options.admins)?;
    let queue = Queue::connect(&settings.database).await?;
    if !schema_ready(&queue, args.stay).await? {
        return Ok(());
    }
    let dashboard = web::Dashboard::bind(queue, &options)
        .await?
        .with_transcript_links(web::transcripts::TranscriptLinks::from_settings(&settings));
    announce(&settings, &options, dashboard.local_addr()?);
    dashboard.serve(shutdown_signal()).await?;
    tracing::info!("dashboard stopped");
    Ok(())
}

/// Prints where the dashboard is (standard output, for people and for scripts that bind
/// port 0), and logs it.
fn announce(settings: &Settings, options: &web::WebOptions, addr: std::net::SocketAddr) {
    let admins: Vec<&str> = options.admins.iter().map(|a| a.name.as_str()).collect();
    note!("dashboard listening on http://{addr}/");
    if !settings.web.public_base_url.is_empty() {
        note!("admins open it at {}", settings.web.public_base_url);
    }
    tracing::info!(%addr, admins = %admins.join(","), database = %settings.database.url,
        "dashboard started");
}

/// The dashboard beside the worker of `jobq up`, stopped with it.
struct DashboardTask {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), web::WebError>>,
}

impl DashboardTask {
    /// Started when an admin token is set; otherwise says why not and returns `None`.
    async fn start_for_up(settings: &Settings, queue: &Queue) -> anyhow::Result<Option<Self>> {
        let options = web::WebOptions::from_settings(settings)?;
        if options.admins.is_empty() {
            note!(
                "dashboard not started: no admin token. Set JOBQ_ADMIN_TOKEN (at least {} \
                 characters) to serve it on http://{}/ with this worker, or run `jobq web`.",
                jobs::configuration::MIN_TOKEN_LEN,
                options.bind
            );
            tracing::info!("dashboard skipped: no admin token");
            return Ok(None);
        }
        let dashboard = web::Dashboard::bind(queue.clone(), &options)
            .await?
            .with_transcript_links(web::transcripts::TranscriptLinks::from_settings(settings));
        announce(settings, &options, dashboard.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(dashboard.serve(async {
            let _ = stopped.await;
        }));
        Ok(Some(DashboardTask { stop, task }))
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(Ok(Err(error))) => tracing::warn!(%error, "dashboard stopped with an error"),
            Ok(_) => {}
            Err(_) => tracing::warn!("dashboard requests still running after 5s; stopping anyway"),
        }
    }
}

/// `jobq telegram`: the Telegram bot until SIGTERM or SIGINT. A missing or malformed token
/// stops it before anything connects, naming the variable (never showing the value).
pub async fn telegram(config: Option<&Path>, args: &TelegramArgs) -> anyhow::Result<()> {
    let token = match producer::telegram::BotToken::from_env() {
        Err(producer::telegram::TokenError::Missing) if args.stay.stay_up => {
            return idle_without_token(config, "telegram", producer::telegram::TOKEN_ENV).await;
        }
        token => token?,
    };
    let mode = telegram_mode(args)?;
    let settings = settings_with_logs(config, &[])?;
    let queue = open(&settings).await?;
    producer::telegram::run(Arc::new(settings), queue, token, mode, shutdown_signal()).await?;
    Ok(())
}

fn telegram_mode(args: &TelegramArgs) -> anyhow::Result<producer::telegram::Mode> {
    match &args.webhook {
        None => Ok(producer::telegram::Mode::Polling),
        Some(url) => {
            producer::telegram::Mode::webhook(url, &args.webhook_bind).map_err(anyhow::Error::msg)
        }
    }
}

/// The Telegram bot beside the worker of `jobq up`, stopped with it.
struct TelegramTask {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl TelegramTask {
    /// Started (long polling) when `JOBQ_TELEGRAM_TOKEN` is set; otherwise says why not. A
    /// malformed token stops start-up.
    fn start_for_up(settings: &Settings, queue: &Queue) -> anyhow::Result<Option<Self>> {
        let token = match producer::telegram::BotToken::from_env() {
            Ok(token) => token,
            Err(producer::telegram::TokenError::Missing) => {
                note!(
                    "telegram bot not started: {} is not set (or run `jobq telegram`).",
                    producer::telegram::TOKEN_ENV
                );
                tracing::info!("telegram bot skipped: no token");
                return Ok(None);
            }
            Err(error) => return Err(error.into()),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let settings = Arc::new(settings.clone());
        let queue = queue.clone();
        let task = tokio::spawn(async move {
            let mode = producer::telegram::Mode::Polling;
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(error) =
                producer::telegram::run(settings, queue, token, mode, shutdown).await
            {
                tracing::error!(%error, "the telegram bot stopped");
            }
        });
        Ok(Some(TelegramTask { stop, task }))
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .is_err()
        {
            tracing::warn!("telegram bot still busy after 5s; stopping anyway");
        }
    }
}

/// `jobq discord`: the Discord bot until SIGTERM or SIGINT. A missing or malformed token stops
/// it before anything connects, naming the variable (never showing the value).
pub async fn discord(config: Option<&Path>, stay: StayUp) -> anyhow::Result<()> {
    let token = match producer::discord::token_from_env() {
        Err(producer::discord::TokenError::Missing) if stay.stay_up => {
            return idle_without_token(config, "discord", producer::discord::TOKEN_ENV).await;
        }
        token => token?,
    };
    let settings = settings_with_logs(config, &[])?;
    let queue = open(&settings).await?;
    producer::discord::run(&settings, &queue, token, shutdown_signal()).await?;
    Ok(())
}

/// The Discord bot beside the worker of `jobq up`, stopped with it.
struct DiscordTask {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl DiscordTask {
    /// Started when `JOBQ_DISCORD_TOKEN` is set; otherwise says why not. A malformed token
    /// stops start-up.
    fn start_for_up(settings: &Settings, queue: &Queue) -> anyhow::Result<Option<Self>> {
        let token = match producer::discord::token_from_env() {
            Ok(token) => token,
            Err(producer::discord::TokenError::Missing) => {
                note!(
                    "discord bot not started: {} is not set (or run `jobq discord`).",
                    producer::discord::TOKEN_ENV
                );
                tracing::info!("discord bot skipped: no token");
                return Ok(None);
            }
            Err(error) => return Err(error.into()),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let settings = settings.clone();
        let queue = queue.clone();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(error) = producer::discord::run(&settings, &queue, token, shutdown).await {
                tracing::error!(%error, "the discord bot stopped");
            }
        });
        Ok(Some(DiscordTask { stop, task }))
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .is_err()
        {
            tracing::warn!("discord bot still busy after 5s; stopping anyway");
        }
    }
}
