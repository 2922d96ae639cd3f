//! `jobq panels check`: for each configured panel, whether it answers, its version, whether our
//! credentials work, its inbounds, and how long that took.

use std::time::{Duration, Instant};

use jobs::configuration::{PanelAuth, PanelKind, PanelSettings};
use secrecy::ExposeSecret;
use serde::Serialize;

use super::{Panel, PanelError, SuiAuth, SuiOptions, SuiPanel};

/// A panel client for a configured panel and its credentials.
pub fn connect(settings: &PanelSettings, auth: &PanelAuth) -> Result<SuiPanel, PanelError> {
    match settings.kind {
        PanelKind::SUi => {}
    }
    let auth = match auth {
        PanelAuth::Token(token) => SuiAuth::Token(token.expose_secret().to_string()),
        PanelAuth::Login { user, password } => SuiAuth::Login {
            user: user.expose_secret().to_string(),
            pass: password.expose_secret().to_string(),
        },
    };
    let mut options = SuiOptions::new(settings.url.as_str(), auth);
    options.timeout = settings.timeout;
    options.connect_timeout = settings.timeout.min(Duration::from_secs(5));
    SuiPanel::new(options)
}

/// What one check found.
#[derive(Debug, Clone, Serialize)]
pub struct PanelHealth {
    pub version: String,
    pub inbounds: Vec<InboundSummary>,
    /// From the first call to the last answer: version, then inbounds (which needs our
    /// credentials).
    pub latency_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct InboundSummary {
    pub id: u64,
    pub kind: String,
    pub tag: String,
    pub port: u64,
}

pub async fn check(panel: &dyn Panel) -> Result<PanelHealth, PanelError> {
    let started = Instant::now();
    let version = panel.version().await?;
    let inbounds = panel.inbounds().await?;
    Ok(PanelHealth {
        version: version.to_string(),
        inbounds: inbounds
            .into_iter()
            .map(|i| InboundSummary {
                id: i.id,
                kind: i.kind,
                tag: i.tag,
                port: i.listen_port,
            })
            .collect(),
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}
