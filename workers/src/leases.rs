//! The jobs this process holds a lease on, and the lease keeper that extends them.
//!
//! A job is held from its claim until its outcome is written: first `running` (its handler
//! under way), then `completing` (finished, waiting in the completer's batch). Both are extended,
//! so a slow completion write does not let the rescuer run a finished job again. Exactly one of
//! two things happens to a running job: its executor hands the outcome to the completer, or
//! shutdown (or a lost lease) takes it away first, and then its outcome is never written.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jobs::Queue;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::{MissedTickBehavior, interval};

struct RunningJob {
    attempt: i32,
    abort: Option<AbortHandle>,
}

#[derive(Default)]
struct Held {
    running: HashMap<i64, RunningJob>,
    completing: HashMap<i64, i32>,
}

#[derive(Default)]
pub struct Leases {
    held: Mutex<Held>,
    finished: Notify,
}

impl Leases {
    fn held(&self) -> MutexGuard<'_, Held> {
        // A panic while holding this lock cannot leave the maps half-updated (each change is
        // one insert or remove), so a poisoned lock is still consistent.
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn start(&self, id: i64, attempt: i32) {
        self.held().running.insert(
            id,
            RunningJob {
                attempt,
                abort: None,
            },
        );
    }

    pub fn set_abort(&self, id: i64, abort: AbortHandle) {
        if let Some(job) = self.held().running.get_mut(&id) {
            job.abort = Some(abort);
        }
    }

    /// The handler returned: the job moves to `completing`. False when shutdown or a lost lease
    /// took the job first; then its outcome must not be written.
    pub fn finish(&self, id: i64) -> bool {
        let mut held = self.held();
        let Some(job) = held.running.remove(&id) else {
            return false;
        };
        held.completing.insert(id, job.attempt);
        drop(held);
        self.finished.notify_waiters();
        true
    }

    /// The completer wrote these outcomes: their leases no longer matter.
    pub fn written(&self, ids: impl IntoIterator<Item = i64>) {
        let mut held = self.held();
        for id in ids {
            held.completing.remove(&id);
        }
    }

    /// Every lease to extend, as (id, attempt).
    pub fn all(&self) -> Vec<(i64, i32)> {
        let held = self.held();
        held.running
            .iter()
            .map(|(id, job)| (*id, job.attempt))
            .chain(held.completing.iter().map(|(id, attempt)| (*id, *attempt)))
            .collect()
    }

    /// Of `asked`, the leases the database no longer gave back are lost (the job was rescued,
    /// repaired or cancelled meanwhile): stop those handlers; their outcomes are not written.
    fn lose(&self, asked: &[(i64, i32)], still_held: &HashSet<i64>) {
        let mut held = self.held();
        for (id, attempt) in asked.iter().filter(|(id, _)| !still_held.contains(id)) {
            if held.running.get(id).is_some_and(|j| j.attempt == *attempt) {
                if let Some(job) = held.running.remove(id)
                    && let Some(abort) = job.abort
                {
                    abort.abort();
                }
                tracing::warn!(job = id, attempt, "lease lost; stopped the job's handler");
            }
        }
        drop(held);
        self.finished.notify_waiters();
    }

    pub fn running_count(&self) -> usize {
        self.held().running.len()
    }

    /// Waits until no job is running, or `deadline`. True when none is.
    pub async fn wait_idle(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let finished = self.finished.notified();
            if self.running_count() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, finished).await.is_err() {
                return self.running_count() == 0;
            }
        }
    }

    /// Takes every running job away from its executor and stops it: (id, attempt) to release.
    pub fn take_running(&self) -> Vec<(i64, i32)> {
        let taken: Vec<(i64, RunningJob)> = self.held().running.drain().collect();
        taken
            .into_iter()
            .map(|(id, job)| {
                if let Some(abort) = job.abort {
                    abort.abort();
                }
                (id, job.attempt)
            })
            .collect()
    }
}

