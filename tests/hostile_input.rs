//! Hostile and garbage input through the command line: a refused repair writes nothing,
//! `config check` refuses what a worker would refuse at start (and patterned keys), and no
//! credential given in a URL setting is ever printed.

mod support;

use support::*;

on_both_backends!(a_refused_repair_writes_nothing);

async fn a_refused_repair_writes_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let done = db.enqueue("test_effect", "{}", &[]);
    let mut worker = db.spawn_worker(&[]);
    db.wait_for_state(done, jobs::JobState::Completed).await;
    worker.kill_hard();
    let audited = || async { queue.driver().audit_log(100).await.expect("audit log") };
    let before = audited().await.len();
    let refused: [&[&str]; 6] = [
        &["jobs", "retry", "999999"],
        &["jobs", "discard", "999999"],
        &["jobs", "cancel", "999999"],
        &["jobs", "retry", "9223372036854775807"],
        // A completed job cannot be cancelled or discarded.
        &["jobs", "cancel", &done.to_string()],
        &["jobs", "discard", &done.to_string()],
    ];
    for args in refused {
        let out = db.jobq(args);
        assert!(!out.status.success(), "{args:?} should be refused");
    }
    assert_eq!(
        audited().await.len(),
        before,
        "a refused repair left an audit row"
    );
    // A repair that changes a job is still audited.
    let later = db.enqueue("test_effect", "{}", &["--at", "2999-01-01T00:00:00Z"]);
    db.jobq_ok(&["jobs", "cancel", &later.to_string()]);
    assert_eq!(audited().await.len(), before + 1);
}

fn config_check(db: &TestDb, env: &[(&str, &str)]) -> std::process::Output {
    db.command(&["--json", "config", "check"])
        .env_remove("JOBQ_SECRET_KEY")
        .envs(env.iter().copied())
        .output()
        .expect("run jobq")
}

fn failing_check(out: &std::process::Output, what: &str) -> String {
    assert!(
        !out.status.success(),
        "config check passed: {}",
        stdout(out)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout(out)).expect("json");
    let check = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["what"].as_str().is_some_and(|w| w.starts_with(what)))
        .unwrap_or_else(|| panic!("no {what} check: {report}"))
        .clone();
    assert_eq!(check["status"], "error", "{check}");
    check["detail"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_refuses_what_a_worker_refuses() {
    // (config added to the test's, environment, the check that fails, what it says)
    let periodic = |name: &str, kind: &str, payload: &str| {
        format!(
            "[[periodic]]\nname = \"{name}\"\nkind = \"{kind}\"\nevery = \"1h\"\npayload = {payload}\n"
        )
    };
    let cases = [
        (
            periodic("nightly", "no_such_kind", "{}"),
            None,
            "periodic jobs",
            "no_such_kind",
        ),
        (
            periodic("dm", "send_dm", "{ text = 5 }"),
            None,
            "periodic jobs",
            "dm",
        ),
        (
            periodic("sync", "sync_usage", "{ panel = \"ghost\" }"),
            None,
            "periodic jobs",
            "ghost",
        ),
        (
            String::new(),
            Some(("JOBQ_LOG_FILTER", "[[[")),
            "log filter",
            "log.filter",
        ),
    ];
    for (config, env, what, says) in cases {
        let db = TestDb::with_config(Backend::Sqlite, &config).await;
        let env: Vec<(&str, &str)> = env.into_iter().collect();
        let detail = failing_check(&config_check(&db, &env), what);
        assert!(detail.contains(says), "{config}: {detail}");
        // The worker refuses the same configuration, at once.
        let (out, _) = db
            .spawn(&["worker", "--queues", "test"])
            .envs(env.iter().copied())
            .capture_stdout()
            .start()
            .output_within(secs(30))
            .await;
        assert!(
            !out.status.success(),
            "{config} {env:?}: the worker started"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_refuses_patterned_secret_keys() {
    let db = TestDb::new(Backend::Sqlite).await;
    let hex = |bytes: Vec<u8>| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    let counting: Vec<u8> = (0..32).collect();
    let twice: Vec<u8> = (0..16).chain(0..16).collect();
    for key in [hex(counting), hex(twice)] {
        let out = config_check(&db, &[("JOBQ_SECRET_KEY", &key)]);
        let detail = failing_check(&out, "secret key");
        assert!(detail.contains("too weak"), "{detail}");
        assert!(!stdout(&out).contains(&key), "the key was printed");
    }
}
