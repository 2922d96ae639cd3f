//! A real `jobq web` process on a random port, for the dashboard's HTTP and browser tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::TestDb;

/// The single admin's token (`JOBQ_ADMIN_TOKEN`, acting as `admin`).
pub const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";
/// Alice's token, from the variable her `[[admins]]` entry names.
pub const ALICE_TOKEN: &str = "alice-token-0123456789abcdef";

/// The config the dashboard tests add: one named admin besides `JOBQ_ADMIN_TOKEN`.
pub const ADMINS_CONFIG: &str = "[[admins]]\nname = \"alice\"\ntoken_env = \"JOBQ_TOKEN_ALICE\"\n";

pub struct WebServer {
    pub child: Child,
    pub base: String,
    pub log: std::path::PathBuf,
}

impl WebServer {
    /// `jobq web --bind 127.0.0.1:0` with both admins' tokens; waits for its address.
    pub fn start(db: &TestDb) -> WebServer {
        let log = db.dir.path().join(format!("web-{}.log", fastrand::u32(..)));
        let mut child = db
            .command(&["web", "--bind", "127.0.0.1:0"])
            .env("JOBQ_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("JOBQ_TOKEN_ALICE", ALICE_TOKEN)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("web log"))
            .spawn()
            .expect("spawn jobq web");
        let stdout = child.stdout.take().expect("web stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line
                    .strip_prefix("dashboard listening on ")
                    .map(|a| a.trim_end_matches('/').to_string())
                {
                    let _ = tx.send(addr);
                }
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "jobq web did not print its address within 30s; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        WebServer { child, base, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
