//! A panel's `concurrency` and `requests_per_second` hold across worker processes together:
//! two `jobq worker` processes provisioning against one slow fake panel never have more calls
//! in flight than allowed, nor closer together than the rate allows, and every job completes.

mod support;

use std::time::Duration;

use jobs::JobState;
use support::panel::*;
use support::*;

on_both_backends!(two_workers_share_one_panels_limits);

async fn two_workers_share_one_panels_limits(backend: Backend) {
    let panel = fake().await;
    panel.set_latency(Duration::from_millis(60));
    let db = db_with_panel(backend, &panel, "").await;
    // The panel entry's limits: one call at a time, five a second.
    let config = std::fs::read_to_string(&db.config).expect("config");
    let config = config.replace(
        "timeout = \"5s\"",
        "timeout = \"5s\"\nconcurrency = 1\nrequests_per_second = 5",
    );
    std::fs::write(&db.config, config).expect("config");
    let queue = db.queue().await;
    let first = spawn_panel_worker(&db);
    let second = spawn_panel_worker(&db);
    // Both fetch loops run, and the six jobs become available at once (the queue paused while
    // they are enqueued): whichever worker claims first takes four, the other the rest.
    db.wait_for_workers(2).await;
    let paused = db.jobq(&["queues", "pause", "panel"]);
    assert!(paused.status.success(), "{}", stderr(&paused));
    let ids: Vec<i64> = (0..6)
        .map(|i| enqueue(&db, &payload("main", "basic"), Some(&format!("order-{i}"))))
        .collect();
    let resumed = db.jobq(&["queues", "resume", "panel"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let mut ran_by = std::collections::BTreeSet::new();
    for id in ids {
        let job = wait_state(&db, &queue, id, JobState::Completed, &first).await;
        ran_by.extend(job.attempted_by);
    }
    // Each worker holds four slots and each job takes a second or more under these limits:
    // both processes ran jobs, so the limits held across processes, not within one.
    assert_eq!(ran_by.len(), 2, "both workers ran jobs: {ran_by:?}");
    assert_eq!(panel.clients().len(), 6, "one client per order");
    assert_eq!(
        panel.max_in_flight(),
        1,
        "one call at a time across both workers"
    );
    let times = panel.request_times();
    assert!(times.len() >= 6 * 3, "{} calls", times.len());
    // 5/s spaces the turns 200 ms apart. Arrival is a little later than the turn (sending
    // takes a varying few milliseconds, more on a new connection), so look at the rate over
    // time, not at single gaps: the whole run takes at least its turns' time, and no second
    // holds more than the five turns plus one late arrival.
    let span = *times.last().expect("calls") - times[0];
    let turns = Duration::from_millis(200) * (times.len() as u32 - 1);
    assert!(
        span >= turns.mul_f64(0.95),
        "{} calls in {span:?}",
        times.len()
    );
    let busiest = times
        .iter()
        .map(|start| {
            times
                .iter()
                .filter(|t| **t >= *start && **t - *start < Duration::from_secs(1))
                .count()
        })
        .max()
        .expect("calls");
    assert!(
        busiest <= 6,
        "{busiest} calls within one second\nfirst worker:\n{}\nsecond worker:\n{}",
        first.log_text(),
        second.log_text()
    );
}
