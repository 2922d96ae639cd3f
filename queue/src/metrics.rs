//! Process-wide metrics that belong to the queue itself, not to a worker: jobs enqueued (counted
//! wherever this process enqueues: bots, periodic jobs, handlers, `jobq enqueue`) and the calls
//! handlers make to outside services. They live in statics so that every [`crate::Queue`] of the
//! process counts into the same families without being handed a registry.
//!
//! The one way to expose metrics in this project is `prometheus-client`: a process builds a
//! [`Registry`], calls [`register`] to include these families, adds its own, and renders it with
//! [`render`] in the [`Format`] the scraper asked for ([`Format::negotiate`]: OpenMetrics for
//! Prometheus, which asks for it, the classic text format for everything else, `promtool check
//! metrics` included). The label sets every process uses are here too, and the crate is
//! re-exported, so the other crates share one version of it.

use std::sync::LazyLock;

pub use prometheus_client;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
pub use prometheus_client::registry::Registry;

/// The two text formats a scraper may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0: what `prometheus-client` writes, and what Prometheus asks for first. A
    /// counter's family is named without `_total` (`# TYPE jobq_jobs_completed counter`), its
    /// samples with it.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4, for readers that know only it (`promtool
    /// check metrics`, `curl`): the same samples, a counter's `HELP` and `TYPE` named like its
    /// samples, no `UNIT` or `EOF` lines.
    Classic,
}

impl Format {
    /// OpenMetrics when the request's `Accept` header names it, else the classic format.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Classic,
        }
    }

    /// The `Content-Type` of [`render`]'s output in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Classic => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

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

/// The ways an attempt ends, as outcome labels and `jobq_stats` name them.
pub const OUTCOMES: [&str; 5] = ["completed", "retried", "failed", "cancelled", "snoozed"];

/// The labels of per-kind outcome counts.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindQueueOutcome {
    pub kind: String,
    pub queue: String,
    pub outcome: String,
}

/// The labels of [`external_calls`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExternalCall {
    /// The service called, named by the handler (one short word per outside service).
    pub service: String,
    /// How it went: one of [`CALL_OUTCOMES`].
    pub outcome: String,
}

/// The outcomes of a call to an outside service: `ok`; `refused` (the service said no: bad
/// credentials, a rejected request, a blocked chat); `rate_limited` (429); `error` (the
/// service failed: 5xx, an answer that is not its own); `timeout`; `unreachable` (no
/// connection, or it dropped).
pub const CALL_OUTCOMES: [&str; 6] = [
    "ok",
    "refused",
    "rate_limited",
    "error",
    "timeout",
    "unreachable",
];

static ENQUEUED: LazyLock<Family<KindQueue, Counter>> = LazyLock::new(Family::default);
static EXTERNAL_CALLS: LazyLock<Family<ExternalCall, Counter>> = LazyLock::new(Family::default);

/// `jobq_jobs_enqueued_total{kind,queue}`: jobs this process created (an enqueue whose
/// idempotency key was already held creates nothing and is not counted; a transaction counts
/// its jobs when it commits).
pub fn enqueued() -> &'static Family<KindQueue, Counter> {
    &ENQUEUED
}

/// `jobq_external_calls_total{service,outcome}`: calls to outside services made by this
/// process's handlers.
pub fn external_calls() -> &'static Family<ExternalCall, Counter> {
    &EXTERNAL_CALLS
}

/// Starts `service`'s series at zero, one per outcome, so they exist before the first call.
pub fn expect_external_calls(service: &str) {
    for outcome in CALL_OUTCOMES {
        let _ = EXTERNAL_CALLS.get_or_create(&ExternalCall {
            service: service.to_string(),
            outcome: outcome.to_string(),
        });
    }
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

/// `registry` in `format`.
pub fn render(registry: &Registry, format: Format) -> String {
    let mut out = String::new();
    // Writing to a String fails only if a metric's own encoding does, which ours never do.
    if let Err(error) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(%error, "cannot render metrics");
    }
    match format {
        Format::OpenMetrics => out,
        Format::Classic => classic(&out),
    }
}

/// OpenMetrics text as `prometheus-client` writes it, in the classic format. The samples are
/// the same in both; only the comments differ: a counter family's `HELP` and `TYPE` take the
/// `_total` its samples carry (a classic reader matches them by name, and finds no help text
/// otherwise), and `UNIT` and `EOF`, which the classic format does not have, go.
fn classic(open_metrics: &str) -> String {
    let mut out = String::with_capacity(open_metrics.len());
    let mut help: Option<&str> = None;
    for line in open_metrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let name = match kind {
                "counter" => format!("{name}_total"),
                _ => name.to_string(),
            };
            if let Some(help) = help.take() {
                let text = help.split_once(' ').map_or("", |(_, text)| text);
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
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
        let text = render(&registry, Format::OpenMetrics);
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

    #[test]
    fn the_classic_format_names_counters_like_their_samples() {
        let mut registry = Registry::default();
        register(&mut registry);
        record_external_call("unit_classic", "ok");
        let seconds = prometheus_client::metrics::histogram::Histogram::new([1.0]);
        registry.register_with_unit(
            "unit_wait",
            "A histogram with a unit",
            prometheus_client::registry::Unit::Seconds,
            seconds,
        );
        let text = render(&registry, Format::Classic);
        assert!(
            text.contains(
                "# HELP jobq_external_calls_total Calls to outside services by this process's handlers.\n\
                 # TYPE jobq_external_calls_total counter\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"jobq_external_calls_total{service="unit_classic",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("# TYPE unit_wait_seconds histogram\n"),
            "{text}"
        );
        assert!(
            !text.contains("# UNIT") && !text.contains("# EOF"),
            "{text}"
        );
        assert_eq!(Format::negotiate(None), Format::Classic);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Classic);
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
    }
}
