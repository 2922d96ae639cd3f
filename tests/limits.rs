//! Rate and concurrency limits shared through the database: two queue handles with their own
//! pools stand for two worker processes.

mod support;

use std::time::Duration;

use jobs::limits::{Limits, Rate};
use support::{Backend, TestDb};

on_both_backends!(
    turns_are_spaced_across_processes,
    a_burst_is_allowed_then_spaced,
    permits_are_shared_and_released,
    an_expired_permit_is_taken_over,
    idle_limits_are_forgotten_and_busy_ones_kept,
);

async fn two_handles(db: &TestDb) -> (Limits, Limits) {
    let a = Limits::new(&db.queue().await);
    let b = Limits::new(&db.queue().await);
    (a, b)
}

/// At 20/s, turns taken alternately from two handles are granted at least 50 ms apart, and a
/// refused take says how long to wait.
async fn turns_are_spaced_across_processes(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (a, b) = two_handles(&db).await;
    let rate = Rate::per_second(20.0);
    let mut granted = Vec::new();
    for i in 0..10 {
        let limits = if i % 2 == 0 { &a } else { &b };
        // The moment of asking is what the limit compares, so that is what is spaced.
        let asked = loop {
            let asked = std::time::Instant::now();
            match limits.try_take("chat:1", rate).await.expect("take") {
                None => break asked,
                Some(wait) => {
                    assert!(
                        wait <= Duration::from_millis(51),
                        "wait {wait:?} beyond one interval"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        };
        granted.push(asked);
    }
    for pair in granted.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(49),
            "two turns only {gap:?} apart"
        );
    }
    // Another name is not limited by this one.
    assert_eq!(a.try_take("chat:2", rate).await.expect("take"), None);
}

/// A burst of 3 is granted at once; the fourth request is refused with a wait.
async fn a_burst_is_allowed_then_spaced(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (a, b) = two_handles(&db).await;
    let rate = Rate::per_second(1.0).with_burst(3);
    assert_eq!(a.try_take("bot", rate).await.expect("take"), None);
    assert_eq!(b.try_take("bot", rate).await.expect("take"), None);
    assert_eq!(a.try_take("bot", rate).await.expect("take"), None);
    let wait = b.try_take("bot", rate).await.expect("take");
    let wait = wait.expect("the fourth turn of a burst of 3 at 1/s is refused");
    assert!(
        wait > Duration::from_millis(500) && wait <= Duration::from_secs(1),
        "{wait:?}"
    );
    let refused = b
        .take_within("bot", rate, Duration::from_millis(100))
        .await
        .expect("take");
    assert!(
        refused.is_err(),
        "a turn a second away is not granted within 100 ms"
    );
}

/// Two permits of "panel:main" across both handles: the third waits for a release.
async fn permits_are_shared_and_released(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (a, b) = two_handles(&db).await;
    let hold = Duration::from_secs(60);
    let first = a.try_acquire("panel:main", 2, hold).await.expect("acquire");
    let second = b.try_acquire("panel:main", 2, hold).await.expect("acquire");
    let (first, second) = (first.expect("first permit"), second.expect("second permit"));
    assert_eq!(a.held("panel:main").await.expect("held"), 2);
    assert!(
        a.try_acquire("panel:main", 2, hold)
            .await
            .expect("acquire")
            .is_none()
    );
    first.release().await.expect("release");
    let third = b
        .acquire_within("panel:main", 2, hold, Duration::from_secs(5))
        .await;
    let third = third.expect("acquire").expect("a released permit is taken");
    assert_eq!(a.held("panel:main").await.expect("held"), 2);
    // A permit dropped without release is released in the background.
    drop(third);
    support::eventually(
        Duration::from_secs(5),
        "dropped permit released",
        || async { (a.held("panel:main").await.expect("held") == 1).then_some(()) },
    )
    .await;
    second.release().await.expect("release");
    assert_eq!(a.held("panel:main").await.expect("held"), 0);
}

/// A permit whose holder died (never released) is free once its hold expires.
async fn an_expired_permit_is_taken_over(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (a, b) = two_handles(&db).await;
    let permit = a
        .try_acquire("panel:x", 1, Duration::from_millis(300))
        .await
        .expect("acquire")
        .expect("permit");
    std::mem::forget(permit); // as if the process died holding it
    assert!(
        b.try_acquire("panel:x", 1, Duration::from_secs(60))
            .await
            .expect("acquire")
            .is_none()
    );
    let taken = b
        .acquire_within(
            "panel:x",
            1,
            Duration::from_secs(60),
            Duration::from_secs(5),
        )
        .await
        .expect("acquire");
    assert!(taken.is_some(), "the expired permit is taken over");
}

/// Pruning forgets rows idle past the cut-off and keeps the ones in use.
async fn idle_limits_are_forgotten_and_busy_ones_kept(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (a, _) = two_handles(&db).await;
    let hold = Duration::from_millis(50);
    assert_eq!(
        a.try_take("chat:idle", Rate::per_second(1000.0))
            .await
            .expect("take"),
        None
    );
    let idle = a
        .try_acquire("panel:idle", 1, hold)
        .await
        .expect("acquire")
        .expect("permit");
    idle.release().await.expect("release");
    let held = a
        .try_acquire("panel:busy", 1, Duration::from_secs(60))
        .await
        .expect("acquire")
        .expect("permit");
    // A turn at 1/s sets its row a second ahead: not idle.
    assert_eq!(
        a.try_take("chat:busy", Rate::per_second(1.0))
            .await
            .expect("take"),
        None
    );
    let total = std::sync::atomic::AtomicU64::new(0);
    let pruned = support::eventually(Duration::from_secs(5), "idle rows pruned", || async {
        let now = a.prune(Duration::from_millis(100)).await.expect("prune");
        let sum = total.fetch_add(now, std::sync::atomic::Ordering::SeqCst) + now;
        (sum >= 2).then_some(sum)
    })
    .await;
    assert_eq!(pruned, 2, "the idle rate row and the free permit row");
    assert_eq!(
        a.held("panel:busy").await.expect("held"),
        1,
        "a held permit is kept"
    );
    let refused = a
        .try_take("chat:busy", Rate::per_second(1.0))
        .await
        .expect("take");
    assert!(refused.is_some(), "a busy rate keeps its turn");
    held.release().await.expect("release");
}
