//! `jobq up --demo`, a newcomer's first run, from an empty directory: it starts its own dev
//! panel, fake chat APIs and worker, works through a few hundred jobs with the panel failing
//! some calls, and sums up what happened and where to look.

mod support;

use std::process::Command;

use support::*;

#[test]
fn the_demo_runs_to_a_summary_from_an_empty_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_jobq"))
        .args(["up", "--demo"])
        .current_dir(dir.path())
        .env_remove("JOBQ_DATABASE_URL")
        .env_remove("JOBQ_CONFIG")
        .output()
        .expect("run jobq up --demo");
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(
        text.contains("what happened:"),
        "settled, not cut short:\n{text}"
    );
    // Every provision but the one of an unknown plan made one client.
    assert!(text.contains("provision_client     done  239"), "{text}");
    assert!(text.contains("panel clients           239"), "{text}");
    for expected in [
        "plan \"platinum\" is not configured",
        "bot was blocked by the user",
        "Cannot send messages to this user",
        "Unknown Channel",
        "panel answered HTTP 502",
        "transcripts stored      11",
        "jobs list --state failed",
    ] {
        assert!(text.contains(expected), "{expected}:\n{text}");
    }
    let retried = text
        .lines()
        .find(|l| l.trim_start().starts_with("provision_client"))
        .expect("the provision line");
    assert!(
        !retried.contains("retried   0"),
        "the panel's faults were retried: {retried}"
    );
    assert!(dir.path().join("data/demo/jobq.db").exists());
    // A summary that does not confuse: follow-ups explained, no doubled kind, no cut words,
    // a log file without colour codes.
    assert!(text.contains("handlers enqueue follow-ups"), "{text}");
    assert!(!text.contains("send_dm: send_dm:"), "{text}");
    let log = std::fs::read_to_string(dir.path().join("data/demo/worker.log")).expect("the log");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI codes in the demo's log:\n{log}"
    );
    let retries: Vec<&str> = log.lines().filter(|l| l.contains("will retry")).collect();
    assert!(
        !retries.is_empty(),
        "the panel's faults were logged:\n{log}"
    );
    for line in retries {
        assert!(
            line.contains("job{id="),
            "a warning without its job: {line}"
        );
    }
    assert!(
        !log.contains("FROM jobq_jobs"),
        "SQL text in the demo's log:\n{log}"
    );
    // The commands it suggests run as printed: `jobq` is not on this test's PATH.
    let suggested = text
        .lines()
        .find(|l| l.contains("jobs list --state failed"))
        .expect("a command to look further");
    let words: Vec<&str> = suggested.split_whitespace().collect();
    let out = Command::new(words[0])
        .args(&words[1..])
        .current_dir(dir.path())
        .env_remove("JOBQ_DATABASE_URL")
        .env_remove("JOBQ_CONFIG")
        .output()
        .expect("run the suggested command");
    assert!(out.status.success(), "{suggested}: {}", stderr(&out));
}
