//! The dashboard over real HTTP: a `jobq web` process on a random port, a real worker where
//! jobs must run, on SQLite and PostgreSQL.

mod support;
mod web_support;

use std::time::Duration;

use jobs::JobState;
use jobs::driver::JobFilter;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use support::*;
use web_support::*;

on_both_backends!(
    every_page_needs_an_admin,
    state_changes_need_the_csrf_token,
    a_script_payload_renders_inert,
    a_failed_job_is_found_retried_and_discarded_with_audit,
    bulk_discard_by_filter_counts_and_confirms,
    pause_and_resume_a_queue,
    ticked_jobs_are_confirmed_then_repaired_with_one_audit_entry,
    failures_are_grouped_by_their_error,
    a_failed_payload_is_edited_checked_by_its_kind_and_retried,
    periodic_jobs_audit_filters_running_jobs_and_the_favicon,
);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

fn location(headers: &HeaderMap) -> String {
    headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Logs in through the form: the session, with its cookie (`name=value`).
async fn login<'a>(server: &'a WebServer, token: &str) -> Session<'a> {
    let response = server.post_login(&client(), token).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "login");
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("login sets a cookie")
        .to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    let pair = cookie.split(';').next().expect("cookie pair").trim();
    Session {
        server,
        cookie: pair.to_string(),
    }
}

/// An admin signed in to the dashboard.
struct Session<'a> {
    server: &'a WebServer,
    cookie: String,
}

impl Session<'_> {
    async fn page(&self, path: &str) -> (StatusCode, String) {
        get_page(self.server, &self.cookie, path).await
    }

    async fn post(&self, path: &str, form: &(impl serde::Serialize + ?Sized)) -> reqwest::Response {
        post_form(self.server, &self.cookie, path, form).await
    }
}

async fn get_page(server: &WebServer, cookie: &str, path: &str) -> (StatusCode, String) {
    let response = client()
        .get(server.url(path))
        .header(header::COOKIE, cookie)
        .header(header::ACCEPT, "text/html")
        .send()
        .await
        .expect("GET");
    let status = response.status();
    (status, response.text().await.expect("body"))
}

/// POSTs `form` to `path` in the session of `cookie`.
async fn post_form(
    server: &WebServer,
    cookie: &str,
    path: &str,
    form: &(impl serde::Serialize + ?Sized),
) -> reqwest::Response {
    client()
        .post(server.url(path))
        .header(header::COOKIE, cookie)
        .form(form)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// The CSRF token in a page's forms.
fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a form with a CSRF token") + marker.len();
    html[start..]
        .split('"')
        .next()
        .expect("token value")
        .to_string()
}

async fn every_page_needs_an_admin(backend: Backend) {
    let db = TestDb::with_config(backend, ADMINS_CONFIG).await;
    let server = WebServer::start(&db).await;
    let http = client();

    // A script without a token: 401 naming the way in. A browser: sent to the login form.
    let response = http.get(server.url("/")).send().await.expect("GET /");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    for path in ["/jobs?state=failed", "/jobs/1", "/audit", "/api/overview"] {
        let response = http.get(server.url(path)).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let response = http
        .get(server.url("/jobs?state=failed"))
        .header(header::ACCEPT, "text/html")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(response.headers()),
        "/login?next=%2Fjobs%3Fstate%3Dfailed"
    );

    // Security headers on every response, the login page included.
    let response = http.get(server.url("/login")).send().await.expect("login");
    assert_eq!(response.status(), StatusCode::OK);
    let h = response.headers();
    let csp = h
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(
        h.get(header::X_FRAME_OPTIONS).map(|v| v.as_bytes()),
        Some(&b"DENY"[..])
    );
    assert_eq!(
        h.get(header::REFERRER_POLICY).map(|v| v.as_bytes()),
        Some(&b"no-referrer"[..])
    );

    // Wrong tokens are refused, by Bearer and by the form, and set no cookie.
    let response = server
        .get_bearer(&http, "/", "admin-token-0123456789abcdeX")
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = server.post_login(&http, "not-the-token-at-all").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(!response.headers().contains_key(header::SET_COOKIE));
    let body = response.text().await.expect("body");
    assert!(
        !body.contains("not-the-token-at-all"),
        "the token is echoed"
    );
    // A forged session cookie is no session.
    let (status, _) = get_page(&server, "jobq_session=00ff", "/").await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // The right tokens: Bearer for scripts, the form for browsers; each admin by name.
    let response = server.get_bearer(&http, "/api/overview", ALICE_TOKEN).await;
    assert_eq!(response.status(), StatusCode::OK);
    let session = login(&server, ALICE_TOKEN).await;
    let (status, html) = session.page("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("Signed in as <strong>alice</strong>"),
        "{html}"
    );
    let session = login(&server, ADMIN_TOKEN).await;
    let (status, html) = session.page("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Signed in as <strong>admin</strong>"));
    // No token is ever rendered.
    assert!(!html.contains(ADMIN_TOKEN) && !html.contains(ALICE_TOKEN));

    // Logging out ends the session (with its CSRF token).
    let response = session
        .post("/logout", &[("csrf", csrf_of(&html).as_str())])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let (status, _) = session.page("/").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the session outlived logout");

    let log = server.log_text();
    assert!(
        !log.contains(ADMIN_TOKEN) && !log.contains(ALICE_TOKEN),
        "token in the log"
    );
}

