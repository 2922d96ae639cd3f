//! Panels that sell VPN access: the [`Panel`] trait the handlers use, its error classification,
//! and the S-UI client ([`sui`]).
//!
//! Client names are secrets (the subscription link is `subURI` + name), and so are tokens,
//! passwords and links: none of them appears in `Debug` output, logs or errors (masked with
//! [`jobs::redact::mask`]).

pub mod credentials;
pub mod health;
pub mod limited;
pub mod sui;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use jobs::redact::mask;

pub use sui::{SuiAuth, SuiOptions, SuiPanel};

/// A client row on a panel, as much as the handlers need of it.
#[derive(Clone, PartialEq, Eq)]
pub struct PanelClient {
    pub id: u64,
    /// Secret: masked in `Debug`.
    pub name: String,
    pub enable: bool,
    /// Bytes; 0 = unlimited.
    pub volume: i64,
    /// Unix seconds; 0 = never.
    pub expiry: i64,
    /// Cumulative bytes.
    pub up: i64,
    pub down: i64,
    pub inbounds: Vec<u64>,
}

impl fmt::Debug for PanelClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PanelClient")
            .field("id", &self.id)
            .field("name", &mask(&self.name))
            .field("enable", &self.enable)
            .field("volume", &self.volume)
            .field("expiry", &self.expiry)
            .field("up", &self.up)
            .field("down", &self.down)
            .field("inbounds", &self.inbounds)
            .finish()
    }
}

/// A client to create.
#[derive(Clone, PartialEq, Eq)]
pub struct NewClient {
    /// Secret: masked in `Debug`.
    pub name: String,
    pub enable: bool,
    /// Bytes; 0 = unlimited.
    pub volume: i64,
    /// Unix seconds; 0 = never.
    pub expiry: i64,
    /// Inbound ids; the client gets credentials for each inbound's protocol.
    pub inbounds: Vec<u64>,
}

impl fmt::Debug for NewClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewClient")
            .field("name", &mask(&self.name))
            .field("enable", &self.enable)
            .field("volume", &self.volume)
            .field("expiry", &self.expiry)
            .field("inbounds", &self.inbounds)
            .finish()
    }
}

/// What an edit changes; everything else on the row is written back as just read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientChange {
    pub enable: Option<bool>,
    pub expiry: Option<i64>,
    pub volume: Option<i64>,
    pub inbounds: Option<Vec<u64>>,
    /// Start usage again (`up = down = 0`), as a renewal that resets usage does.
    pub reset_usage: bool,
}

/// An inbound of a panel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PanelInbound {
    pub id: u64,
    /// The protocol (`vless`, `trojan`, ...).
    pub kind: String,
    pub tag: String,
    pub listen_port: u64,
}

/// The version a panel reports, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PanelVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// False for a pre-release (`1.2.0-beta.3`), which sorts before its release.
    pub release: bool,
}

impl PanelVersion {
    /// `"1.5.1"`, `"v1.4.0"`, `"1.2.0-beta.3"`; `None` when it does not start with numbers.
    pub fn parse(text: &str) -> Option<PanelVersion> {
        let text = text.trim().trim_start_matches('v');
        let (numbers, release) = match text.split_once('-') {
            Some((numbers, _)) => (numbers, false),
            None => (text, true),
        };
        let mut parts = numbers.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = match parts.next() {
            Some(p) => p.parse().ok()?,
            None => 0,
        };
        Some(PanelVersion {
            major,
            minor,
            patch,
            release,
        })
    }

    pub fn at_least(self, major: u32, minor: u32) -> bool {
        self >= PanelVersion {
            major,
            minor,
            patch: 0,
            release: true,
        }
    }
}

impl fmt::Display for PanelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.release {
            write!(f, "-pre")?;
        }
        Ok(())
    }
}

/// A subscription link. Secret: masked in `Debug` and `Display`; [`SubscriptionLink::expose`]
/// gives the link itself, for the one message that hands it to its owner.
#[derive(Clone, PartialEq, Eq)]
pub struct SubscriptionLink(String);

impl SubscriptionLink {
    pub fn new(link: String) -> Self {
        SubscriptionLink(link)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SubscriptionLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubscriptionLink({})", jobs::redact::mask_urls(&self.0))
    }
}

impl fmt::Display for SubscriptionLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", jobs::redact::mask_urls(&self.0))
    }
}

