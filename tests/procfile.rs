//! The shipped Procfile under a real Procfile runner, honcho (which stops every process when one
//! exits): `honcho start -c worker=2` on a database not migrated yet, with no bot token, runs
//! the release step, two workers (each serving metrics on its own `$PORT`) and the dashboard;
//! the bots say once that they have no token and stay up; then it all stops cleanly.
//! honcho comes from `.venv-honcho/` (scripts/test installs it) or `JOBQ_TEST_HONCHO`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use support::*;

const ADMIN_TOKEN: &str = "admin-token-for-the-procfile-test-0123";

on_both_backends!(honcho_runs_the_shipped_procfile_with_two_workers_and_the_dashboard);

/// honcho, or a failure saying how to get it (the test never skips).
fn honcho() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = std::env::var_os("JOBQ_TEST_HONCHO")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join(".venv-honcho/bin/honcho"));
    assert!(
        found.is_file(),
        "the Procfile test needs honcho at {}: run scripts/test (it installs honcho into \
         .venv-honcho/), or `python3 -m venv .venv-honcho && .venv-honcho/bin/pip install \
         honcho==2.0.0`, or set JOBQ_TEST_HONCHO",
        found.display()
    );
    found
}

/// A base port for honcho's `$PORT`s (base + 100 per process type + 1 per instance), with the
/// ones this test reads free.
fn base_port() -> u16 {
    loop {
        let base = fastrand::u16(20_000..40_000) / 100 * 100;
        let free = [base, base + 100, base + 101, base + 200]
            .iter()
            .all(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok());
        if free {
            return base;
        }
    }
}

/// honcho, killed with its processes if the test fails before stopping it.
struct Honcho {
    child: Child,
    log: PathBuf,
}

impl Honcho {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Honcho {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.child.id(), "INT");
            let _ = self.child.wait();
        }
    }
}

async fn honcho_runs_the_shipped_procfile_with_two_workers_and_the_dashboard(backend: Backend) {
    let db = TestDb::unmigrated(backend, "").await;
    let dir = db.dir.path();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(repo.join("Procfile"), dir.join("Procfile")).expect("copy the Procfile");
    let path = path_with_jobq();
    let base = base_port();
    let log = dir.join("honcho.log");
    let child = Command::new(honcho())
        .args(["start", "-c", "worker=2", "-p", &base.to_string()])
        .current_dir(dir)
        .env_clear()
        .env("PATH", path)
        .env("JOBQ_DATABASE_URL", &db.url)
        .env("JOBQ_CONFIG", &db.config)
        .env("JOBQ_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).expect("log file"))
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("honcho.err")).expect("err"),
        ))
        .spawn()
        .expect("start honcho");
    let mut honcho = Honcho { child, log };

    // The release step migrates the database; both workers then register.
    let settings = db.settings();
    let queue = eventually_showing(
        secs(30),
        "the release step to migrate",
        || honcho.log(),
        || {
            let settings = settings.clone();
            async move { jobs::Queue::open(&settings.database).await.ok() }
        },
    )
    .await;
    eventually_showing(
        secs(30),
        "two live workers",
        || honcho.log(),
        || async {
            let live = queue.driver().workers().await.ok()?;
            (live.len() == 2).then_some(())
        },
    )
    .await;
    let http = reqwest::Client::new();
    let answers = |url: String, token: Option<&'static str>| {
        let http = http.clone();
        async move {
            let request = http.get(&url);
            let request = match token {
                Some(token) => request.bearer_auth(token),
                None => request,
            };
            let response = request.send().await.ok()?;
            response.status().is_success().then_some(())
        }
    };
    let dashboard = format!("http://127.0.0.1:{}/api/overview", base + 200);
    eventually_showing(
        secs(30),
        "the dashboard to answer",
        || honcho.log(),
        || answers(dashboard.clone(), Some(ADMIN_TOKEN)),
    )
    .await;
    for port in [base + 100, base + 101] {
        let metrics = format!("http://127.0.0.1:{port}/metrics");
        eventually_showing(
            secs(30),
            &metrics,
            || honcho.log(),
            || answers(metrics.clone(), None),
        )
        .await;
    }
    let said = eventually_showing(
        secs(30),
        "both bots to say why they idle",
        || honcho.log(),
        || {
            let log = honcho.log();
            let both = log.contains("telegram bot not started: JOBQ_TELEGRAM_TOKEN is not set")
                && log.contains("discord bot not started: JOBQ_DISCORD_TOKEN is not set");
            std::future::ready(both.then_some(log))
        },
    )
    .await;
    for bot in ["telegram", "discord"] {
        let lines = said
            .lines()
            .filter(|l| l.contains(&format!("{bot} bot not started")))
            .count();
        assert_eq!(lines, 1, "one line from the {bot} bot:\n{said}");
    }
    assert!(!said.contains("stopped (rc="), "a process exited:\n{said}");

    signal(honcho.child.id(), "TERM");
    let child = &mut honcho.child;
    eventually_showing(secs(30), "honcho to stop", String::new, || {
        std::future::ready(child.try_wait().expect("wait for honcho"))
    })
    .await;
    let log = honcho.log();
    let stopped: Vec<&str> = log.lines().filter(|l| l.contains("stopped (rc=")).collect();
    assert_eq!(
        stopped.len(),
        6,
        "release, two workers, web, two bots:\n{log}"
    );
    assert!(
        stopped.iter().all(|l| l.contains("stopped (rc=0)")),
        "each stopped cleanly:\n{log}"
    );
    let left = queue.driver().workers().await.expect("workers");
    assert!(left.is_empty(), "the workers deregistered: {left:?}\n{log}");
}
