//! Process-wide metrics that belong to the queue itself, not to a worker: jobs enqueued (counted
//! wherever this process enqueues: bots, periodic jobs, handlers, `jobq enqueue`) and the calls
//! handlers make to outside services. They live in statics so that every [`crate::Queue`] of the
//! process counts into the same families without being handed a registry.
//!
//! The one way to expose metrics in this project is `prometheus-client`: a process builds a
//! [`Registry`], calls [`register`] to include these families, adds its own, and renders it with
//! [`render`] (OpenMetrics text, which Prometheus scrapes as such; see [`CONTENT_TYPE`]). The
//! label sets every process uses are here too, and the crate is re-exported, so the other
//! crates share one version of it.

use std::sync::LazyLock;

pub use prometheus_client;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
pub use prometheus_client::registry::Registry;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The labels of per-kind figures.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindQueue {
    pub kind: String,
    pub queue: String,
}

/// The labels of per-queue figures.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    pub queue: String,
}

/// The labels of queue depth.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueState {
    pub queue: String,
    pub state: String,
}

/// The labels of outcome counts: `completed`, `retried`, `failed`, `cancelled`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueOutcome {
    pub queue: String,
    pub outcome: String,
}

/// The labels of [`external_calls`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExternalCall {
    /// The service called, named by the handler (one short word per outside service).
    pub service: String,
    /// How it went: `ok`, `error` (the service answered with an error), `timeout`,
    /// `rate_limited`, `unreachable`.
    pub outcome: String,
}

static ENQUEUED: LazyLock<Family<KindQueue, Counter>> = LazyLock::new(Family::default);
static EXTERNAL_CALLS: LazyLock<Family<ExternalCall, Counter>> = LazyLock::new(Family::default);

/// `jobq_jobs_enqueued_total{kind,queue}`: jobs this process created (an enqueue whose
/// idempotency key was already held creates nothing and is not counted; a transaction counts
/// its jobs when it commits).
pub fn enqueued() -> &'static Family<KindQueue, Counter> {
    &ENQUEUED
}

/// `jobq_external_calls_total{service,outcome}`: calls to outside services made by this
/// process's handlers. Ready for the handlers' issue; nothing records into it yet.
pub fn external_calls() -> &'static Family<ExternalCall, Counter> {
    &EXTERNAL_CALLS
}

/// Counts one call to an outside service.
pub fn record_external_call(service: &str, outcome: &str) {
    EXTERNAL_CALLS
        .get_or_create(&ExternalCall {
            service: service.to_string(),
            outcome: outcome.to_string(),
        })
        .inc();
}

/// Adds this crate's families to `registry` (they share their values with the statics).
pub fn register(registry: &mut Registry) {
    registry.register(
        "jobq_jobs_enqueued",
        "Jobs created by enqueues in this process (duplicates of a held key not counted)",
        ENQUEUED.clone(),
    );
    registry.register(
        "jobq_external_calls",
        "Calls to outside services by this process's handlers",
        EXTERNAL_CALLS.clone(),
    );
}

/// `registry` in the OpenMetrics text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String fails only if a metric's own encoding does, which ours never do.
    if let Err(error) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(%error, "cannot render metrics");
    }
    out
}

/// Counts created jobs: `created` pairs each job's kind and queue with whether it was created.
pub(crate) fn count_enqueued<'a>(created: impl IntoIterator<Item = (&'a str, &'a str, bool)>) {
    for (kind, queue, created) in created {
        if created {
            ENQUEUED
                .get_or_create(&KindQueue {
                    kind: kind.to_string(),
                    queue: queue.to_string(),
                })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_families_render_with_their_labels() {
        let mut registry = Registry::default();
        register(&mut registry);
        count_enqueued([
            ("unit_kind", "unit_queue", true),
            ("unit_kind", "unit_queue", false),
            ("unit_kind", "unit_queue", true),
        ]);
        record_external_call("unit_service", "ok");
        let text = render(&registry);
        assert!(
            text.contains(r#"jobq_jobs_enqueued_total{kind="unit_kind",queue="unit_queue"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"jobq_external_calls_total{service="unit_service",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
