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
}
