//! Metrics, parsed as Prometheus parses them: a real `jobq worker --metrics-bind` process's
//! `GET /metrics` after real jobs ran through it, and the web process's queue-level figures read
//! from the database, on SQLite and PostgreSQL.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DurationRound, Utc};
use jobs::audit::AuditEntry;
use jobs::driver::{JobFilter, StatCount, StatKey, WorkerInfo};
use jobs::{EnqueueOptions, JobState, Queue};
use prometheus_parse::{Scrape, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use workers::testkit::{FailMode, TestEffect, TestFail};

on_both_backends!(
    a_worker_serves_what_it_ran_and_stops_serving_with_it,
    a_product_worker_starts_every_family_at_zero_and_counts_panel_calls,
    queue_metrics_come_from_the_database,
);

// ---------------------------------------------------------------------------------------------
// Helpers

/// What Prometheus sends: OpenMetrics first, the classic format after.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
     application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// A plain HTTP/1.1 GET (no `Accept`, as `curl` asks), with a bearer token if given: (status
/// code, content type, body).
async fn get(
    address: &str,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, String, String)> {
    get_accepting(address, path, token, None).await
}

/// [`get`] with an `Accept` header.
async fn get_accepting(
    address: &str,
    path: &str,
    token: Option<&str>,
    accept: Option<&str>,
) -> std::io::Result<(u16, String, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\n{authorization}{accept}Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or((response.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    Ok((status, content_type, body.to_string()))
}

/// Where Debian's `prometheus` package puts Prometheus' own checker.
const PROMTOOL: &str = "/usr/bin/promtool";

/// `promtool check metrics` (Prometheus' own parser and linter) accepts `text` without a word.
fn assert_promtool_accepts(text: &str, what: &str) {
    use std::io::Write;
    assert!(
        std::path::Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: install Debian's prometheus package \
         (scripts/test does: apt-get install prometheus)"
    );
    let mut child = std::process::Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool finishes");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics on {what} exited {:?}:\n{said}\n\n{text}",
        out.status
    );
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("the exposition parses")
}

/// The value of the sample named `metric` whose labels are exactly `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    match &sample(scrape, metric, labels)?.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
        _ => None,
    }
}

/// The sample named `metric` whose labels are exactly `labels`.
fn sample<'a>(
    scrape: &'a Scrape,
    metric: &str,
    labels: &[(&str, &str)],
) -> Option<&'a prometheus_parse::Sample> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && same_labels(&s.labels, labels))
}

fn same_labels(have: &prometheus_parse::Labels, want: &[(&str, &str)]) -> bool {
    let have: BTreeMap<&str, &str> = have.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let want: BTreeMap<&str, &str> = want.iter().copied().collect();
    have == want
}