/// Extends this process's leases every third of the lease, in a task of its own so that slow
/// maintenance work never delays it. Runs until aborted, after the last completion is written.
pub async fn keep(leases: Arc<Leases>, queue: Queue, lease: Duration) {
    let mut tick = interval((lease / 3).max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let asked = leases.all();
        if asked.is_empty() {
            continue;
        }
        match queue.driver().extend_leases(&asked, lease).await {
            Ok(held) => leases.lose(&asked, &held.into_iter().collect()),
            Err(error) => {
                tracing::warn!(%error, jobs = asked.len(), "cannot extend leases; will try again")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task that runs until aborted, as a job's handler does; its abort handle.
    fn handler_task() -> (tokio::task::JoinHandle<()>, AbortHandle) {
        let task = tokio::spawn(std::future::pending::<()>());
        let abort = task.abort_handle();
        (task, abort)
    }

    async fn assert_aborted(task: tokio::task::JoinHandle<()>) {
        let ended = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the aborted task ends");
        assert!(ended.is_err_and(|e| e.is_cancelled()), "not aborted");
    }

    fn sorted(mut leases: Vec<(i64, i32)>) -> Vec<(i64, i32)> {
        leases.sort_unstable();
        leases
    }

    #[test]
    fn a_lease_is_held_while_running_and_completing_and_let_go_once_written() {
        let leases = Leases::default();
        leases.start(1, 1);
        leases.start(2, 3);
        assert_eq!(sorted(leases.all()), [(1, 1), (2, 3)]);
        assert_eq!(leases.running_count(), 2);

        // Finished: no longer running, but its lease is still extended until written.
        assert!(leases.finish(1), "the executor may hand over the outcome");
        assert_eq!(leases.running_count(), 1);
        assert_eq!(sorted(leases.all()), [(1, 1), (2, 3)]);

        leases.written([1]);
        assert_eq!(leases.all(), [(2, 3)]);
        // Writing an outcome twice, or one never held, changes nothing.
        leases.written([1, 99]);
        assert_eq!(leases.all(), [(2, 3)]);
    }

    #[test]
    fn an_outcome_is_handed_over_once() {
        let leases = Leases::default();
        leases.start(5, 1);
        assert!(leases.finish(5));
        assert!(!leases.finish(5), "a second finish of the same attempt");
        assert!(!leases.finish(6), "a job this process never held");
    }

    #[tokio::test]
    async fn shutdown_takes_the_running_jobs_stops_their_handlers_and_keeps_the_completing() {
        let leases = Leases::default();
        let (task, abort) = handler_task();
        leases.start(1, 2);
        leases.set_abort(1, abort);
        leases.start(2, 1);
        leases.start(3, 1);
        assert!(leases.finish(3));

        assert_eq!(sorted(leases.take_running()), [(1, 2), (2, 1)]);
        assert_aborted(task).await;
        assert_eq!(leases.running_count(), 0);
        // The executors that were stopped cannot write an outcome now.
        assert!(!leases.finish(1));
        assert!(!leases.finish(2));
        // The finished job's outcome is still on its way: its lease is kept until written.
        assert_eq!(leases.all(), [(3, 1)]);
        assert!(leases.take_running().is_empty());
    }

    #[tokio::test]
    async fn a_lost_lease_stops_the_handler_and_its_outcome_is_never_handed_over() {
        let leases = Leases::default();
        let (lost_task, lost_abort) = handler_task();
        let (kept_task, kept_abort) = handler_task();
        leases.start(1, 1);
        leases.set_abort(1, lost_abort);
        leases.start(2, 1);
        leases.set_abort(2, kept_abort);

        let asked = leases.all();
        leases.lose(&asked, &HashSet::from([2]));
        assert_aborted(lost_task).await;
        assert!(!leases.finish(1), "the outcome of a lost lease");
        assert_eq!(leases.all(), [(2, 1)]);
        assert!(
            !kept_task.is_finished(),
            "a held lease's handler was stopped"
        );
        assert!(leases.finish(2));
        kept_task.abort();
    }

    #[test]
    fn a_lost_lease_of_an_earlier_attempt_leaves_the_current_one_alone() {
        let leases = Leases::default();
        leases.start(1, 2);
        // The keeper asked about attempt 1 before this process claimed attempt 2.
        leases.lose(&[(1, 1)], &HashSet::new());
        assert_eq!(leases.all(), [(1, 2)]);
        assert!(leases.finish(1));
    }

    #[test]
    fn a_lost_lease_of_a_completing_job_leaves_it_to_the_completer() {
        let leases = Leases::default();
        leases.start(1, 1);
        assert!(leases.finish(1));
        leases.lose(&[(1, 1)], &HashSet::new());
        assert_eq!(leases.all(), [(1, 1)], "held until the completer writes it");
        leases.written([1]);
        assert!(leases.all().is_empty());
    }

    #[test]
    fn an_abort_handle_for_a_job_not_running_is_ignored() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let _entered = runtime.enter();
        let (_task, abort) = handler_task();
        let leases = Leases::default();
        leases.set_abort(9, abort);
        assert!(leases.all().is_empty());
        assert!(leases.take_running().is_empty());
    }

    #[tokio::test]
    async fn waiting_for_idle_ends_when_the_last_job_finishes_or_at_the_deadline() {
        let leases = Arc::new(Leases::default());
        let soon = || tokio::time::Instant::now() + Duration::from_millis(50);
        assert!(leases.wait_idle(soon()).await, "nothing runs");

        leases.start(1, 1);
        assert!(
            !leases.wait_idle(soon()).await,
            "a job still runs at the deadline"
        );

        let finisher = leases.clone();
        let finish = tokio::spawn(async move {
            tokio::task::yield_now().await;
            finisher.finish(1)
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        assert!(leases.wait_idle(deadline).await);
        assert!(finish.await.expect("finisher"));
        // Idle, though the finished job's lease is held until its outcome is written.
        assert_eq!(leases.all(), [(1, 1)]);
    }

    #[tokio::test]
    async fn a_lost_lease_wakes_a_shutdown_waiting_for_idle() {
        let leases = Arc::new(Leases::default());
        leases.start(1, 1);
        let keeper = leases.clone();
        let lose = tokio::spawn(async move {
            tokio::task::yield_now().await;
            keeper.lose(&[(1, 1)], &HashSet::new());
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        assert!(leases.wait_idle(deadline).await);
        lose.await.expect("keeper");
        assert!(leases.all().is_empty());
    }
}
