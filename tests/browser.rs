//! The dashboard in a real headless Chromium (driven through chromedriver), against `jobq web`
//! and a real worker, on SQLite and PostgreSQL: log in, find a failed job by filter, read its
//! attempts, retry it and see it complete, bulk-discard by filter, pause and resume a queue, and
//! a `<script>` payload that stays text; then tick jobs and act on just those, failures grouped
//! by error, a failed payload edited and retried, the periodic page, the audit log's filters
//! and the favicon. Screenshots go to target/screenshots/, and to docs/
//! when JOBQ_UPDATE_SCREENSHOTS=1.
//!
//! Needs Debian's `chromium` and `chromium-driver` (/usr/bin/chromium, /usr/bin/chromedriver);
//! scripts/test installs them when missing.

mod support;
mod web_support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use jobs::JobState;
use serde_json::json;
use support::*;
use web_support::*;

on_both_backends!(
    the_dashboard_in_a_browser,
    repairs_of_a_selection_in_a_browser
);

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

struct Chromedriver {
    child: Child,
    url: String,
    profile: tempfile::TempDir,
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_chromedriver() -> Chromedriver {
    for path in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            std::path::Path::new(path).exists(),
            "{path} is missing: install Debian's chromium and chromium-driver \
             (scripts/test does: apt-get install chromium chromium-driver)"
        );
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let driver = Chromedriver {
        child,
        url: url.clone(),
        profile: tempfile::tempdir().expect("profile dir"),
    };
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(20), "chromedriver to answer", || {
        let request = http.get(format!("{url}/status")).send();
        async move { request.await.ok().filter(|r| r.status().is_success()) }
    })
    .await;
    driver
}

