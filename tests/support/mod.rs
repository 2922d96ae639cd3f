//! Shared set-up for the integration tests: a fresh database per test on either backend, a
//! config file with short intervals, and `jobq` processes to run against it.
#![allow(dead_code)]

pub mod panel;
mod process;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use jobs::configuration::Settings;
use jobs::driver::{JobFilter, JobRecord};
use jobs::{JobState, Queue};

pub use process::{Process, Spawn, logs};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one test per backend from an `async fn(Backend)` of the same name.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
    };
}

/// The PostgreSQL server the suite uses; scripts/test finds or starts one.
pub fn postgres_server_url() -> String {
    std::env::var("JOBQ_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Short intervals so tests about leases, retries and polling finish in seconds.
pub const TEST_CONFIG: &str = r#"
[worker]
concurrency = 4
lease = "2s"
poll_interval = "200ms"
shutdown_grace = "10s"
completion_interval = "5ms"
heartbeat_interval = "500ms"

[maintenance]
interval = "200ms"

[log]
filter = "info"
"#;

/// A `[[periodic]]` entry of the config: `test_effect` every `every`, named `name`.
pub fn periodic_effect(name: &str, every: &str) -> String {
    format!("\n[[periodic]]\nname = \"{name}\"\nkind = \"test_effect\"\nevery = \"{every}\"\n")
}

pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    drop_database: Option<String>,
}

impl TestDb {
    /// A fresh, migrated database.
    pub async fn new(backend: Backend) -> TestDb {
        Self::with_config(backend, "").await
    }

    /// A fresh, migrated database, with `extra` appended to the test config.
    pub async fn with_config(backend: Backend, extra: &str) -> TestDb {
        let db = Self::unmigrated(backend, extra).await;
        let out = db.jobq(&["migrate"]);
        assert!(out.status.success(), "migrate failed: {}", stderr(&out));
        db
    }

    pub async fn unmigrated(backend: Backend, extra: &str) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("jobq.toml");
        std::fs::write(&config, format!("{TEST_CONFIG}\n{extra}")).expect("write config");
        let (url, drop_database) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("jobq.db").display()),
                None,
            ),
            Backend::Postgres => {
                let name = format!("jobq_test_{:016x}", fastrand::u64(..));
                let server = postgres_server_url();
                let admin = sqlx::PgPool::connect(&server).await.unwrap_or_else(|e| {
                    panic!(
                        "the PostgreSQL suite needs a server: {server} answered {e}. \
                         Run scripts/test, which finds or starts one."
                    )
                });
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .expect("create test database");
                admin.close().await;
                (replace_database(&server, &name), Some(name))
            }
        };
        TestDb {
            backend,
            url,
            dir,
            config,
            drop_database,
        }
    }

    pub fn settings(&self) -> Settings {
        Settings::load(Some(&self.config), &[("database.url", self.url.clone())])
            .expect("test settings load")
    }

    pub async fn queue(&self) -> Queue {
        Queue::open(&self.settings().database)
            .await
            .expect("open the test database")
    }

    /// `jobq ARGS` against this database, run to completion.
    pub fn jobq(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run jobq")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_jobq"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("USER", "test-admin")
            .env("JOBQ_DATABASE_URL", &self.url)
            .env("JOBQ_CONFIG", &self.config)
            .stdin(Stdio::null());
        command
    }

    /// `jobq ARGS` as a process that runs while the test goes on; see [`Spawn`].
    pub fn spawn(&self, args: &[&str]) -> Spawn {
        Spawn::new(self, args)
    }

    /// A worker of the test kinds on queue `test`, to start.
    pub fn test_worker(&self) -> Spawn {
        self.spawn(&["worker", "--test-kinds", "--queues", "test"])
    }

    /// [`TestDb::test_worker`] with `extra_args`, started.
    pub fn spawn_worker(&self, extra_args: &[&str]) -> Process {
        self.test_worker().args(extra_args).start()
    }

    /// `jobq ARGS`, which must succeed.
    pub fn jobq_ok(&self, args: &[&str]) -> Output {
        let out = self.jobq(args);
        assert!(
            out.status.success(),
            "jobq {args:?} failed: {}{}",
            stdout(&out),
            stderr(&out)
        );
        out
    }

    /// `jobq --json enqueue KIND PAYLOAD EXTRA...`: the new job's id.
    pub fn enqueue(&self, kind: &str, payload: &str, extra: &[&str]) -> i64 {
        let mut args = vec!["--json", "enqueue", kind, payload];
        args.extend_from_slice(extra);
        let out = json(&self.jobq(&args));
        assert_eq!(out["created"], true, "enqueue {kind} {payload}: {out}");
        out["id"].as_i64().expect("enqueue prints an id")
    }

    /// Waits until `n` worker processes have registered (each fetch loop is running).
    pub async fn wait_for_workers(&self, n: usize) {
        let queue = self.queue().await;
        eventually(secs(30), &format!("{n} live workers"), || async {
            let live = queue.driver().workers().await.ok()?;
            (live.len() >= n).then_some(())
        })
        .await;
    }

    /// Waits until job `id` is in `state`.
    pub async fn wait_for_state(&self, id: i64, state: jobs::JobState) {
        let queue = self.queue().await;
        self.wait_job(&queue, id, secs(30), &[], is(state)).await;
    }

    /// Waits up to `within` for job `id` to be as `want` says; a timeout shows the job and
    /// the logs of `processes`.
    pub async fn wait_job(
        &self,
        queue: &Queue,
        id: i64,
        within: Duration,
        processes: &[&Process],
        want: Want,
    ) -> JobRecord {
        let last = std::sync::Mutex::new(None);
        eventually_showing(
            within,
            &format!("job {id} to be {}", want.what),
            || {
                let job = last
                    .lock()
                    .map(|j| format!("{:#?}", *j))
                    .unwrap_or_default();
                format!("it is {job}\nlogs:\n{}", logs(processes))
            },
            || async {
                let job = self.job(queue, id).await;
                if (want.check)(&job) {
                    return Some(job);
                }
                if let Ok(mut last) = last.lock() {
                    *last = Some(job);
                }
                None
            },
        )
        .await
    }

    pub async fn job(&self, queue: &Queue, id: i64) -> JobRecord {
        queue
            .driver()
            .job(id)
            .await
            .expect("read job")
            .unwrap_or_else(|| panic!("job {id} not found"))
            .readable()
            .expect("a readable job")
    }

    /// How many times each job's effect happened (`test_effect`).
    pub async fn effects(&self, queue: &Queue) -> Vec<(i64, i64)> {
        const SQL: &str =
            "SELECT job_id, CAST(runs AS BIGINT) FROM jobq_test_effects ORDER BY job_id";
        if let Some(pool) = queue.db().postgres_pool() {
            sqlx::query_as(SQL)
                .fetch_all(pool)
                .await
                .unwrap_or_default()
        } else if let Some(pool) = queue.db().sqlite_pool() {
            sqlx::query_as(SQL)
                .fetch_all(pool)
                .await
                .unwrap_or_default()
        } else {
            Vec::new()
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.drop_database.take() {
            // Best effort, outside any runtime: psql is on every machine the suite runs on.
            let _ = Command::new("psql")
                .arg(postgres_server_url())
                .args([
                    "-qc",
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn replace_database(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (server, String::new()),
    };
    let prefix = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    format!("{prefix}/{name}{query}")
}

pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `jobq --json ...` output, parsed; panics with stderr when the command failed.
pub fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "jobq failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

/// Polls `check` until it returns `Some`, or fails the test after `within` with `what`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_showing(within, what, String::new, check).await
}

/// [`eventually`], adding `show()` to the failure (what was seen last, a process's log).
pub async fn eventually_showing<T, F, Fut>(
    within: Duration,
    what: &str,
    show: impl FnOnce() -> String,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}\n{}", show());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// What [`TestDb::wait_job`] waits for: [`is`] a state, or [`want`] anything else.
pub struct Want {
    what: String,
    check: Box<dyn Fn(&JobRecord) -> bool>,
}

/// The job is in `state`.
pub fn is(state: JobState) -> Want {
    want(&state.to_string(), move |job| job.state == state)
}

/// The job passes `check`; `what` names that in a failure.
pub fn want(what: &str, check: impl Fn(&JobRecord) -> bool + 'static) -> Want {
    Want {
        what: what.to_string(),
        check: Box::new(check),
    }
}

pub async fn all_jobs(queue: &Queue) -> Vec<JobRecord> {
    list_jobs(queue, JobFilter::default()).await
}

pub async fn jobs_of(queue: &Queue, kind: &str) -> Vec<JobRecord> {
    let filter = JobFilter {
        kind: Some(kind.to_string()),
        ..JobFilter::default()
    };
    list_jobs(queue, filter).await
}

async fn list_jobs(queue: &Queue, filter: JobFilter) -> Vec<JobRecord> {
    queue
        .driver()
        .list_jobs(&filter, 10_000)
        .await
        .expect("list jobs")
        .into_iter()
        .map(|listed| listed.readable().expect("a readable job"))
        .collect()
}

/// The PATH with the folder of the `jobq` under test first, as a user who installed it has it.
pub fn path_with_jobq() -> String {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_jobq"))
        .parent()
        .expect("the binary's folder");
    format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A local port nothing listens on (for a server the test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
