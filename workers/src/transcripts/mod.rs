//! Ticket transcripts: a Discord channel's history read page by page ([`discord`]), rendered
//! to self-contained, escaped HTML ([`render`]) and streamed into the object store
//! ([`store`]), whose link the owner gets by DM. Used by the `upload_transcript` handler.

pub mod discord;
pub mod render;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use jobs::configuration::Settings;
use jobs::secret_key::SecretKey;

pub use discord::DiscordHistory;
pub use store::{StoreSetupError, TranscriptStore};

/// What the handler needs, built once per worker process.
pub struct Transcripts {
    pub store: TranscriptStore,
    pub discord: DiscordHistory,
    pub link_ttl: Duration,
}

impl Transcripts {
    /// From `[transcripts]`, `[discord]` and `JOBQ_DISCORD_TOKEN`. Incomplete S3 settings are
    /// an error (never a silent fallback to local files); a missing Discord token is not (this
    /// worker may never see a transcript job; each such job fails naming the variable).
    pub fn from_settings(
        settings: &Settings,
        key: Option<Arc<SecretKey>>,
    ) -> Result<Self, StoreSetupError> {
        let store = TranscriptStore::from_settings(settings, key)?;
        let discord = DiscordHistory::new(
            settings.discord.api_url.clone(),
            DiscordHistory::token_from_env(),
        )
        .map_err(StoreSetupError::Discord)?;
        Ok(Transcripts {
            store,
            discord,
            link_ttl: settings.transcripts.link_ttl,
        })
    }
}