async fn browser(driver: &Chromedriver) -> Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1440,1000",
        &format!("--user-data-dir={}", driver.profile.path().display()),
    ];
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_string(),
        json!({ "binary": CHROMIUM, "args": args }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// Waits until the page's text contains `text` (the page may still be loading or refreshing).
async fn wait_for_text(client: &Client, text: &str) -> String {
    let seen = std::sync::Mutex::new(String::new());
    eventually_showing(
        Duration::from_secs(20),
        &format!("{text:?} on the page"),
        || {
            format!(
                "the page says:\n{}",
                seen.lock().map(|s| s.clone()).unwrap_or_default()
            )
        },
        || async {
            let body = client.find(Locator::Css("body")).await.ok()?;
            let body = body.text().await.ok()?;
            if body.contains(text) {
                return Some(body);
            }
            if let Ok(mut seen) = seen.lock() {
                *seen = body;
            }
            None
        },
    )
    .await
}

/// Chooses `value` in the page's `<select name=NAME>`.
async fn select(client: &Client, name: &str, value: &str) {
    client
        .find(Locator::Css(&format!("select[name={name}]")))
        .await
        .unwrap_or_else(|e| panic!("select {name}: {e}"))
        .select_by_value(value)
        .await
        .unwrap_or_else(|e| panic!("choose {value} in {name}: {e}"));
}

async fn screenshot(client: &Client, backend: Backend, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    std::fs::write(
        dir.join(format!("{backend:?}-{name}.png").to_lowercase()),
        &png,
    )
    .expect("write screenshot");
    if backend == Backend::Sqlite && std::env::var("JOBQ_UPDATE_SCREENSHOTS").as_deref() == Ok("1")
    {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::write(docs.join(format!("{name}.png")), &png).expect("write docs screenshot");
    }
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn the_dashboard_in_a_browser(backend: Backend) {
    let db = TestDb::with_config(backend, ADMINS_CONFIG).await;
    let _worker = db.spawn_worker(&[]);
    // Real work for the chart, a job that fails once for good, three that always fail.
    let done: Vec<i64> = (0..6)
        .map(|_| db.enqueue("test_effect", "{}", &[]))
        .collect();
    let flaky = db.enqueue(
        "test_fail",
        r#"{"mode":"permanent","times":1}"#,
        &["--key", "order-17"],
    );
    let broken: Vec<i64> = (0..3)
        .map(|_| db.enqueue("test_fail", r#"{"mode":"permanent"}"#, &[]))
        .collect();
    let evil = db.enqueue("send_dm",
        &json!({"user": {"platform": "telegram", "id": 42},
                "text": "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"})
        .to_string(),
        &[],
    );
    for id in &done {
        db.wait_for_state(*id, JobState::Completed).await;
    }
    db.wait_for_state(flaky, JobState::Failed).await;
    for id in &broken {
        db.wait_for_state(*id, JobState::Failed).await;
    }
    // The completer writes outcome counts every few seconds: wait for them, for the chart.
    let stats = db.queue().await;
    eventually(
        Duration::from_secs(30),
        "outcome counts for the chart",
        || {
            let stats = stats.clone();
            async move {
                let since = chrono::Utc::now() - chrono::Duration::hours(1);
                let rows = stats.driver().outcome_series(since).await.ok()?;
                let completed: i64 = rows
                    .iter()
                    .filter(|r| r.outcome == "completed")
                    .map(|r| r.count)
                    .sum();
                let failed: i64 = rows
                    .iter()
                    .filter(|r| r.outcome == "failed")
                    .map(|r| r.count)
                    .sum();
                (completed >= 6 && failed >= 4).then_some(())
            }
        },
    )
    .await;
    let server = WebServer::start(&db).await;
    let driver = start_chromedriver().await;
    let client = browser(&driver).await;

    // Log in: the overview sends us to the form, the form back to the overview.
    log_in(&client, &server).await;
    let overview = wait_for_text(&client, "Signed in as alice").await;
    assert!(overview.contains("Queues"), "{overview}");
    assert!(overview.to_lowercase().contains("live workers"));
    assert!(
        overview.contains("6 done") || overview.contains("6\ndone"),
        "the last hour's completions: {overview}"
    );
    let bars = client
        .execute(
            "return document.querySelectorAll('svg.spark rect').length",
            vec![],
        )
        .await
        .expect("js");
    assert!(bars.as_u64().unwrap_or(0) > 0, "the chart has bars");
    let cookies = client.get_all_cookies().await.expect("cookies");
    let session = cookies
        .iter()
        .find(|c| c.name() == "jobq_session")
        .expect("session cookie");
    assert_eq!(session.http_only(), Some(true), "the cookie is HttpOnly");
    assert_eq!(
        client
            .execute("return document.cookie", vec![])
            .await
            .expect("js"),
        json!(""),
        "scripts cannot read the session cookie"
    );
    screenshot(&client, backend, "dashboard-overview").await;

    // Find the failed job with the filter form, open it, read its attempt.
    click(&client, "header nav a[href='/jobs']").await;
    wait_for_text(&client, "Find a job").await;
    select(&client, "state", "failed").await;
    select(&client, "queue", "test").await;
    click(&client, "form.filters button.primary").await;
    let list = wait_for_text(&client, "4 jobs matching").await;
    assert!(list.contains(&format!("#{flaky}")), "{list}");
    click(&client, &format!("a[href='/jobs/{flaky}']")).await;
    let page = wait_for_text(&client, "Attempt 1").await;
    assert!(page.contains("permanent"), "the error is shown: {page}");
    assert!(page.contains("order-17"), "the key is shown");
    assert!(page.contains("Failed after 1 attempt"), "{page}");
    screenshot(&client, backend, "dashboard-failed-job").await;

    // Retry it: the worker runs it again and it completes.
    click(
        &client,
        &format!("form[action='/jobs/{flaky}/retry'] button"),
    )
    .await;
    wait_for_text(&client, "Retried 1 job.").await;
    db.wait_for_state(flaky, JobState::Completed).await;
    client.refresh().await.expect("reload");
    let page = wait_for_text(&client, "Completed on attempt 2").await;
    assert!(page.contains("completed"), "{page}");

    // Bulk-discard the three that always fail: the count, the confirmation, the result.
    client
        .goto(&server.url("/jobs?state=failed&queue=test"))
        .await
        .expect("open list");
    wait_for_text(&client, "3 jobs matching").await;
    click(&client, "a.button.danger").await;
    wait_for_text(&client, "Discard 3 jobs?").await;
    click(&client, "form.confirm button[type=submit]").await;
    wait_for_text(&client, "Discarded 3 jobs.").await;
    let queue = db.queue().await;
    for id in &broken {
        assert_eq!(db.job(&queue, *id).await.state, JobState::Discarded);
    }

    // Pause the queue from the overview, then resume it.
    client.goto(&server.url("/")).await.expect("overview");
    wait_for_text(&client, "Queues").await;
    click(&client, "form[action='/queues/test/pause'] button").await;
    wait_for_text(&client, "Queue paused").await;
    assert!(is_paused(&queue, "test").await);
    click(&client, "form[action='/queues/test/resume'] button").await;
    wait_for_text(&client, "Queue resumed").await;
    assert!(!is_paused(&queue, "test").await);

    // The audit log names alice for each action.
    client.goto(&server.url("/audit")).await.expect("audit");
    let audit = wait_for_text(&client, "Audit log").await;
    for action in ["retry", "discard", "pause", "resume"] {
        assert!(audit.contains(action), "{action} missing: {audit}");
    }
    assert!(audit.contains("alice"));

    // The <script> payload is text: shown, not run.
    client
        .goto(&server.url(&format!("/jobs/{evil}")))
        .await
        .expect("evil job");
    let page = wait_for_text(&client, "Payload").await;
    assert!(
        page.contains("<script>document.title='pwned'</script>"),
        "{page}"
    );
    let title = client.title().await.expect("title");
    assert_ne!(title, "pwned", "the payload's script ran");
    let injected = client
        .execute(
            "return document.querySelectorAll('main script, main img').length",
            vec![],
        )
        .await
        .expect("js");
    assert_eq!(injected, json!(0), "the payload became markup");

    client.close().await.expect("close the browser");
}

/// Logs in with alice's token through the form the overview sends a browser to.
async fn log_in(client: &Client, server: &WebServer) {
    client.goto(&server.url("/")).await.expect("open");
    wait_for_text(client, "Admin token").await;
    client
        .find(Locator::Css("#token"))
        .await
        .expect("token field")
        .send_keys(ALICE_TOKEN)
        .await
        .expect("type token");
    click(client, "form button[type=submit]").await;
    wait_for_text(client, "Signed in as alice").await;
}

/// Replaces the text in the job page's payload editor with `payload` and submits it.
async fn submit_payload(client: &Client, payload: &str) {
    let editor = client
        .find(Locator::Css("form.edit textarea"))
        .await
        .expect("the payload editor");
    editor.clear().await.expect("clear the editor");
    editor.send_keys(payload).await.expect("type the payload");
    click(client, "form.edit button[type=submit]").await;
}

async fn repairs_of_a_selection_in_a_browser(backend: Backend) {
    let panel = support::panel::fake().await;
    let db = support::panel::db_with_panel(backend, &panel, ADMINS_CONFIG).await;
    let queue = db.queue().await;
    // With a panel configured, every worker needs its token, the test kinds' too.
    let tests = support::panel::panel_worker(&db, "test")
        .args(&["--test-kinds"])
        .start();
    let panels = support::panel::spawn_panel_worker(&db);
    let broken: Vec<i64> = (0..3)
        .map(|_| db.enqueue("test_fail", r#"{"mode":"permanent"}"#, &[]))
        .collect();
    let platinum = support::panel::enqueue(&db, &support::panel::payload("main", "platinum"), None);
    for id in &broken {
        db.wait_for_state(*id, JobState::Failed).await;
    }
    support::panel::wait_state(&db, &queue, platinum, JobState::Failed, &panels).await;
    drop(tests);
    let server = WebServer::start(&db).await;
    let driver = start_chromedriver().await;
    let client = browser(&driver).await;
    log_in(&client, &server).await;

    // The tab's icon is there (no 404), with the page's own policy.
    let icon = client
        .execute_async(
            "const done = arguments[0]; fetch('/favicon.ico').then(r => done(r.status + ' ' + r.headers.get('content-type')));",
            vec![],
        )
        .await
        .expect("fetch the favicon");
    assert_eq!(icon, json!("200 image/svg+xml"));

    // Tick two failed jobs on the list, retry just those: confirm, then the result.
    client
        .goto(&server.url("/jobs?state=failed&queue=test"))
        .await
        .expect("the failed jobs");
    wait_for_text(&client, "3 jobs matching").await;
    for id in &broken[..2] {
        click(&client, &format!("input[type=checkbox][value='{id}']")).await;
    }
    click(&client, "form#selection button[value=retry]").await;
    let confirm = wait_for_text(&client, "Retry 2 selected jobs?").await;
    assert!(!confirm.contains(&format!("#{}", broken[2])), "{confirm}");
    screenshot(&client, backend, "dashboard-selection-confirm").await;
    click(&client, "form.confirm button[type=submit]").await;
    wait_for_text(&client, "Retried 2 jobs.").await;
    let audit = queue.driver().audit_log(1).await.expect("audit");
    let mut ticked = broken[..2].to_vec();
    ticked.sort_unstable();
    assert_eq!(
        audit[0].target,
        format!("selected jobs {},{}", ticked[0], ticked[1])
    );
    assert_eq!(db.job(&queue, broken[2]).await.state, JobState::Failed);

    // Failures by error: the test failures are one group; discard one of its jobs from there.
    click(&client, "header nav a[href='/failures']").await;
    wait_for_text(&client, "test failure permanent of attempt N").await;
    screenshot(&client, backend, "dashboard-failures").await;
    client
        .find(Locator::XPath(
            "//table[contains(@class,'failures')]//tr[td[contains(., 'test failure permanent')]]//a",
        ))
        .await
        .expect("the test failures' group")
        .click()
        .await
        .expect("open the group");
    wait_for_text(&client, "1 job fails with").await;
    click(
        &client,
        &format!("input[type=checkbox][value='{}']", broken[2]),
    )
    .await;
    click(&client, "form#selection button[value=discard]").await;
    wait_for_text(&client, "Discard 1 selected job?").await;
    click(&client, "form.confirm button[type=submit]").await;
    wait_for_text(&client, "Discarded 1 job.").await;
    assert_eq!(db.job(&queue, broken[2]).await.state, JobState::Discarded);

    // The order on a plan not for sale: edit its payload to the right plan and retry it.
    client
        .goto(&server.url(&format!("/jobs/{platinum}")))
        .await
        .expect("the failed order");
    wait_for_text(&client, "Edit the payload and retry").await;
    click(&client, "details.edit summary").await;
    submit_payload(&client, r#"{"panel": "main", "plan": "nope", "user": 7}"#).await;
    wait_for_text(&client, "not a valid provision_client payload").await;
    submit_payload(&client, &support::panel::payload("main", "basic")).await;
    wait_for_text(&client, "Payload saved and the job retried.").await;
    let job = support::panel::wait_state(&db, &queue, platinum, JobState::Completed, &panels).await;
    assert_eq!(job.payload["plan"], "basic");

    // The periodic page names the panel's usage sync, which every panel has.
    click(&client, "header nav a[href='/periodic']").await;
    let page = wait_for_text(&client, "Periodic jobs").await;
    assert!(
        page.contains("sync-main") && page.contains("sync_usage"),
        "{page}"
    );

    // The audit log filtered by action shows the edit, with both payloads.
    click(&client, "header nav a[href='/audit']").await;
    wait_for_text(&client, "Audit log").await;
    select(&client, "action", "edit_retry").await;
    click(&client, "form.filters button.primary").await;
    let audit = wait_for_text(&client, "platinum").await;
    assert!(
        audit.contains("basic") && !audit.contains("selected jobs"),
        "{audit}"
    );

    client.close().await.expect("close the browser");
}
