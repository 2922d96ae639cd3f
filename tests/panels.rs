//! `jobq panels check` against a real HTTP fake S-UI panel: version, credentials, inbounds;
//! failures name the panel and never show its token.

mod support;

use fakes::sui::{FakeSui, SuiOptions};
use support::{Backend, TestDb, json, stderr, stdout};

const TOKEN: &str = "tokenOfThePanelMain0123456789ab";

async fn fake(version: &str) -> FakeSui {
    FakeSui::start(SuiOptions {
        version: version.into(),
        token: Some(TOKEN.into()),
        ..SuiOptions::default()
    })
    .await
    .expect("start the fake panel")
}

async fn db_with_panel(panel: &FakeSui) -> TestDb {
    let extra = format!(
        "[[panels]]\nname = \"main\"\nkind = \"s-ui\"\nurl = \"{}\"\ntoken_env = \"JOBQ_PANEL_MAIN_TOKEN\"\n",
        panel.url()
    );
    TestDb::unmigrated(Backend::Sqlite, &extra).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reachable_panel_reports_its_version_and_inbounds() {
    let panel = fake("1.5.1").await;
    let db = db_with_panel(&panel).await;
    let out = db
        .command(&["--json", "panels", "check"])
        .env("JOBQ_PANEL_MAIN_TOKEN", TOKEN)
        .output()
        .expect("run jobq");
    let rows = json(&out);
    let main = &rows[0];
    assert_eq!(main["panel"], "main", "{rows}");
    assert_eq!(main["ok"], true, "{rows}");
    assert_eq!(main["health"]["version"], "1.5.1", "{rows}");
    let inbounds = main["health"]["inbounds"].as_array().expect("inbounds");
    assert_eq!(inbounds.len(), 2, "{rows}");
    assert_eq!(inbounds[0]["kind"], "vless", "{rows}");
    assert!(
        main["health"]["latency_ms"]
            .as_f64()
            .is_some_and(|ms| ms > 0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_fails_naming_the_panel_without_showing_the_token() {
    let panel = fake("1.5.1").await;
    let db = db_with_panel(&panel).await;
    let wrong = "notTheTokenOfThisPanel987654321";
    let out = db
        .command(&["panels", "check"])
        .env("JOBQ_PANEL_MAIN_TOKEN", wrong)
        .output()
        .expect("run jobq");
    assert!(
        !out.status.success(),
        "a wrong token passed: {}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(err.contains("main") && err.contains("credentials"), "{err}");
    assert!(
        !err.contains(wrong) && !stdout(&out).contains(wrong),
        "the token leaked: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_token_variable_and_an_unsupported_version_are_named() {
    let old = fake("1.1.3").await;
    let db = db_with_panel(&old).await;
    let out = db.command(&["panels", "check"]).output().expect("run jobq");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("JOBQ_PANEL_MAIN_TOKEN"),
        "{}",
        stderr(&out)
    );

    let out = db
        .command(&["panels", "check"])
        .env("JOBQ_PANEL_MAIN_TOKEN", TOKEN)
        .output()
        .expect("run jobq");
    assert!(!out.status.success(), "S-UI 1.1.3 passed the check");
    assert!(
        stderr(&out).contains("unsupported panel version"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_naming_an_inbound_the_panel_lacks_fails_naming_plan_panel_and_inbound() {
    let panel = fake("1.5.1").await;
    let extra = format!(
        "[[panels]]\nname = \"main\"\nkind = \"s-ui\"\nurl = \"{}\"\ntoken_env = \"JOBQ_PANEL_MAIN_TOKEN\"\n\
         [[plans]]\nname = \"fine\"\nvolume_gb = 1\ndays = 30\ninbounds = [1, 2]\n\
         [[plans]]\nname = \"odd\"\nvolume_gb = 1\ndays = 30\ninbounds = [1, 999]\n",
        panel.url()
    );
    let db = TestDb::unmigrated(Backend::Sqlite, &extra).await;
    let out = db
        .command(&["panels", "check"])
        .env("JOBQ_PANEL_MAIN_TOKEN", TOKEN)
        .output()
        .expect("run jobq");
    assert!(!out.status.success(), "passed: {}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("main") && err.contains("plan \"odd\"") && err.contains("[999]"),
        "names the panel, the plan and the inbound: {err}"
    );
    assert!(
        !err.contains("\"fine\""),
        "the plan that fits is not blamed: {err}"
    );
    let out = db
        .command(&["--json", "panels", "check"])
        .env("JOBQ_PANEL_MAIN_TOKEN", TOKEN)
        .output()
        .expect("run jobq");
    assert!(!out.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON rows");
    assert_eq!(rows[0]["ok"], false, "{rows}");
    assert!(
        rows[0]["error"].as_str().is_some_and(|e| e.contains("999")),
        "{rows}"
    );
}
