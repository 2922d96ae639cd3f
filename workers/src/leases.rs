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
