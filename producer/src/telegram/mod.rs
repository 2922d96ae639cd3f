//! The Telegram bot (`jobq telegram`): customers' `/start`, `/plans`, `/status`, `/link`,
//! `/buy`; admins' `/provision`, `/renew`, `/expire`, `/failed`, `/retry`, `/discard`,
//! `/stats`, `/admins`. Thin: it parses, checks who asks, writes its own rows, enqueues typed
//! jobs with keys derived from the update, and answers at once; panels and other slow
//! services are the workers' business.
//!
//! - [`command`]: text → [`command::Command`], with the usage replies;
//! - [`logic`], [`buy`], [`admin`]: the decisions, as [`logic::Action`]s, without teloxide;
//! - [`glue`]: teloxide: long polling or a webhook in, actions out, errors masked;
//! - [`notices`]: the admins' order notices, sent until they arrive;
//! - [`token`]: `JOBQ_TELEGRAM_TOKEN`, checked before connecting.

mod admin;
pub mod buy;
pub mod command;
pub mod glue;
pub mod logic;
pub mod notices;
pub mod token;

use std::future::Future;
use std::sync::Arc;

use jobs::Queue;
use jobs::configuration::Settings;

pub use glue::Mode;
pub use logic::{Action, Button, Incoming, Press, Shop};
pub use token::{BotToken, TOKEN_ENV, TokenError};

/// Why the bot stopped (every text is free of the token).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("cannot reach the Telegram Bot API at {api_url}: {reason}")]
    Connect { api_url: String, reason: String },
    #[error("{0}")]
    Setup(String),
}

/// Runs the bot until `shutdown` completes. The token is checked for shape by the caller
/// ([`BotToken::from_env`]) and with `getMe` here, before any update is read.
pub async fn run(
    settings: Arc<Settings>,
    queue: Queue,
    token: BotToken,
    mode: Mode,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let api_url = settings.telegram.api_url.as_url().clone();
    let conn = glue::Connection::new(token, &api_url).map_err(RunError::Setup)?;
    let username = conn.check().await.map_err(|reason| RunError::Connect {
        api_url: api_url.to_string(),
        reason,
    })?;
    let shop = Shop::new(settings, queue).map_err(|e| RunError::Setup(e.to_string()))?;
    tracing::info!(bot = %username, mode = ?mode_name(&mode), "telegram bot started");
    // Beside the updates, never in their way; stopped with them (a notice being sent is
    // retried after its lease).
    let notices = tokio::spawn(notices::run(conn.clone(), shop.clone()));
    let _stop_notices = AbortOnDrop(notices);
    match mode {
        Mode::Polling => glue::poll(&conn, &shop, shutdown).await,
        Mode::Webhook { url, bind } => glue::webhook(&conn, &shop, url, bind, shutdown)
            .await
            .map_err(RunError::Setup)?,
    }
    tracing::info!("telegram bot stopped");
    Ok(())
}

/// Aborts a task when dropped (however `run` returns).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn mode_name(mode: &Mode) -> &'static str {
    match mode {
        Mode::Polling => "long polling",
        Mode::Webhook { .. } => "webhook",
    }
}