/// The count of the histogram `metric` with these labels, from its `+Inf` bucket.
fn histogram_count(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    match &sample(scrape, metric, labels)?.value {
        Value::Histogram(buckets) => buckets
            .iter()
            .find(|b| b.less_than.is_infinite())
            .map(|b| b.count),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The worker's own figures

/// What the worker's `/metrics` must say once every job below has finished.
/// A sample: its name, its labels, its value.
type Figure = (&'static str, Vec<(&'static str, &'static str)>, f64);

/// A sample the queue metrics must have: its name, its labels, its value.
type Expected = (&'static str, &'static [(&'static str, &'static str)], f64);

fn expected_worker_figures() -> Vec<Figure> {
    let effect = vec![("kind", "test_effect"), ("queue", "test")];
    let fail = vec![("kind", "test_fail"), ("queue", "test")];
    let queue = vec![("queue", "test")];
    vec![
        // Three enqueued here, one by the worker's periodic entry.
        ("jobq_jobs_completed_total", effect.clone(), 4.0),
        // The retried job's second attempt.
        ("jobq_jobs_completed_total", fail.clone(), 1.0),
        ("jobq_jobs_retried_total", fail.clone(), 1.0),
        ("jobq_jobs_failed_total", fail.clone(), 1.0),
        ("jobq_jobs_cancelled_total", fail.clone(), 1.0),
        ("jobq_job_duration_seconds_count", effect.clone(), 4.0),
        ("jobq_job_duration_seconds_count", fail.clone(), 4.0),
        ("jobq_fetched_jobs_total", queue.clone(), 8.0),
        ("jobq_jobs_running", queue, 0.0),
        ("jobq_completer_batch_size_sum", vec![], 8.0),
        // Only the periodic job was enqueued by the worker process.
        ("jobq_jobs_enqueued_total", effect, 1.0),
    ]
}

async fn a_worker_serves_what_it_ran_and_stops_serving_with_it(backend: Backend) {
    let db = TestDb::with_config(backend, &periodic_effect("metrics-tick", "3650d")).await;
    let queue = db.queue().await;
    for _ in 0..3 {
        enqueue_effect(&queue, EnqueueOptions::default()).await;
    }
    for (mode, times) in [
        (FailMode::Retry, 1),
        (FailMode::Permanent, 0),
        (FailMode::Cancel, 0),
    ] {
        let job = TestFail {
            mode,
            times,
            retry_after_ms: 0,
        };
        queue
            .enqueue(&job, EnqueueOptions::default())
            .await
            .expect("enqueue test_fail");
    }

    let mut worker = db.spawn_worker(&["--metrics-bind", "127.0.0.1:0"]);
    let address = worker.metrics_address().await;

    // Every job done (4 test_effect completed, the 3 test_fail jobs in their final states).
    eventually(Duration::from_secs(30), "every job to finish", || {
        let queue = queue.clone();
        async move {
            let jobs = queue
                .driver()
                .list_jobs(&JobFilter::default(), 100)
                .await
                .ok()?
                .into_iter()
                .map(|listed| listed.readable())
                .collect::<Result<Vec<_>, _>>()
                .ok()?;
            let final_states = [JobState::Completed, JobState::Failed, JobState::Cancelled];
            (jobs.len() == 7 && jobs.iter().all(|j| final_states.contains(&j.state))).then_some(())
        }
    })
    .await;

    // The counters follow the completer's write by a moment: poll until they agree.
    let expected = expected_worker_figures();
    let disagreement = std::sync::Mutex::new(String::new());
    let (content_type, scrape, text) = eventually_showing(
        Duration::from_secs(10),
        "the worker's metrics to agree with what it ran",
        || {
            let wrong = disagreement.lock().map(|w| w.clone()).unwrap_or_default();
            format!("{wrong}\n\nworker log:\n{}", worker.shown_log())
        },
        || async {
            let (status, content_type, text) =
                get(&address, "/metrics", None).await.expect("GET /metrics");
            assert_eq!(status, 200, "{text}");
            let scrape = parse(&text);
            let wrong: Vec<String> = expected
                .iter()
                .filter(|(metric, labels, want)| value(&scrape, metric, labels) != Some(*want))
                .map(|(metric, labels, want)| {
                    format!(
                        "{metric}{labels:?}: want {want}, got {:?}",
                        value(&scrape, metric, labels)
                    )
                })
                .collect();
            if wrong.is_empty() {
                return Some((content_type, scrape, text));
            }
            if let Ok(mut shown) = disagreement.lock() {
                *shown = format!("{}\n\n{text}", wrong.join("\n"));
            }
            None
        },
    )
    .await;

    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert_promtool_accepts(&text, "a worker's /metrics");
    // Prometheus asks for OpenMetrics and gets it.
    let (status, content_type, open_metrics) =
        get_accepting(&address, "/metrics", None, Some(PROMETHEUS_ACCEPT))
            .await
            .expect("GET /metrics as Prometheus");
    assert_eq!(status, 200, "{open_metrics}");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(
        open_metrics.contains("# TYPE jobq_jobs_completed counter\n")
            && open_metrics.ends_with("# EOF\n"),
        "{open_metrics}"
    );
    let effect = [("kind", "test_effect"), ("queue", "test")];
    let fail = [("kind", "test_fail"), ("queue", "test")];
    // The histogram's buckets parse as one, and count every execution.
    assert_eq!(
        histogram_count(&scrape, "jobq_job_duration_seconds", &effect),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        histogram_count(&scrape, "jobq_job_duration_seconds", &fail),
        Some(4.0),
        "{text}"
    );
    assert!(
        text.contains(r#"jobq_job_duration_seconds_bucket{le="0.001",kind="test_effect""#)
            && text.contains(r#"jobq_job_duration_seconds_bucket{le="300.0",kind="test_effect""#),
        "buckets from 1 ms to 5 min: {text}"
    );
    // test_effect never failed: no such series, or zero.
    for metric in [
        "jobq_jobs_retried_total",
        "jobq_jobs_failed_total",
        "jobq_jobs_cancelled_total",
    ] {
        let v = value(&scrape, metric, &effect).unwrap_or(0.0);
        assert_eq!(v, 0.0, "{metric} for test_effect: {text}");
    }
    let fetches = value(&scrape, "jobq_fetches_total", &[("queue", "test")]).unwrap_or(0.0);
    assert!(fetches >= 1.0, "{text}");
    let batches = value(&scrape, "jobq_completer_batch_size_count", &[]).unwrap_or(0.0);
    assert!((1.0..=8.0).contains(&batches), "{text}");
    // Nothing was rescued: both series are there, at zero.
    for outcome in ["retried", "failed"] {
        assert_eq!(
            value(&scrape, "jobq_jobs_rescued_total", &[("outcome", outcome)]),
            Some(0.0),
            "{text}"
        );
    }
    let (status, _, _) = get(&address, "/nothing-here", None)
        .await
        .expect("GET /nothing-here");
    assert_eq!(status, 404);

    // The server stops with the worker.
    worker.terminate();
    let status = worker.wait_exit(Duration::from_secs(20)).await;
    assert!(
        status.success(),
        "worker exited {status:?}: {}",
        worker.log_text()
    );
    assert!(
        get(&address, "/metrics", None).await.is_err(),
        "{address} still answers after the worker exited"
    );
}

/// A worker of the product's `panel` queue, before any job: every family it will count is
/// there at zero (so `rate()` and alerts work from the first scrape); then one provision,
/// whose panel calls are counted as `service="panel"` and whose wait in the queue is observed.
async fn a_product_worker_starts_every_family_at_zero_and_counts_panel_calls(backend: Backend) {
    let panel = support::panel::fake().await;
    let db = support::panel::db_with_panel(backend, &panel, "").await;
    let queue = db.queue().await;
    let worker = support::panel::panel_worker(&db, "panel")
        .args(&["--metrics-bind", "127.0.0.1:0"])
        .start();
    let address = worker.metrics_address().await;

    let (status, _, text) = get(&address, "/metrics", None).await.expect("GET /metrics");
    assert_eq!(status, 200, "{text}");
    assert_promtool_accepts(&text, "a product worker's /metrics before any job");
    let scrape = parse(&text);
    let provision = [("kind", "provision_client"), ("queue", "panel")];
    for metric in [
        "jobq_jobs_completed_total",
        "jobq_jobs_retried_total",
        "jobq_jobs_failed_total",
        "jobq_jobs_cancelled_total",
        "jobq_jobs_snoozed_total",
        "jobq_jobs_enqueued_total",
        "jobq_job_duration_seconds_count",
        "jobq_job_queue_wait_seconds_count",
    ] {
        assert_eq!(
            value(&scrape, metric, &provision),
            Some(0.0),
            "{metric} for provision_client at zero:\n{text}"
        );
    }
    for service in ["panel", "telegram", "discord"] {
        for outcome in jobs::metrics::CALL_OUTCOMES {
            assert_eq!(
                value(
                    &scrape,
                    "jobq_external_calls_total",
                    &[("service", service), ("outcome", outcome)]
                ),
                Some(0.0),
                "{service} {outcome} at zero:\n{text}"
            );
        }
    }
    assert_eq!(
        value(&scrape, "jobq_jobs_running", &[("queue", "panel")]),
        Some(0.0),
        "{text}"
    );

    let id = support::panel::enqueue(&db, &support::panel::payload("main", "basic"), None);
    support::panel::wait_state(&db, &queue, id, JobState::Completed, &worker).await;
    let (calls, waits) = eventually(Duration::from_secs(10), "the provision counted", || async {
        let (_, _, text) = get(&address, "/metrics", None).await.ok()?;
        let scrape = parse(&text);
        let completed = value(&scrape, "jobq_jobs_completed_total", &provision)?;
        let calls = value(
            &scrape,
            "jobq_external_calls_total",
            &[("service", "panel"), ("outcome", "ok")],
        )?;
        let waits = histogram_count(&scrape, "jobq_job_queue_wait_seconds", &provision)?;
        (completed == 1.0).then_some((calls, waits))
    })
    .await;
    // Creating a client takes several requests (version, look-up by name, create, read back),
    // each counted once: as many as the panel answered.
    let answered = panel.requests();
    assert!(answered.len() >= 2, "{answered:?}");
    assert_eq!(
        calls,
        answered.len() as f64,
        "panel calls counted: {answered:?}"
    );
    assert_eq!(waits, 1.0, "one claim, one queue wait observed");
}

async fn enqueue_effect(queue: &Queue, options: EnqueueOptions) -> i64 {
    queue
        .enqueue(&TestEffect { sleep_ms: 0 }, options)
        .await
        .expect("enqueue test_effect")
        .id
}

#[tokio::test]
async fn a_bad_metrics_address_stops_the_worker_naming_the_setting() {
    let db = TestDb::new(Backend::Sqlite).await;
    let out = db.jobq(&["worker", "--test-kinds", "--metrics-bind", "localhost"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("worker.metrics_bind"), "{err}");
    assert!(err.contains("localhost"), "{err}");

    // A port already taken: the worker does not start without its metrics.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let address = taken.local_addr().expect("local address").to_string();
    let out = db
        .command(&["worker", "--test-kinds"])
        .env("JOBQ_WORKER_METRICS_BIND", &address)
        .output()
        .expect("run jobq");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot serve metrics on {address}")),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Queue-level figures from the database (the web process)

async fn queue_metrics_come_from_the_database(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let now = Utc::now();
    let minute = now
        .duration_trunc(chrono::Duration::minutes(1))
        .expect("truncate to the minute");

    // Two due jobs, the older waiting 90 s; one scheduled an hour out; a paused queue.
    let past = |s: i64| EnqueueOptions {
        run_at: Some(now - chrono::Duration::seconds(s)),
        ..EnqueueOptions::default()
    };
    enqueue_effect(&queue, past(90)).await;
    enqueue_effect(&queue, past(10)).await;
    enqueue_effect(
        &queue,
        EnqueueOptions {
            run_at: Some(now + chrono::Duration::hours(1)),
            ..EnqueueOptions::default()
        },
    )
    .await;
    queue
        .enqueue(&workers::testkit::Noop {}, EnqueueOptions::default())
        .await
        .expect("enqueue noop");
    queue
        .set_paused("bench", true, &AuditEntry::cli("pause", "bench"))
        .await
        .expect("pause bench");

    // One live worker.
    queue
        .driver()
        .heartbeat(&WorkerInfo {
            id: "metrics-test-worker".to_string(),
            host: "here".to_string(),
            pid: 1,
            queues: "test=1".to_string(),
            concurrency: 1,
            started_at: now,
            heartbeat_at: now,
        })
        .await
        .expect("heartbeat");

    // Outcomes: the last complete minute, half an hour ago, this minute, and too long ago.
    let stat = |ago: i64, kind: &str, outcome: &'static str, count: i64| {
        (
            StatKey {
                minute: minute - chrono::Duration::minutes(ago),
                queue: "test".to_string(),
                kind: kind.to_string(),
                outcome,
            },
            StatCount {
                count,
                duration_ms: count * 10,
            },
        )
    };
    queue
        .driver()
        .add_stats(&[
            stat(1, "test_effect", "completed", 5),
            stat(1, "test_fail", "completed", 2),
            stat(30, "test_fail", "failed", 3),
            stat(0, "test_fail", "retried", 4),
            stat(120, "test_effect", "completed", 100),
        ])
        .await
        .expect("add stats");

    let text = web::metrics::render_queue_metrics_at(
        &queue,
        Duration::from_secs(60),
        now,
        web::metrics::Format::Classic,
    )
    .await
    .expect("render queue metrics");
    let scrape = parse(&text);
    let check = |metric: &str, labels: &[(&str, &str)], want: f64| {
        assert_eq!(
            value(&scrape, metric, labels),
            Some(want),
            "{metric}{labels:?}:\n{text}"
        );
    };
    #[rustfmt::skip]
    let expected: [Expected; 13] = [
        ("jobq_queue_jobs",                 &[("queue", "test"), ("state", "available")],   2.0),
        ("jobq_queue_jobs",                 &[("queue", "test"), ("state", "scheduled")],   1.0),
        ("jobq_queue_jobs",                 &[("queue", "test"), ("state", "failed")],      0.0),
        ("jobq_queue_jobs",                 &[("queue", "bench"), ("state", "available")],  1.0),
        ("jobq_queue_jobs",                 &[("queue", "bench"), ("state", "completed")],  0.0),
        ("jobq_queue_paused",               &[("queue", "bench")],                          1.0),
        ("jobq_queue_paused",               &[("queue", "test")],                           0.0),
        ("jobq_workers_live",               &[],                                            1.0),
        ("jobq_queue_outcomes_last_minute", &[("queue", "test"), ("outcome", "completed")], 7.0),
        ("jobq_queue_outcomes_last_minute", &[("queue", "test"), ("outcome", "failed")],    0.0),
        ("jobq_queue_outcomes_last_hour",   &[("queue", "test"), ("outcome", "completed")], 7.0),
        ("jobq_queue_outcomes_last_hour",   &[("queue", "test"), ("outcome", "failed")],    3.0),
        ("jobq_queue_outcomes_last_hour",   &[("queue", "test"), ("outcome", "retried")],   4.0),
    ];
    for (metric, labels, want) in expected {
        check(metric, labels, want);
    }
    let age = value(
        &scrape,
        "jobq_queue_oldest_available_age_seconds",
        &[("queue", "test")],
    )
    .expect("the test queue's oldest age");
    assert!((90.0..150.0).contains(&age), "oldest age {age}:\n{text}");
    assert_promtool_accepts(&text, "the dashboard's /metrics");
    // The cumulative counters hold every outcome since the database was created, the two-hour
    // old minute included, and list the outcomes not seen yet at zero.
    #[rustfmt::skip]
    let totals: [Expected; 6] = [
        ("jobq_outcomes_total", &[("queue", "test"), ("kind", "test_effect"), ("outcome", "completed")], 105.0),
        ("jobq_outcomes_total", &[("queue", "test"), ("kind", "test_effect"), ("outcome", "failed")],      0.0),
        ("jobq_outcomes_total", &[("queue", "test"), ("kind", "test_fail"),   ("outcome", "completed")],   2.0),
        ("jobq_outcomes_total", &[("queue", "test"), ("kind", "test_fail"),   ("outcome", "failed")],      3.0),
        ("jobq_outcomes_total", &[("queue", "test"), ("kind", "test_fail"),   ("outcome", "retried")],     4.0),
        ("jobq_outcomes_total", &[("queue", "test"), ("kind", "test_fail"),   ("outcome", "cancelled")],   0.0),
    ];
    for (metric, labels, want) in totals {
        check(metric, labels, want);
    }

    // Served by the dashboard's router to admins only.
    let token = "metrics-test-token-0123456789";
    let options = web::WebOptions {
        bind: "127.0.0.1:0".parse().expect("address"),
        admins: vec![jobs::configuration::AdminToken {
            name: "prometheus".to_string(),
            token: token.to_string().into(),
        }],
        secure_cookie: false,
        worker_stale_after: Duration::from_secs(60),
        session_ttl: Duration::from_secs(3600),
        periodic: Vec::new(),
    };
    let dashboard = web::Dashboard::bind(queue.clone(), &options)
        .await
        .expect("bind the dashboard");
    let address = dashboard.local_addr().expect("local address").to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dashboard.serve(async move {
        let _ = stopped.await;
    }));
    let (status, _, _) = get(&address, "/metrics", None).await.expect("GET /metrics");
    assert_eq!(status, 401, "/metrics without a token");
    let (status, content_type, text) = get(&address, "/metrics", Some(token))
        .await
        .expect("GET /metrics");
    assert_eq!(status, 200, "{text}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert_promtool_accepts(&text, "the dashboard's /metrics");
    let (_, content_type, open_metrics) =
        get_accepting(&address, "/metrics", Some(token), Some(PROMETHEUS_ACCEPT))
            .await
            .expect("GET /metrics as Prometheus");
    assert!(
        content_type.starts_with("application/openmetrics-text")
            && open_metrics.ends_with("# EOF\n"),
        "{content_type}: {open_metrics}"
    );
    let served = parse(&text);
    assert_eq!(
        value(
            &served,
            "jobq_queue_jobs",
            &[("queue", "test"), ("state", "available")]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&served, "jobq_workers_live", &[]),
        Some(1.0),
        "{text}"
    );
    let _ = stop.send(());
    server
        .await
        .expect("dashboard task")
        .expect("dashboard stops cleanly");

    // Seventy minutes on, the worker's heartbeat is stale and the outcomes have aged out.
    let later = now + chrono::Duration::minutes(70);
    let text = web::metrics::render_queue_metrics_at(
        &queue,
        Duration::from_secs(60),
        later,
        web::metrics::Format::Classic,
    )
    .await
    .expect("render queue metrics");
    let scrape = parse(&text);
    assert_eq!(
        value(&scrape, "jobq_workers_live", &[]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(
            &scrape,
            "jobq_queue_outcomes_last_hour",
            &[("queue", "test"), ("outcome", "completed")]
        ),
        None,
        "{text}"
    );
    // Pruning the per-minute counts leaves the totals: a counter never goes down.
    queue
        .driver()
        .prune(now, later, 100)
        .await
        .expect("prune everything");
    assert!(
        queue
            .driver()
            .outcome_series(minute - chrono::Duration::hours(3))
            .await
            .expect("series")
            .is_empty()
    );
    let text = web::metrics::render_queue_metrics_at(
        &queue,
        Duration::from_secs(60),
        later,
        web::metrics::Format::Classic,
    )
    .await
    .expect("render queue metrics");
    let scrape = parse(&text);
    assert_eq!(
        value(
            &scrape,
            "jobq_outcomes_total",
            &[
                ("queue", "test"),
                ("kind", "test_effect"),
                ("outcome", "completed")
            ]
        ),
        Some(105.0),
        "{text}"
    );
}
