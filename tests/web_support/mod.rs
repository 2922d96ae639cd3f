//! A real `jobq web` process on a random port, for the dashboard's HTTP and browser tests.
#![allow(dead_code)]

use std::time::Duration;

use crate::support::{Process, TestDb};

/// The single admin's token (`JOBQ_ADMIN_TOKEN`, acting as `admin`).
pub const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";
/// Alice's token, from the variable her `[[admins]]` entry names.
pub const ALICE_TOKEN: &str = "alice-token-0123456789abcdef";

/// The config the dashboard tests add: one named admin besides `JOBQ_ADMIN_TOKEN`.
pub const ADMINS_CONFIG: &str = "[[admins]]\nname = \"alice\"\ntoken_env = \"JOBQ_TOKEN_ALICE\"\n";

pub struct WebServer {
    pub process: Process,
    pub base: String,
}

impl WebServer {
    /// `jobq web --bind 127.0.0.1:0` with both admins' tokens, once it says its address.
    pub async fn start(db: &TestDb) -> WebServer {
        let process = db
            .spawn(&["web", "--bind", "127.0.0.1:0"])
            .env("JOBQ_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("JOBQ_TOKEN_ALICE", ALICE_TOKEN)
            .capture_stdout()
            .start();
        let address = process
            .printed("dashboard listening on ", Duration::from_secs(30))
            .await;
        WebServer {
            base: address.trim_end_matches('/').to_string(),
            process,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// The login form posted from `client` with `token`.
    pub async fn post_login(&self, client: &reqwest::Client, token: &str) -> reqwest::Response {
        client
            .post(self.url("/login"))
            .form(&[("token", token), ("next", "/")])
            .send()
            .await
            .expect("POST /login")
    }

    /// `GET path` from `client`, presenting `token` as a Bearer token.
    pub async fn get_bearer(
        &self,
        client: &reqwest::Client,
        path: &str,
        token: impl std::fmt::Display,
    ) -> reqwest::Response {
        client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET")
    }
}

/// Whether queue `name` is paused.
pub async fn is_paused(queue: &jobs::Queue, name: &str) -> bool {
    paused_queues(queue).await.iter().any(|q| q == name)
}

/// The names of the paused queues.
pub async fn paused_queues(queue: &jobs::Queue) -> Vec<String> {
    let queues = queue.driver().queues().await.expect("queues");
    queues
        .into_iter()
        .filter(|q| q.paused)
        .map(|q| q.name)
        .collect()
}