async fn state_changes_need_the_csrf_token(backend: Backend) {
    let db = TestDb::with_config(backend, ADMINS_CONFIG).await;
    let id = db.enqueue("test_effect", "{}", &[]);
    let server = WebServer::start(&db).await;
    let http = client();
    let session = login(&server, ALICE_TOKEN).await;
    let (_, html) = session.page(&format!("/jobs/{id}")).await;
    let csrf = csrf_of(&html);

    for form in [vec![], vec![("csrf", "0".repeat(64))]] {
        let response = session.post(&format!("/jobs/{id}/cancel"), &form).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{form:?}");
        let response = session.post("/queues/test/pause", &form).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{form:?}");
    }
    // Reading pages never changes anything; GET on an action is no action.
    let response = http
        .get(server.url(&format!("/jobs/{id}/cancel")))
        .header(header::COOKIE, &session.cookie)
        .send()
        .await
        .expect("GET");
    assert_ne!(response.status(), StatusCode::SEE_OTHER);
    let queue = db.queue().await;
    assert_eq!(db.job(&queue, id).await.state, JobState::Available);
    assert!(paused_queues(&queue).await.is_empty());
    assert!(
        queue
            .driver()
            .audit_log(10)
            .await
            .expect("audit")
            .is_empty()
    );

    // With the session's token it works; a Bearer script needs none.
    let response = session
        .post(&format!("/jobs/{id}/cancel"), &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(response.headers()),
        format!("/jobs/{id}?done=cancel&changed=1&skipped=0")
    );
    assert_eq!(db.job(&queue, id).await.state, JobState::Cancelled);
    let response = http
        .post(server.url(&format!("/jobs/{id}/retry")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(db.job(&queue, id).await.state, JobState::Available);
    let audit = queue.driver().audit_log(10).await.expect("audit");
    let seen: Vec<(&str, &str, &str)> = audit
        .iter()
        .map(|a| (a.actor.as_str(), a.surface.as_str(), a.action.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("admin", "dashboard", "retry"),
            ("alice", "dashboard", "cancel")
        ]
    );
}

async fn a_script_payload_renders_inert(backend: Backend) {
    let db = TestDb::with_config(backend, ADMINS_CONFIG).await;
    let evil = "<script>alert(\"pwned\")</script><img src=x onerror=alert(1)>";
    let payload = serde_json::json!({"user": {"platform": "telegram", "id": 42}, "text": evil});
    let key = "<b>key</b>\"'";
    let id = db.enqueue("send_dm", &payload.to_string(), &["--key", key]);
    let unknown = db.enqueue(
        "test_fail",
        r#"{"mode":"permanent"}"#,
        &["--queue", "evil-queue"],
    );
    let server = WebServer::start(&db).await;
    let session = login(&server, ADMIN_TOKEN).await;
    for path in [
        format!("/jobs/{id}"),
        format!("/jobs/{unknown}"),
        "/jobs".to_string(),
        "/".to_string(),
        format!("/jobs?q={}", "%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
        format!("/jobs?kind={}", "%3Cscript%3Ealert(2)%3C%2Fscript%3E"),
    ] {
        let (status, html) = session.page(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!html.contains("<script>alert"), "{path}: live script");
        assert!(!html.contains("<img src=x"), "{path}: live image");
        assert!(!html.contains("<b>key</b>"), "{path}: live markup");
        assert!(
            !html.contains("onerror=alert(1)>"),
            "{path}: live attribute"
        );
    }
    let (_, html) = session.page(&format!("/jobs/{id}")).await;
    assert!(
        html.contains("&lt;script&gt;alert"),
        "the payload is shown escaped"
    );
    assert!(
        html.contains("&lt;b&gt;key&lt;/b&gt;"),
        "the key is shown escaped"
    );
    let (_, html) = session
        .page("/jobs?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        .await;
    assert!(html.contains("&lt;script&gt;alert(1)"), "{html}");
}

async fn a_failed_job_is_found_retried_and_discarded_with_audit(backend: Backend) {
    let db = TestDb::with_config(backend, ADMINS_CONFIG).await;
    let _worker = db.spawn_worker(&[]);
    let flaky = db.enqueue(
        "test_fail",
        r#"{"mode":"permanent","times":1}"#,
        &["--key", "order-17"],
    );
    let broken = db.enqueue("test_fail", r#"{"mode":"permanent","times":0}"#, &[]);
    let fine = db.enqueue("test_effect", "{}", &[]);
    db.wait_for_state(flaky, JobState::Failed).await;
    db.wait_for_state(broken, JobState::Failed).await;
    db.wait_for_state(fine, JobState::Completed).await;

    let server = WebServer::start(&db).await;
    let http = client();
    let session = login(&server, ALICE_TOKEN).await;
    let (status, html) = session.page("/jobs?state=failed&queue=test&kind=").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&format!("href=\"/jobs/{flaky}\"")), "{html}");
    assert!(html.contains(&format!("href=\"/jobs/{broken}\"")));
    assert!(
        !html.contains(&format!("href=\"/jobs/{fine}\"")),
        "a completed job listed as failed"
    );
    assert!(html.contains("<strong>2</strong> jobs"), "{html}");

    // Search by key and by id go straight to the job.
    let (status, _) = session.page("/jobs?q=order-17").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let response = http
        .get(server.url(&format!("/jobs?q=%23{flaky}")))
        .header(header::COOKIE, &session.cookie)
        .send()
        .await
        .expect("GET");
    assert_eq!(location(response.headers()), format!("/jobs/{flaky}"));

    // The job's page: its attempt with worker, duration and error; its key.
    let (_, html) = session.page(&format!("/jobs/{flaky}")).await;
    assert!(html.contains("Attempt 1"), "{html}");
    assert!(html.contains("permanent"), "the error is shown: {html}");
    assert!(html.contains("order-17"));
    assert!(html.contains(" ms"));
    let csrf = csrf_of(&html);

    let response = session
        .post(&format!("/jobs/{flaky}/retry"), &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    db.wait_for_state(flaky, JobState::Completed).await;
    let (_, html) = session
        .page(&format!("/jobs/{flaky}?done=retry&changed=1&skipped=0"))
        .await;
    assert!(html.contains("Retried 1 job."), "{html}");
    assert!(html.contains("s-completed"), "{html}");

    let response = session
        .post(
            &format!("/jobs/{broken}/discard"),
            &[("csrf", csrf.as_str())],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let queue = db.queue().await;
    assert_eq!(db.job(&queue, broken).await.state, JobState::Discarded);
    // Discarding a completed job changes nothing, and says so.
    let response = session
        .post(&format!("/jobs/{fine}/discard"), &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(
        location(response.headers()),
        format!("/jobs/{fine}?done=discard&changed=0&skipped=1")
    );
    assert_eq!(db.job(&queue, fine).await.state, JobState::Completed);

    let audit = queue.driver().audit_log(10).await.expect("audit");
    let seen: Vec<(&str, &str, &str, String, i64)> = audit
        .iter()
        .map(|a| {
            (
                a.actor.as_str(),
                a.surface.as_str(),
                a.action.as_str(),
                a.target.clone(),
                a.count,
            )
        })
        .collect();
    // The refused discard of the completed job wrote nothing, not even an audit entry.
    assert_eq!(
        seen,
        [
            ("alice", "dashboard", "discard", format!("jobs {broken}"), 1),
            ("alice", "dashboard", "retry", format!("jobs {flaky}"), 1),
        ]
    );
    // And the audit log is on the page.
    let (_, html) = session.page("/audit").await;
    assert!(html.contains(&format!("jobs {broken}")), "{html}");
    assert!(html.contains("<strong>alice</strong>"));
}

async fn bulk_discard_by_filter_counts_and_confirms(backend: Backend) {
    let db = TestDb::with_config(backend, ADMINS_CONFIG).await;
    let worker = db.spawn_worker(&[]);
    let failed: Vec<i64> = (0..3)
        .map(|_| db.enqueue("test_fail", r#"{"mode":"permanent"}"#, &[]))
        .collect();
    for id in &failed {
        db.wait_for_state(*id, JobState::Failed).await;
    }
    drop(worker);
    // Not matched: a job of another queue, and a job of the same queue that is not failed.
    let other = db.enqueue(
        "test_fail",
        r#"{"mode":"permanent"}"#,
        &["--queue", "other"],
    );
    let waiting = db.enqueue("test_effect", "{}", &[]);
    let queue = db.queue().await;
    let failed_in_test = JobFilter {
        state: Some(JobState::Failed),
        queue: Some("test".into()),
        ..JobFilter::default()
    };
    assert_eq!(
        queue
            .driver()
            .count_matching(&failed_in_test)
            .await
            .expect("count"),
        3
    );
    let server = WebServer::start(&db).await;
    let session = login(&server, ADMIN_TOKEN).await;

    // A bulk action needs a filter.
    let (status, _) = session.page("/jobs/bulk?action=discard").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, html) = session
        .page("/jobs/bulk?action=discard&state=failed&queue=test")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Discard 3 jobs?"), "{html}");
    let csrf = csrf_of(&html);
    let upto = failed.iter().max().copied().unwrap_or_default().to_string();

    // Without the CSRF token: refused, nothing changed.
    let form = |csrf: Option<&str>| {
        let mut f = vec![
            ("action", "discard".to_string()),
            ("state", "failed".to_string()),
            ("queue", "test".to_string()),
            ("upto", upto.clone()),
        ];
        if let Some(c) = csrf {
            f.push(("csrf", c.to_string()));
        }
        f
    };
    let response = session.post("/jobs/bulk", &form(None)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(db.job(&queue, failed[0]).await.state, JobState::Failed);

    // A job failing after the confirmation was shown is not part of it.
    let late = db.enqueue("test_fail", r#"{"mode":"permanent"}"#, &[]);
    let response = session.post("/jobs/bulk", &form(Some(&csrf))).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(response.headers()),
        "/jobs?state=failed&queue=test&done=discard&changed=3&skipped=0"
    );
    for id in &failed {
        assert_eq!(db.job(&queue, *id).await.state, JobState::Discarded);
    }
    assert_eq!(db.job(&queue, other).await.state, JobState::Available);
    assert_eq!(db.job(&queue, waiting).await.state, JobState::Available);
    assert_eq!(db.job(&queue, late).await.state, JobState::Available);
    assert_eq!(
        queue
            .driver()
            .count_matching(&failed_in_test)
            .await
            .expect("count"),
        0
    );
    let audit = queue.driver().audit_log(10).await.expect("audit");
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].actor, "admin");
    assert_eq!(audit[0].surface, "dashboard");
    assert_eq!(audit[0].action, "discard");
    assert_eq!(audit[0].count, 3);
    assert!(
        audit[0]
            .target
            .starts_with("jobs matching state=failed queue=test kind=*: jobs "),
        "{}",
        audit[0].target
    );
    let (_, html) = session
        .page("/jobs?state=failed&queue=test&done=discard&changed=3&skipped=0")
        .await;
    assert!(html.contains("Discarded 3 jobs."), "{html}");
}

async fn pause_and_resume_a_queue(backend: Backend) {
    let db = TestDb::with_config(backend, ADMINS_CONFIG).await;
    let _worker = db.spawn_worker(&[]);
    let server = WebServer::start(&db).await;
    let session = login(&server, ALICE_TOKEN).await;
    let (_, html) = session.page("/").await;
    let csrf = csrf_of(&html);
    let queue = db.queue().await;

    let response = session
        .post("/queues/test/pause", &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(is_paused(&queue, "test").await);
    // A paused queue's jobs wait.
    let id = db.enqueue("test_effect", "{}", &[]);
    let (_, html) = session.page("/").await;
    assert!(html.contains("Resume"), "{html}");
    assert!(html.contains("badge s-paused"), "{html}");
    assert_eq!(db.job(&queue, id).await.state, JobState::Available);

    let response = session
        .post("/queues/test/resume", &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(!is_paused(&queue, "test").await);
    db.wait_for_state(id, JobState::Completed).await;

    let audit = queue.driver().audit_log(10).await.expect("audit");
    let seen: Vec<(&str, &str, &str)> = audit
        .iter()
        .map(|a| (a.actor.as_str(), a.action.as_str(), a.target.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("alice", "resume", "queue test"),
            ("alice", "pause", "queue test")
        ]
    );
    let (_, html) = session.page("/").await;
    assert!(
        html.contains("queue test"),
        "the audit log is on the overview"
    );
}

#[test]
fn refuses_a_public_address_without_a_token() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(TestDb::new(Backend::Sqlite));
    let out = db.jobq(&["web", "--bind", "0.0.0.0:0"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("not a loopback address"), "{err}");
    assert!(err.contains("JOBQ_ADMIN_TOKEN"), "{err}");
    // Nor on loopback: no one could log in.
    let out = db.jobq(&["web"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no admin token"), "{}", stderr(&out));
    // A weak token is refused, naming its variable and not its value.
    let out = db
        .command(&["web", "--bind", "127.0.0.1:0"])
        .env("JOBQ_ADMIN_TOKEN", "short")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("JOBQ_ADMIN_TOKEN") && err.contains("too weak"),
        "{err}"
    );
    assert!(!err.contains("short"), "{err}");
}

/// The `href` of the first link on the page that starts with `prefix`.
fn link_starting(html: &str, prefix: &str) -> String {
    let marker = format!("href=\"{prefix}");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no link to {prefix}…: {html}"))
        + "href=\"".len();
    html[start..]
        .split('"')
        .next()
        .expect("the link")
        .replace("&amp;", "&")
}

async fn ticked_jobs_are_confirmed_then_repaired_with_one_audit_entry(backend: Backend) {
    let db = TestDb::with_config(backend, ADMINS_CONFIG).await;
    let ticked: Vec<i64> = (0..2)
        .map(|_| db.enqueue("test_effect", "{}", &[]))
        .collect();
    let untouched = db.enqueue("test_effect", "{}", &[]);
    let done = db.enqueue("test_effect", "{}", &[]);
    let queue = db.queue().await;
    let cli = jobs::audit::AuditEntry::cli("cancel", "setup");
    queue.cancel(&[done], &cli).await.expect("cancel");
    let server = WebServer::start(&db).await;
    let session = login(&server, ALICE_TOKEN).await;

    // The list offers a box per job, joined to the selection form.
    let (_, html) = session.page("/jobs?queue=test").await;
    assert!(
        html.contains(&format!(
            "type=\"checkbox\" name=\"id\" value=\"{}\" form=\"selection\"",
            ticked[0]
        )),
        "{html}"
    );
    assert!(
        html.contains("id=\"selection\" method=\"get\" action=\"/jobs/selected\""),
        "{html}"
    );

    // The confirmation names every ticked job and what will happen to it; it changes nothing.
    let selected = format!(
        "/jobs/selected?action=cancel&id={}&id={}&id={done}&back=%2Fjobs%3Fqueue%3Dtest",
        ticked[0], ticked[1]
    );
    let (status, html) = session.page(&selected).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Cancel 3 selected jobs?"), "{html}");
    assert!(html.contains("2 of them"), "{html}");
    assert!(html.contains("no: left alone"), "{html}");
    for id in &ticked {
        assert_eq!(db.job(&queue, *id).await.state, JobState::Available);
    }
    let csrf = csrf_of(&html);
    let mut form: Vec<(&str, String)> = vec![
        ("action", "cancel".into()),
        ("back", "/jobs?queue=test".into()),
    ];
    form.extend([ticked[0], ticked[1], done].map(|id| ("id", id.to_string())));

    // Without the session's CSRF token: refused, nothing changed.
    let response = session.post("/jobs/selected", &form).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(db.job(&queue, ticked[0]).await.state, JobState::Available);

    form.push(("csrf", csrf.clone()));
    let response = session.post("/jobs/selected", &form).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(response.headers()),
        "/jobs?queue=test&done=cancel&changed=2&skipped=1"
    );
    for id in &ticked {
        assert_eq!(db.job(&queue, *id).await.state, JobState::Cancelled);
    }
    assert_eq!(db.job(&queue, untouched).await.state, JobState::Available);
    let audit = queue.driver().audit_log(1).await.expect("audit");
    assert_eq!(audit[0].actor, "alice");
    assert_eq!(audit[0].action, "cancel");
    assert_eq!(audit[0].count, 2);
    let mut listed = [ticked[0], ticked[1], done];
    listed.sort_unstable();
    assert_eq!(
        audit[0].target,
        format!("selected jobs {},{},{}", listed[0], listed[1], listed[2])
    );

    // Bad selections are refused with the reason; a `back` off this site goes home.
    for (query, reason) in [
        ("action=cancel", "No job selected"),
        ("action=explode&id=1", "Choose retry, discard or cancel"),
        ("action=cancel&id=seven", "is not a job id"),
    ] {
        let (status, html) = session.page(&format!("/jobs/selected?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(html.contains(reason), "{query}: {html}");
    }
    let many: String = (1..=501).map(|id| format!("&id={id}")).collect();
    let (status, html) = session
        .page(&format!("/jobs/selected?action=retry{many}"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("501 jobs selected"), "{html}");
    let response = session
        .post(
            "/jobs/selected",
            &[
                ("csrf", csrf.as_str()),
                ("action", "retry"),
                ("id", &untouched.to_string()),
                ("back", "//evil.example/"),
            ],
        )
        .await;
    assert_eq!(
        location(response.headers()),
        "/?done=retry&changed=0&skipped=1"
    );
}

async fn failures_are_grouped_by_their_error(backend: Backend) {
    let db = TestDb::with_config(backend, ADMINS_CONFIG).await;
    let worker = db.spawn_worker(&[]);
    // Three fail at once with the same words; two fail after a retry, each on attempt 2.
    let permanent: Vec<i64> = (0..3)
        .map(|_| db.enqueue("test_fail", r#"{"mode":"permanent"}"#, &[]))
        .collect();
    let retried: Vec<i64> = (0..2)
        .map(|_| db.enqueue("test_fail", r#"{"mode":"retry"}"#, &["--max-attempts", "2"]))
        .collect();
    for id in permanent.iter().chain(&retried) {
        db.wait_for_state(*id, JobState::Failed).await;
    }
    drop(worker);
    let server = WebServer::start(&db).await;
    let session = login(&server, ALICE_TOKEN).await;

    let (status, html) = session.page("/failures").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("5 failed jobs"), "{html}");
    let first = html
        .find("test failure permanent of attempt N")
        .unwrap_or_else(|| panic!("the permanent group: {html}"));
    let second = html
        .find("test failure retry of attempt N")
        .unwrap_or_else(|| panic!("the retried group: {html}"));
    assert!(first < second, "the bigger group comes first: {html}");
    assert!(
        html.contains("test_fail</code> <span class=\"muted\">×3"),
        "{html}"
    );

    // A group's link shows its jobs, each with a box for the selection's actions.
    let group = link_starting(&html, "/failures?group=");
    let (status, html) = session.page(&group).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("3 jobs fail with"), "{html}");
    let back = group.split('#').next().unwrap_or_default();
    assert!(
        html.contains(&format!("name=\"back\" value=\"{back}\"")),
        "{html}"
    );
    for id in &permanent {
        assert!(
            html.contains(&format!("value=\"{id}\" form=\"selection\"")),
            "{html}"
        );
    }
    for id in &retried {
        assert!(
            !html.contains(&format!("value=\"{id}\" form=\"selection\"")),
            "{html}"
        );
    }
}

async fn a_failed_payload_is_edited_checked_by_its_kind_and_retried(backend: Backend) {
    let panel = support::panel::fake().await;
    let db = support::panel::db_with_panel(backend, &panel, ADMINS_CONFIG).await;
    let queue = db.queue().await;
    let worker = support::panel::spawn_panel_worker(&db);
    // Ordered on a plan the shop does not sell: it fails for good.
    let platinum = support::panel::payload("main", "platinum");
    let id = support::panel::enqueue(&db, &platinum, None);
    support::panel::wait_state(&db, &queue, id, JobState::Failed, &worker).await;
    let server = WebServer::start(&db).await;
    let session = login(&server, ALICE_TOKEN).await;
    let (_, html) = session.page(&format!("/jobs/{id}")).await;
    assert!(html.contains("Edit the payload and retry"), "{html}");
    assert!(
        html.contains(&format!("action=\"/jobs/{id}/edit\"")),
        "{html}"
    );
    let csrf = csrf_of(&html);
    let edit = format!("/jobs/{id}/edit");

    // Refused, each with what is wrong, changing nothing and auditing nothing: not JSON, not
    // this kind's payload, no CSRF token.
    for (payload, reason) in [
        ("{\"panel\": ", "the payload is not JSON"),
        (
            r#"{"panel":"main","plan":"basic"}"#,
            "not a valid provision_client payload",
        ),
    ] {
        let response = session
            .post(&edit, &[("csrf", csrf.as_str()), ("payload", payload)])
            .await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{payload}"
        );
        let html = response.text().await.expect("body");
        assert!(html.contains(reason), "{payload}: {html}");
        assert!(
            html.contains("Save and retry"),
            "the edit is shown back: {html}"
        );
    }
    let basic = support::panel::payload("main", "basic");
    let response = session.post(&edit, &[("payload", basic.as_str())]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let job = db.job(&queue, id).await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.payload["plan"], "platinum");
    assert!(queue.driver().audit_log(5).await.expect("audit").is_empty());

    // The right plan: stored, retried, run; the audit entry has the old and the new payload.
    let response = session
        .post(
            &edit,
            &[("csrf", csrf.as_str()), ("payload", basic.as_str())],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(response.headers()),
        format!("/jobs/{id}?done=edit_retry&changed=1")
    );
    let job = support::panel::wait_state(&db, &queue, id, JobState::Completed, &worker).await;
    assert_eq!(job.payload["plan"], "basic");
    let audit = queue.driver().audit_log(5).await.expect("audit");
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(
        (audit[0].actor.as_str(), audit[0].action.as_str()),
        ("alice", "edit_retry")
    );
    assert!(
        audit[0].target.contains(r#""plan":"platinum""#)
            && audit[0].target.contains(r#""plan":"basic""#),
        "{}",
        audit[0].target
    );
    // A completed job is not edited.
    let response = session
        .post(
            &edit,
            &[("csrf", csrf.as_str()), ("payload", platinum.as_str())],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(db.job(&queue, id).await.payload["plan"], "basic");
}

async fn periodic_jobs_audit_filters_running_jobs_and_the_favicon(backend: Backend) {
    let config = format!("{ADMINS_CONFIG}{}", periodic_effect("hourly-tick", "1h"));
    let db = TestDb::with_config(backend, &config).await;
    let server = WebServer::start(&db).await;
    let session = login(&server, ALICE_TOKEN).await;
    let (_, html) = session.page("/periodic").await;
    assert!(
        html.contains("hourly-tick") && html.contains("none yet"),
        "{html}"
    );

    // A worker enqueues the period's job; a long job keeps it busy.
    let worker = db.spawn_worker(&[]);
    let queue = db.queue().await;
    let tick = eventually(Duration::from_secs(30), "the periodic job", || {
        let queue = queue.clone();
        async move {
            queue
                .driver()
                .newest_with_key_prefix("periodic:hourly-tick:")
                .await
                .ok()
                .flatten()
        }
    })
    .await;
    let (_, html) = session.page("/periodic").await;
    assert!(
        html.contains(&format!("href=\"/jobs/{}\"", tick.id)),
        "{html}"
    );
    assert!(!html.contains("none yet"), "{html}");
    assert!(html.contains("1h 0m"), "the period: {html}");

    let busy = db.enqueue("test_effect", r#"{"sleep_ms":60000}"#, &[]);
    db.wait_for_state(busy, JobState::Running).await;
    let (_, html) = session.page("/").await;
    let running = db.job(&queue, busy).await;
    let by = running.attempted_by.expect("the worker that runs it");
    assert!(html.contains(&format!("data-worker=\"{by}\"")), "{html}");
    assert!(
        html.contains(&format!("href=\"/jobs/{busy}\" title=\"test_effect since")),
        "the worker's running job: {html}"
    );
    drop(worker);

    // Audit entries by two admins on two jobs, then filtered by each field.
    let (_, html) = session.page(&format!("/jobs/{busy}")).await;
    let csrf = csrf_of(&html);
    let other = db.enqueue("test_effect", "{}", &[]);
    session
        .post(&format!("/jobs/{other}/cancel"), &[("csrf", csrf.as_str())])
        .await;
    let admin = login(&server, ADMIN_TOKEN).await;
    let (_, html) = admin.page("/").await;
    admin
        .post(
            &format!("/jobs/{other}/retry"),
            &[("csrf", csrf_of(&html).as_str())],
        )
        .await;
    admin
        .post("/queues/test/pause", &[("csrf", csrf_of(&html).as_str())])
        .await;
    let rows = |html: &str| html.matches("<td class=\"target\">").count();
    let (_, html) = session.page("/audit").await;
    assert_eq!(rows(&html), 3, "{html}");
    let (_, html) = session.page("/audit?actor=alice").await;
    assert_eq!(rows(&html), 1, "{html}");
    assert!(html.contains("<strong>alice</strong>") && !html.contains("<strong>admin</strong>"));
    let (_, html) = session.page("/audit?action=pause").await;
    assert_eq!(rows(&html), 1, "{html}");
    assert!(html.contains("queue test"), "{html}");
    let (_, html) = session.page(&format!("/audit?job={other}")).await;
    assert_eq!(rows(&html), 2, "{html}");
    let (_, html) = session
        .page(&format!("/audit?actor=admin&job={other}"))
        .await;
    assert_eq!(rows(&html), 1, "{html}");
    let (_, html) = session.page("/audit?job=abc").await;
    assert!(html.contains("is not a job id"), "{html}");

    // The favicon: served without a login, as an image, with the security headers.
    for path in ["/favicon.ico", "/static/favicon.svg"] {
        let response = client().get(server.url(path)).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let h = response.headers();
        assert_eq!(
            h.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
            Some(&b"image/svg+xml"[..])
        );
        assert!(h.contains_key(header::CONTENT_SECURITY_POLICY), "{path}");
        assert_eq!(
            h.get(header::X_CONTENT_TYPE_OPTIONS).map(|v| v.as_bytes()),
            Some(&b"nosniff"[..])
        );
        assert!(response.text().await.expect("body").starts_with("<svg"));
    }
}
