//! `jobq panels check`: each configured panel's reachability, version, credentials, inbounds
//! and latency. Exits non-zero when any panel fails, naming it and why (never its secrets).

use crate::output::say;
use std::path::Path;

use anyhow::bail;
use jobs::configuration::PlanSettings;
use serde_json::json;
use workers::panel::health;

/// The plans naming inbounds the panel lacks, each with the missing ids: every plan may be
/// provisioned on every panel, so each must find its inbounds there.
fn lacking(plans: &[PlanSettings], found: &health::PanelHealth) -> Vec<String> {
    let present: Vec<u64> = found.inbounds.iter().map(|i| i.id).collect();
    plans
        .iter()
        .filter_map(|plan| {
            let missing = plan.missing_inbounds(&present);
            (!missing.is_empty()).then(|| {
                format!(
                    "plan {:?} names inbound(s) {missing:?} the panel lacks (it has {present:?})",
                    plan.name
                )
            })
        })
        .collect()
}

pub async fn check(config: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let settings = crate::startup::settings(config, &[])?;
    if settings.panels.is_empty() {
        bail!(
            "no panels configured: add [[panels]] entries to the config file (see config/example.toml)"
        );
    }
    let credentials = settings.panel_credentials()?;
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for panel in &settings.panels {
        let Some(auth) = credentials.get(&panel.name) else {
            failed.push(format!("{}: no credentials", panel.name));
            continue;
        };
        let result = match health::connect(panel, auth) {
            Ok(client) => health::check(&client).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(found) if !lacking(&settings.plans, &found).is_empty() => {
                let error = lacking(&settings.plans, &found).join("; ");
                if !json {
                    println!("{}: FAILED: {error}", panel.name);
                }
                rows.push(json!({"panel": panel.name, "ok": false, "url": panel.url.to_string(), "error": error, "health": found}));
                failed.push(format!("{}: {error}", panel.name));
            }
            Ok(found) => {
                if !json {
                    let inbounds: Vec<String> = found
                        .inbounds
                        .iter()
                        .map(|i| format!("{} {} {}:{}", i.id, i.kind, i.tag, i.port))
                        .collect();
                    say!(
                        "{}: ok, S-UI {}, {:.1} ms, {} inbound(s): {}",
                        panel.name,
                        found.version,
                        found.latency_ms,
                        inbounds.len(),
                        inbounds.join(", ")
                    );
                }
                rows.push(json!({"panel": panel.name, "ok": true, "url": panel.url.to_string(), "health": found}));
            }
            Err(error) => {
                if !json {
                    say!("{}: FAILED: {error}", panel.name);
                }
                rows.push(json!({"panel": panel.name, "ok": false, "url": panel.url.to_string(), "error": error.to_string()}));
                failed.push(format!("{}: {error}", panel.name));
            }
        }
    }
    if json {
        say!("{}", serde_json::to_string_pretty(&rows)?);
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} panel(s) failed the check: {}",
            failed.len(),
            settings.panels.len(),
            failed.join("; ")
        );
    }
    Ok(())
}
