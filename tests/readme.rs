//! README.md's shell blocks: each one parses as a shell script, and those marked runnable
//! (```` ```sh runnable ````) are run in order, as written, by bash with `jobq` on the PATH,
//! against a scratch database (an SQLite file in a temporary folder, or a fresh PostgreSQL
//! database), each failing the test if any command in it fails.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use support::*;

on_both_backends!(the_readmes_runnable_blocks_run_as_written);

/// A fenced block: its info string and its text.
struct Block {
    info: String,
    text: String,
    line: usize,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut open: Option<Block> = None;
    for (number, line) in markdown.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.trim().to_string(),
                    text: String::new(),
                    line: number + 1,
                })
            }
            (Some(_), Some(_)) => found.extend(open.take()),
            (Some(block), None) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "README.md has an unclosed code block");
    found
}

/// Fails the test, showing the block and what bash said, unless bash succeeded.
fn assert_ran(block: &Block, out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "README.md line {}: the block {what} ({}):\n{}\nstdout:\n{}\nstderr:\n{}",
        block.line,
        out.status,
        block.text,
        stdout(out),
        stderr(out)
    );
}

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(path).expect("read README.md")
}

#[test]
fn every_shell_block_of_the_readme_parses() {
    let shell: Vec<Block> = blocks(&readme())
        .into_iter()
        .filter(|b| b.info.split_whitespace().next() == Some("sh"))
        .collect();
    assert!(shell.len() >= 5, "the README's shell blocks were not found");
    for block in shell {
        let out = Command::new("bash")
            .args(["-n", "-c", &block.text])
            .output()
            .expect("run bash -n");
        assert_ran(&block, &out, "is not a valid shell script");
    }
}

async fn the_readmes_runnable_blocks_run_as_written(backend: Backend) {
    let db = TestDb::unmigrated(backend, "").await;
    let runnable: Vec<Block> = blocks(&readme())
        .into_iter()
        .filter(|b| b.info == "sh runnable")
        .collect();
    assert!(
        runnable.len() >= 3,
        "the README's runnable blocks were not found"
    );
    let path = path_with_jobq();
    let work = db.dir.path().join("work");
    std::fs::create_dir(&work).expect("a working folder");
    for block in runnable {
        // As a user would have it: the database chosen, nothing else of the test's set-up.
        let out = Command::new("bash")
            .args(["-e", "-o", "pipefail", "-c", &block.text])
            .current_dir(&work)
            .env_clear()
            .env("PATH", &path)
            .env("HOME", db.dir.path())
            .env("USER", "readme")
            .env("JOBQ_DATABASE_URL", &db.url)
            .stdin(Stdio::null())
            .output()
            .expect("run bash");
        assert_ran(&block, &out, "failed");
    }
    // The blocks did what they say: job 2 was cancelled, retried and discarded; the messages
    // queue was paused and resumed.
    let queue = db.queue().await;
    let log = queue.driver().audit_log(20).await.expect("audit log");
    let actions: Vec<&str> = log.iter().rev().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["cancel", "retry", "discard", "pause", "resume"],
        "{log:?}"
    );
}
