//! Logs: human-readable or JSON lines on standard error (standard output is for results).
//! Each job runs in a `job` span carrying its id, kind, queue and attempt.

use std::io::IsTerminal;

use jobs::configuration::{LogFormat, LogSettings};
use tracing_subscriber::EnvFilter;

/// `log.filter` as the logger reads it; `Err` says why it does not parse.
pub fn filter(settings: &LogSettings) -> anyhow::Result<EnvFilter> {
    EnvFilter::try_new(&settings.filter).map_err(|e| {
        anyhow::anyhow!(
            "log.filter = {:?} is not a valid filter ({e}): use a level like \"info\" or directives like \"info,workers=debug\"",
            settings.filter
        )
    })
}

pub fn init(settings: &LogSettings) -> anyhow::Result<()> {
    let filter = filter(settings)?;
    // Colours only for a person at a terminal: not in log files, pipes or a process runner.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let installed = match settings.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
