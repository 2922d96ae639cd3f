//! The product kinds' handlers, and what they share: the configured panels ([`Panels`]) and
//! the settings and secret key a worker loads at start ([`Product`]).

pub mod alerts;
pub mod expire_subscription;
pub mod provision_client;
pub mod send_dm;
pub mod sync_usage;
pub mod upload_transcript;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use jobs::configuration::Settings;
use jobs::db::DbError;
use jobs::kinds::Platform;
use jobs::secret_key::SecretKey;
use jobs::subscriptions::SubscriptionError;

use crate::Registry;
use crate::handler::{JobContext, JobError};
use crate::panel::limited::PanelLimits;
use crate::panel::{Panel, PanelError, health};
use jobs::limits::{LeaseOf, Limits};

pub use provision_client::ProvisionClientHandler;

/// The configured panels by name, one client (and connection pool) each, built once per
/// worker process.
#[derive(Clone, Default)]
pub struct Panels {
    by_name: BTreeMap<String, Arc<dyn Panel>>,
}

impl fmt::Debug for Panels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

/// Why the panels of the settings could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PanelsError {
    #[error(transparent)]
    Credentials(#[from] jobs::configuration::ConfigError),
    #[error("panel {name}: {source}")]
    Client { name: String, source: PanelError },
}

impl Panels {
    pub fn new() -> Self {
        Self::default()
    }

    /// A client per `[[panels]]` entry, with the credentials its variables hold, each behind
    /// its entry's `concurrency` and `requests_per_second` kept in `limits` (shared by every
    /// worker of that database).
    pub fn from_settings(settings: &Settings, limits: &Limits) -> Result<Panels, PanelsError> {
        let credentials = settings.panel_credentials()?;
        let mut panels = Panels::new();
        for entry in &settings.panels {
            let Some(auth) = credentials.get(&entry.name) else {
                continue;
            };
            let client = health::connect(entry, auth).map_err(|source| PanelsError::Client {
                name: entry.name.clone(),
                source,
            })?;
            let client = client.with_limits(PanelLimits::new(limits.clone(), entry));
            panels.insert(entry.name.clone(), Arc::new(client));
        }
        Ok(panels)
    }

    pub fn insert(&mut self, name: impl Into<String>, panel: Arc<dyn Panel>) -> &mut Self {
        self.by_name.insert(name.into(), panel);
        self
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Panel>> {
        self.by_name.get(name).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// What the product handlers need from start-up: the settings (plans, panels), the panel
/// clients, and the secret key (`None` when no panel is configured: then no job can reach a
/// panel, and each fails naming its missing panel before the key would be needed).
#[derive(Clone)]
pub struct Product {
    pub settings: Arc<Settings>,
    pub panels: Panels,
    pub key: Option<Arc<SecretKey>>,
    /// The chat clients (`send_dm`, alerts): one per platform whose token variable is set.
    pub chat: crate::chat::ChatClients,
    /// The transcript store and Discord reader (`upload_transcript`); `None` only in tests.
    pub transcripts: Option<Arc<crate::transcripts::Transcripts>>,
}

/// The services the handlers call, as `jobq_external_calls_total` names them.
pub const SERVICES: [&str; 3] = [
    crate::panel::SERVICE,
    Platform::Telegram.as_str(),
    Platform::Discord.as_str(),
];

/// Registers the handlers of the five product kinds, and starts the counts of the calls they
/// make at zero.
pub fn register(registry: &mut Registry, product: Product) {
    SERVICES
        .into_iter()
        .for_each(jobs::metrics::expect_external_calls);
    registry.register(upload_transcript::UploadTranscriptHandler::new(
        product.transcripts.clone(),
    ));
    registry.register(expire_subscription::ExpireSubscriptionHandler::new(
        product.clone(),
    ));
    registry.register(sync_usage::SyncUsageHandler::new(product.clone()));
    registry.register(send_dm::SendDmHandler::new(
        product.chat.clone(),
        &product.settings.telegram,
    ));
    registry.register(ProvisionClientHandler::new(product));
}

/// A panel's error as a job outcome: a 429 or our own limits with no room snooze (no attempt
/// spent, no sooner than the Retry-After); transport, timeouts and 5xx retry; the rest are
/// permanent, with the panel's message.
pub fn panel_job_error(panel: &str, error: &PanelError) -> JobError {
    let reason = format!("panel {panel}: {error}");
    if error.is_wait() {
        return JobError::Snooze {
            after: error.retry_after().unwrap_or(WAIT_WITHOUT_RETRY_AFTER),
            reason,
        };
    }
    if !error.is_retryable() {
        return JobError::Permanent(reason);
    }
    match error.retry_after() {
        Some(after) => JobError::RetryAfter { after, reason },
        None => JobError::Retry(reason),
    }
}

/// How long a 429 that gave no Retry-After is waited.
const WAIT_WITHOUT_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// A subscriptions-repository error as a job outcome: bad or unreadable data is permanent,
/// the rest (the database unreachable, a conflict) retries.
pub(crate) fn db_error(error: SubscriptionError) -> JobError {
    match error {
        SubscriptionError::Invalid(_) | SubscriptionError::Db(DbError::Corrupt { .. }) => {
            JobError::permanent(format!("subscription: {error}"))
        }
        other => JobError::retry(format!("subscription: {other}")),
    }
}

/// A queue error as a job outcome: refused data is permanent, the rest retries.
pub(crate) fn queue_error(error: jobs::queue::QueueError) -> JobError {
    if error.is_bad_data() {
        JobError::permanent(error)
    } else {
        JobError::retry(error)
    }
}

/// Holds subscription `id` for the job attempt `ctx` against the other jobs that change it (a
/// renewal and an expiry, two renewals), across all workers: each reads the row, changes the
/// panel, then writes the row, and two interleaved would leave the panel and the row
/// disagreeing. The lock belongs to the attempt's lease: held until released, or until the
/// attempt no longer holds its lease (its worker died and the lease ran out, or it was
/// rescued), at most past the jobs' timeout. Busy: the job snoozes (waiting spends no
/// attempt).
pub(crate) async fn lock_subscription(
    ctx: &JobContext,
    id: jobs::kinds::SubscriptionId,
) -> Result<jobs::limits::Permit, JobError> {
    const HOLD: std::time::Duration = std::time::Duration::from_secs(90);
    const WAIT: std::time::Duration = std::time::Duration::from_secs(10);
    let limits = Limits::new(&ctx.queue);
    let name = format!("subscription:{id}");
    let lease = LeaseOf {
        job_id: ctx.id,
        attempt: ctx.attempt,
    };
    match limits.acquire_for_within(&name, 1, HOLD, lease, WAIT).await {
        Ok(Some(permit)) => Ok(permit),
        Ok(None) => Err(JobError::Snooze {
            after: std::time::Duration::from_secs(5),
            reason: format!("subscription {id} is being changed by another job"),
        }),
        Err(error) => Err(JobError::retry(error)),
    }
}
