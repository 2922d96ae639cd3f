//! `jobq` processes that run while a test talks to them (a worker, a bot, the dashboard):
//! [`Spawn`] says how one starts (its subcommand, environment, config, log), [`Process`] is one
//! running, killed when dropped.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::{TestDb, eventually_showing};

/// How the log of a process is shown when a test fails: its end, where the trouble usually is.
const SHOWN_LOG: usize = 20_000;

/// A `jobq` command to start against a test database: made by [`TestDb::spawn`].
pub struct Spawn {
    command: Command,
    /// Standard error: every `jobq` command logs there.
    log: PathBuf,
    /// Standard output, when it is kept (see [`Spawn::capture_stdout`]).
    out: Option<PathBuf>,
}

impl Spawn {
    pub(super) fn new(db: &TestDb, args: &[&str]) -> Spawn {
        let name = args
            .iter()
            .find(|a| !a.starts_with('-'))
            .copied()
            .unwrap_or("jobq");
        let log = db
            .dir
            .path()
            .join(format!("{name}-{:08x}.log", fastrand::u32(..)));
        Spawn {
            command: db.command(args),
            log,
            out: None,
        }
    }

    /// More arguments after those it was made with.
    pub fn args(mut self, args: &[&str]) -> Spawn {
        self.command.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Spawn {
        self.command.env(key, value);
        self
    }

    pub fn envs<'a>(mut self, vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Spawn {
        self.command.envs(vars);
        self
    }

    /// Reads this config file instead of the test database's.
    pub fn config(self, path: &Path) -> Spawn {
        self.env("JOBQ_CONFIG", path)
    }

    /// Logs at this level (`JOBQ_LOG_FILTER`), instead of the test config's `info`.
    pub fn log_filter(self, filter: &str) -> Spawn {
        self.env("JOBQ_LOG_FILTER", filter)
    }

    /// Keeps standard output in a file, for [`Process::stdout_text`] and [`Process::printed`].
    pub fn capture_stdout(mut self) -> Spawn {
        let mut out = self.log.clone();
        out.set_extension("out");
        self.out = Some(out);
        self
    }

    pub fn start(mut self) -> Process {
        let stdout = match &self.out {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("stdout file")),
            None => Stdio::null(),
        };
        let stderr = std::fs::File::create(&self.log).expect("log file");
        let child = self
            .command
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn jobq");
        Process {
            child,
            log: self.log,
            out: self.out,
            started: Instant::now(),
        }
    }
}

/// A running `jobq` process; killed (and reaped) when dropped.
pub struct Process {
    child: Child,
    log: PathBuf,
    out: Option<PathBuf>,
    started: Instant,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash would: nothing runs after it.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: the graceful stop.
    pub fn terminate(&self) {
        super::signal(self.pid(), "TERM");
    }

    /// Waits for the process to exit (after a signal, or on its own); fails the test, showing
    /// the log, if it still runs after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let log = &self.log;
        let child = &mut self.child;
        eventually_showing(
            within,
            "the process to exit",
            || format!("log:\n{}", shown(log)),
            || std::future::ready(child.try_wait().expect("wait for the process")),
        )
        .await
    }

    /// Runs it to the end, as [`Command::output`] does, failing the test if that takes longer
    /// than `within` (a command that should refuse to start must not run on instead); also how
    /// long it ran. Needs [`Spawn::capture_stdout`].
    pub async fn output_within(mut self, within: Duration) -> (Output, Duration) {
        let status = self.wait_exit(within).await;
        let ran = self.started.elapsed();
        let out = self
            .out
            .as_ref()
            .expect("a process started with capture_stdout");
        let output = Output {
            status,
            stdout: std::fs::read(out).expect("read stdout"),
            stderr: std::fs::read(&self.log).expect("read stderr"),
        };
        (output, ran)
    }

    /// Fails the test, showing the log, if the process has exited.
    pub fn assert_alive(&mut self) {
        let status = self.child.try_wait().expect("wait for the process");
        assert!(
            status.is_none(),
            "the process exited ({status:?}); log:\n{}",
            self.log_text()
        );
    }

    /// Everything it logged so far (standard error).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The end of its log, as a failing test shows it.
    pub fn shown_log(&self) -> String {
        shown(&self.log)
    }

    /// Everything it printed so far; empty unless started with [`Spawn::capture_stdout`].
    pub fn stdout_text(&self) -> String {
        self.out
            .as_ref()
            .and_then(|out| std::fs::read_to_string(out).ok())
            .unwrap_or_default()
    }

    /// Waits for a line of standard output starting with `prefix`: the rest of that line.
    pub async fn printed(&self, prefix: &str, within: Duration) -> String {
        eventually_showing(
            within,
            &format!("a line starting {prefix:?}"),
            || {
                format!(
                    "printed:\n{}\nlog:\n{}",
                    self.stdout_text(),
                    self.shown_log()
                )
            },
            || async {
                self.stdout_text()
                    .lines()
                    .find_map(|l| l.strip_prefix(prefix).map(str::to_owned))
            },
        )
        .await
    }

    /// Where a worker started with `--metrics-bind ADDR:0` serves its metrics (`ADDR:PORT`), once
    /// it has said so in its log.
    pub async fn metrics_address(&self) -> String {
        const SAYS: &str = "serving metrics at http://";
        eventually_showing(
            Duration::from_secs(15),
            "the metrics address in the log",
            || format!("log:\n{}", self.shown_log()),
            || async {
                let log = self.log_text();
                let rest = &log[log.find(SAYS)? + SAYS.len()..];
                Some(rest[..rest.find("/metrics")?].to_string())
            },
        )
        .await
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// The logs of `processes`, for a failure message.
pub fn logs(processes: &[&Process]) -> String {
    processes
        .iter()
        .map(|p| p.shown_log())
        .collect::<Vec<_>>()
        .join("\n----\n")
}

fn shown(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut start = text.len().saturating_sub(SHOWN_LOG);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}
