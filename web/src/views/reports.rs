//! The report pages' HTML: failures grouped by error, the periodic jobs.

use super::*;

pub(crate) fn failures(admin: &Admin, data: &FailuresData, notice: &Notice) -> Markup {
    let now = Utc::now();
    let open = data.open.and_then(|i| data.groups.get(i));
    let body = html! {
        h1 { "Failures by error" }
        (notice_flash(notice))
        p.muted {
            "Failed jobs grouped by their last error, with ids and numbers taken out, biggest group first. "
            @if (data.read as i64) < data.total {
                "The newest " (data.read) " of " (data.total) " failed jobs are grouped."
            } @else {
                (plural(data.total, "failed job", "failed jobs")) "."
            }
        }
        @if data.groups.is_empty() {
            p.empty { "No failed job." }
        } @else {
            div.scroll {
            table.failures {
                thead { tr { th { "Error" } th.num { "Jobs" } th { "Kinds" } th { "Newest" } th {} } }
                tbody {
                    @for g in &data.groups {
                        tr id={"group-" (g.key)} class=[open.is_some_and(|o| o.key == g.key).then_some("open")] {
                            td.error-cell title=(g.example) { (truncate(&g.signature, 300)) }
                            td.num { (g.jobs.len()) }
                            td {
                                @for (i, (kind, n)) in g.kinds.iter().enumerate() {
                                    @if i > 0 { ", " }
                                    code { (kind) } " " span.muted { "×" (n) }
                                }
                            }
                            td { @if let Some(j) = g.jobs.first() { (when(j.finalized_at.unwrap_or(j.run_at), now)) } }
                            td { a href={"/failures?group=" (g.key) "#jobs"} { "Show the jobs" } }
                        }
                    }
                }
            }
            }
        }
        @if let Some(g) = open {
            section #jobs {
                h2 { (plural(g.jobs.len() as i64, "job fails", "jobs fail")) " with" }
                pre.error { (g.example) }
                (selection_form(&format!("/failures?group={}", g.key)))
                div.scroll {
                table.jobs {
                    thead { tr { th { span.visually-hidden { "Select" } } th.num { "Id" } th { "Kind" } th { "Queue" } th.num { "Attempts" } th { "Failed" } th { "Last error" } } }
                    tbody {
                        @for j in &g.jobs {
                            tr {
                                td { (select_box(j.id)) }
                                td.num { a href={"/jobs/" (j.id)} { "#" (j.id) } }
                                td { (j.kind) }
                                td { (j.queue) }
                                td.num { (j.attempts) "/" (j.max_attempts) }
                                td { (when(j.finalized_at.unwrap_or(j.run_at), now)) }
                                td.error-cell { @if let Some(e) = &j.last_error { (truncate(e, 140)) } }
                            }
                        }
                    }
                }
                }
            }
        }
    };
    layout(admin, "Failures by error", Nav::Failures, &[], body)
}

pub(crate) fn periodic(admin: &Admin, rows: &[PeriodicRow], now: DateTime<Utc>) -> Markup {
    let body = html! {
        h1 { "Periodic jobs" }
        p.muted {
            "What the workers enqueue on a schedule (" code { "[[periodic]]" } " in the config, and each panel's usage sync): "
            "one job per period whichever number of workers run, keyed by the entry's name and the period's start."
        }
        @if rows.is_empty() {
            p.empty { "No periodic job is configured." }
        } @else {
            div.scroll {
            table.periodic {
                thead { tr { th { "Name" } th { "Kind" } th { "Queue" } th { "Every" } th { "Last job" } th { "Its state" } th { "Enqueued" } th { "Next" } } }
                tbody {
                    @for r in rows {
                        tr {
                            td { strong { (r.entry.name) } }
                            td { code { (r.entry.kind) } }
                            td { (r.queue) }
                            td { (human_secs(r.entry.every.as_secs_f64())) }
                            @match &r.last {
                                Some(j) => {
                                    td.num { a href={"/jobs/" (j.id)} { "#" (j.id) } }
                                    td { (state_badge(j.state)) }
                                    td { (when(j.created_at, now)) }
                                }
                                None => {
                                    td.muted { "none yet" }
                                    td {}
                                    td {}
                                }
                            }
                            td { (when(r.next, now)) }
                        }
                    }
                }
            }
            }
        }
    };
    layout(admin, "Periodic jobs", Nav::Periodic, &[], body)
}
