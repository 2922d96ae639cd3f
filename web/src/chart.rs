//! The overview's throughput chart: one queue's last hour, a bar per minute, as inline SVG
//! (presentation attributes only, so no inline style is needed under the page's CSP).

use chrono::{DateTime, Duration, DurationRound, Utc};
use jobs::driver::OutcomeCount;
use maud::{Markup, html};

pub(crate) const MINUTES: usize = 60;
const BAR: usize = 2;
const HEIGHT: i64 = 36;

/// One minute of one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Minute {
    pub(crate) completed: i64,
    /// Attempts that failed: `retried` and `failed`.
    pub(crate) failed: i64,
    pub(crate) cancelled: i64,
}

/// The last hour of `queue`, oldest minute first, ending with the current minute.
pub(crate) fn series(rows: &[OutcomeCount], queue: &str, now: DateTime<Utc>) -> Vec<Minute> {
    let current = now.duration_trunc(Duration::minutes(1)).unwrap_or(now);
    let first = current - Duration::minutes(MINUTES as i64 - 1);
    let mut minutes = vec![Minute::default(); MINUTES];
    for row in rows.iter().filter(|r| r.queue == queue) {
        let offset = (row.minute - first).num_minutes();
        let Ok(i) = usize::try_from(offset) else {
            continue;
        };
        let Some(m) = minutes.get_mut(i) else {
            continue;
        };
        match row.outcome.as_str() {
            "completed" => m.completed += row.count,
            "retried" | "failed" => m.failed += row.count,
            "cancelled" => m.cancelled += row.count,
            _ => {}
        }
    }
    minutes
}

pub(crate) fn start_of(now: DateTime<Utc>) -> DateTime<Utc> {
    now.duration_trunc(Duration::minutes(1)).unwrap_or(now) - Duration::minutes(MINUTES as i64 - 1)
}

/// Bars of completed jobs (green) with failed attempts stacked on top (red); each minute has a
/// tooltip with its figures.
pub(crate) fn svg(queue: &str, minutes: &[Minute], now: DateTime<Utc>) -> Markup {
    let completed: i64 = minutes.iter().map(|m| m.completed).sum();
    let failed: i64 = minutes.iter().map(|m| m.failed).sum();
    let peak = minutes
        .iter()
        .map(|m| m.completed + m.failed + m.cancelled)
        .max()
        .unwrap_or(0)
        .max(1);
    let scale = |n: i64| -> i64 {
        if n == 0 {
            0
        } else {
            (n * HEIGHT / peak).max(1)
        }
    };
    let first = start_of(now);
    let width = MINUTES * BAR;
    let label =
        format!("Queue {queue}, last hour: {completed} completed, {failed} failed attempts");
    html! {
        svg class="spark" width=(width) height=(HEIGHT) viewBox={"0 0 " (width) " " (HEIGHT)}
            role="img" aria-label=(label) {
            title { (label) }
            line x1="0" y1=(HEIGHT) x2=(width) y2=(HEIGHT) stroke="#d0d7de" stroke-width="1" {}
            @for (i, m) in minutes.iter().enumerate() {
                @let total = m.completed + m.failed + m.cancelled;
                @if total > 0 {
                    @let x = i * BAR;
                    @let ok_h = scale(m.completed);
                    @let bad_h = scale(m.failed);
                    @let other_h = scale(m.cancelled);
                    @let at = first + Duration::minutes(i as i64);
                    g {
                        title {
                            (at.format("%H:%M UTC")) ": " (m.completed) " completed, "
                            (m.failed) " failed attempts"
                            @if m.cancelled > 0 { ", " (m.cancelled) " cancelled" }
                        }
                        rect x=(x) y=(HEIGHT - ok_h) width=(BAR) height=(ok_h) fill="#2da44e" {}
                        rect x=(x) y=(HEIGHT - ok_h - bad_h) width=(BAR) height=(bad_h) fill="#cf222e" {}
                        rect x=(x) y=(HEIGHT - ok_h - bad_h - other_h) width=(BAR) height=(other_h) fill="#8c959f" {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(minute: DateTime<Utc>, queue: &str, outcome: &str, count: i64) -> OutcomeCount {
        OutcomeCount {
            minute,
            queue: queue.into(),
            outcome: outcome.into(),
            count,
        }
    }

    #[test]
    fn minutes_fall_in_their_bucket() {
        let now = DateTime::parse_from_rfc3339("2025-01-01T12:30:45Z")
            .expect("time")
            .with_timezone(&Utc);
        let this_minute = DateTime::parse_from_rfc3339("2025-01-01T12:30:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let rows = [
            row(this_minute, "a", "completed", 5),
            row(this_minute, "a", "failed", 1),
            row(this_minute, "a", "retried", 2),
            row(this_minute - Duration::minutes(59), "a", "completed", 3),
            row(this_minute - Duration::minutes(60), "a", "completed", 100),
            row(this_minute, "b", "completed", 7),
        ];
        let s = series(&rows, "a", now);
        assert_eq!(s.len(), MINUTES);
        assert_eq!(
            s[MINUTES - 1],
            Minute {
                completed: 5,
                failed: 3,
                cancelled: 0
            }
        );
        assert_eq!(s[0].completed, 3);
        assert_eq!(s.iter().map(|m| m.completed).sum::<i64>(), 8);
        let svg = svg("a", &s, now).into_string();
        assert!(svg.contains("8 completed, 3 failed attempts"), "{svg}");
        assert!(
            svg.contains("12:30 UTC: 5 completed, 3 failed attempts"),
            "{svg}"
        );
    }
}
