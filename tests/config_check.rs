//! `jobq config check` looks at what the configuration needs from the environment (panel
//! credentials, the secret key, bot tokens) without contacting anything or creating anything,
//! fails naming what is missing or malformed, and never prints a secret.

mod support;

use support::*;

const PANEL: &str = r#"
[[panels]]
name = "main"
kind = "s-ui"
url = "http://127.0.0.1:2095/app/"
token_env = "JOBQ_PANEL_MAIN_TOKEN"
"#;

const PANEL_TOKEN: &str = "panelTokenNEVERprinted0123456789";
const BOT_TOKEN: &str = "123456789:BOTtokenNEVERprintedabcdef0123456";

fn check(db: &TestDb, env: &[(&str, &str)]) -> std::process::Output {
    db.command(&["--json", "config", "check"])
        .env_remove("JOBQ_PANEL_MAIN_TOKEN")
        .env_remove("JOBQ_SECRET_KEY")
        .env_remove("JOBQ_TELEGRAM_TOKEN")
        .env_remove("JOBQ_DISCORD_TOKEN")
        .envs(env.iter().copied())
        .output()
        .expect("run jobq")
}

fn status_of<'a>(report: &'a serde_json::Value, what: &str) -> &'a str {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["what"].as_str().is_some_and(|w| w.starts_with(what)))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("absent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_malformed_secrets_are_named_and_never_printed() {
    let db = TestDb::with_config(Backend::Sqlite, PANEL).await;

    let out = check(&db, &[]);
    assert!(
        !out.status.success(),
        "a panel without its token is an error"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(report["ok"], false);
    assert_eq!(status_of(&report, "panel credentials"), "error");
    let text = stdout(&out);
    assert!(
        text.contains("JOBQ_PANEL_MAIN_TOKEN") && text.contains("main"),
        "{text}"
    );

    let out = check(
        &db,
        &[
            ("JOBQ_PANEL_MAIN_TOKEN", PANEL_TOKEN),
            ("JOBQ_SECRET_KEY", "short"),
            ("JOBQ_TELEGRAM_TOKEN", BOT_TOKEN),
        ],
    );
    assert!(!out.status.success(), "a malformed secret key is an error");
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(status_of(&report, "panel credentials"), "ok");
    assert_eq!(status_of(&report, "secret key"), "error");
    assert_eq!(
        status_of(&report, "bot tokens"),
        "warn",
        "Discord's is missing"
    );
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        !all.contains(PANEL_TOKEN) && !all.contains("BOTtokenNEVER"),
        "{all}"
    );

    let out = check(
        &db,
        &[
            ("JOBQ_PANEL_MAIN_TOKEN", PANEL_TOKEN),
            ("JOBQ_TELEGRAM_TOKEN", "nonsense"),
        ],
    );
    assert!(!out.status.success(), "a malformed bot token is an error");
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(status_of(&report, "bot tokens"), "error");
    assert!(
        stdout(&out).contains("JOBQ_TELEGRAM_TOKEN"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        status_of(&report, "secret key"),
        "ok",
        "generated on first use"
    );
    let key_file = db.dir.path().join(jobs::secret_key::KEY_FILE_NAME);
    assert!(!key_file.exists(), "the check creates nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_environment_passes() {
    let db = TestDb::with_config(Backend::Postgres, PANEL).await;
    let secret = "8b80c83618b2e287707c6d8789cc006804f0e9e6cf14a0eb0ee49eded38cf073";
    let out = check(
        &db,
        &[
            ("JOBQ_PANEL_MAIN_TOKEN", PANEL_TOKEN),
            ("JOBQ_SECRET_KEY", secret),
            ("JOBQ_TELEGRAM_TOKEN", BOT_TOKEN),
        ],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(report["ok"], true);
    assert_eq!(status_of(&report, "secret key"), "ok");
    assert!(!stdout(&out).contains(secret));
    // Without the key on PostgreSQL, panels cannot be served: an error saying what to set.
    let out = check(&db, &[("JOBQ_PANEL_MAIN_TOKEN", PANEL_TOKEN)]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("set JOBQ_SECRET_KEY"),
        "{}",
        stdout(&out)
    );
}