/// Why a panel call failed, classified for the job outcome: see [`PanelError::is_retryable`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PanelError {
    /// Connecting, sending or reading failed (including a connection dropped mid-answer: the
    /// change may have been applied, so look before doing it again). Retryable.
    #[error("panel unreachable: {0}")]
    Transport(String),
    /// No complete answer within the call's timeout. Retryable.
    #[error("panel did not answer within {0:?}")]
    Timeout(Duration),
    /// HTTP 5xx (usually the proxy in front of the panel). Retryable.
    #[error("panel answered HTTP {0}")]
    Server(u16),
    /// HTTP 429: retry no sooner than `retry_after` when given. Retryable.
    #[error("panel rate-limited the call (HTTP 429)")]
    RateLimited { retry_after: Option<Duration> },
    /// The answer was not the panel's envelope (an HTML page from a proxy, an unexpected HTTP
    /// status). Retryable: it is usually something in front of the panel.
    #[error("unexpected answer from the panel: {0}")]
    UnexpectedResponse(String),
    /// Wrong or expired token, wrong login. Permanent: the panel's message is kept.
    #[error("panel refused the credentials: {0}")]
    Auth(String),
    /// The panel refused the call (`success: false`). Permanent: the panel's message is kept.
    #[error("panel rejected the request: {0}")]
    Rejected(String),
    /// The panel runs a version this client does not speak. Permanent.
    #[error("unsupported panel version: {0}")]
    UnsupportedVersion(String),
    /// The row asked for is not on the panel. Permanent for that call.
    #[error("no client with id {0} on the panel")]
    NotFound(u64),
    /// Our own limit on the panel (`concurrency`, `requests_per_second`, shared by every
    /// worker) had no room within the wait allowed: nothing was sent. Retryable, after the
    /// wait.
    #[error(
        "panel busy: its configured {limit} across all workers has no room for {retry_after:?}"
    )]
    Throttled {
        limit: &'static str,
        retry_after: Duration,
    },
}

/// Panel calls in `jobq_external_calls_total{service,outcome}`.
pub const SERVICE: &str = "panel";

/// Counts one HTTP request to a panel (a request our own limits held back was never sent, and
/// is not counted).
pub(crate) fn record_call(outcome: Result<(), &PanelError>) {
    let outcome = match outcome {
        Ok(()) => "ok",
        Err(PanelError::Transport(_)) => "unreachable",
        Err(PanelError::Timeout(_)) => "timeout",
        Err(PanelError::RateLimited { .. }) => "rate_limited",
        Err(PanelError::Server(_) | PanelError::UnexpectedResponse(_)) => "error",
        Err(
            PanelError::Auth(_)
            | PanelError::Rejected(_)
            | PanelError::UnsupportedVersion(_)
            | PanelError::NotFound(_),
        ) => "refused",
        Err(PanelError::Throttled { .. }) => return,
    };
    jobs::metrics::record_external_call(SERVICE, outcome);
}

impl PanelError {
    /// Transport errors, timeouts, 5xx, 429 and answers that are not the panel's own.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PanelError::Transport(_)
                | PanelError::Timeout(_)
                | PanelError::Server(_)
                | PanelError::RateLimited { .. }
                | PanelError::UnexpectedResponse(_)
                | PanelError::Throttled { .. }
        )
    }

    /// "Not now" rather than "went wrong": the panel's 429 or our own limits with no room.
    /// Nothing was applied; the call is to be made again later, without counting a failure.
    pub fn is_wait(&self) -> bool {
        matches!(
            self,
            PanelError::RateLimited { .. } | PanelError::Throttled { .. }
        )
    }

    /// The 429's Retry-After.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PanelError::RateLimited { retry_after } => *retry_after,
            PanelError::Throttled { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// What the handlers need of a panel. Every call has a timeout; errors are classified.
#[async_trait]
pub trait Panel: Send + Sync {
    /// The panel's version, checked supported (detected once, then remembered).
    async fn version(&self) -> Result<PanelVersion, PanelError>;
    /// Every client (summary rows, usage included), in one call.
    async fn list_clients(&self) -> Result<Vec<PanelClient>, PanelError>;
    /// Every row named `name`: more than one means duplicates the caller must deal with.
    async fn find_by_name(&self, name: &str) -> Result<Vec<PanelClient>, PanelError> {
        let all = self.list_clients().await?;
        Ok(all.into_iter().filter(|c| c.name == name).collect())
    }
    /// Creates one row, not idempotent (the panel accepts duplicate names: list first).
    /// Returns every row with that name after the save.
    async fn create_client(&self, client: &NewClient) -> Result<Vec<PanelClient>, PanelError>;
    /// The row with this id, read in full; `None` when there is none.
    async fn get_client(&self, id: u64) -> Result<Option<PanelClient>, PanelError>;
    /// Reads the whole row and writes it back with `change` applied, at once; returns the row
    /// as written.
    async fn edit_client(&self, id: u64, change: &ClientChange) -> Result<PanelClient, PanelError>;
    /// Deletes the row with this id.
    async fn delete_client(&self, id: u64) -> Result<(), PanelError>;
    /// The panel's inbounds.
    async fn inbounds(&self) -> Result<Vec<PanelInbound>, PanelError>;
    /// The subscription link of the client named `name`.
    async fn subscription_link(&self, name: &str) -> Result<SubscriptionLink, PanelError>;
}
