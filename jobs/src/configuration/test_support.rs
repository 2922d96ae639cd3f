//! What the tests of every part share: loading from a file, variables and flags.

use std::io::Write as _;

use super::{ConfigError, Settings};

pub(super) const NO_ENV: [(&str, &str); 0] = [];

pub(super) fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    file.write_all(text.as_bytes()).expect("write");
    file
}

pub(super) fn load(
    file: Option<&tempfile::NamedTempFile>,
    env: &[(&str, &str)],
    flags: &[(&str, &str)],
) -> Result<Settings, ConfigError> {
    let flags: Vec<(&str, String)> = flags.iter().map(|(k, v)| (*k, v.to_string())).collect();
    Settings::load_with_env(file.map(|f| f.path()), env.iter().copied(), &flags)
}

pub(super) fn load_err(
    file: Option<&tempfile::NamedTempFile>,
    env: &[(&str, &str)],
    flags: &[(&str, &str)],
) -> String {
    match load(file, env, flags) {
        Ok(settings) => panic!("expected an error, got {settings:#?}"),
        Err(e) => e.to_string(),
    }
}

pub(super) const PANEL_AND_PLAN: &str = r#"
    [[panels]]
    name = "main"
    kind = "s-ui"
    url = "http://127.0.0.1:2095/app"
    token_env = "PANEL_MAIN_TOKEN"

    [[panels]]
    name = "backup"
    kind = "s-ui"
    url = "https://backup.example.com:8443/secret-path/"
    login_user_env = "BACKUP_USER"
    login_password_env = "BACKUP_PASS"
    concurrency = 2
    requests_per_second = 0.5
    timeout = "30s"

    [[plans]]
    name = "basic"
    volume_gb = 10
    days = 30
    inbounds = [1]

    [[plans]]
    name = "unlimited"
    volume_gb = 0
    days = 365
    inbounds = [1, 3]
    reset_usage_on_renew = false
"#;
