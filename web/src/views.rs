//! The HTML. maud escapes every interpolated value, so text from jobs (payloads, errors, keys,
//! queue and kind names, worker ids, audit targets) renders inert.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use jobs::JobState;
use jobs::audit::AuditRecord;
use jobs::driver::{JobFilter, JobRecord, Listed, Unreadable, WorkerInfo};
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use crate::auth::Admin;
use crate::chart;
mod reports;
pub(crate) use reports::{failures, periodic};

use crate::handlers::{
    AuditData, BulkData, FailuresData, ListData, Notice, OverviewData, PeriodicRow, SelectionData,
    can, describe_filter, editable, filter_query,
};

#[derive(PartialEq, Clone, Copy)]
enum Nav {
    Overview,
    Jobs,
    Failed,
    Failures,
    Periodic,
    Audit,
    None,
}

/// The states in the order admins read them.
const STATES: [JobState; 8] = [
    JobState::Available,
    JobState::Scheduled,
    JobState::Running,
    JobState::Retrying,
    JobState::Failed,
    JobState::Completed,
    JobState::Cancelled,
    JobState::Discarded,
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="no-referrer";
            title { (title) " · jobq" }
            link rel="stylesheet" href="/static/style.css";
            link rel="icon" type="image/svg+xml" href="/static/favicon.svg";
        }
    }
}

fn csrf_field(admin: &Admin) -> Markup {
    html! {
        @if let Some(token) = &admin.csrf {
            input type="hidden" name="csrf" value=(token);
        }
    }
}

fn layout(admin: &Admin, title: &str, nav: Nav, scripts: &[&str], body: Markup) -> Markup {
    let item = |target: Nav, href: &str, label: &str| {
        html! {
            a href=(href) class=[ (nav == target).then_some("active") ] { (label) }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    a.brand href="/" { "jobq" }
                    nav {
                        (item(Nav::Overview, "/", "Overview"))
                        (item(Nav::Jobs, "/jobs", "Jobs"))
                        (item(Nav::Failed, "/jobs?state=failed", "Failed"))
                        (item(Nav::Failures, "/failures", "By error"))
                        (item(Nav::Periodic, "/periodic", "Periodic"))
                        (item(Nav::Audit, "/audit", "Audit log"))
                    }
                    div.who {
                        span { "Signed in as " strong { (admin.name) } }
                        @if admin.csrf.is_some() {
                            form method="post" action="/logout" {
                                (csrf_field(admin))
                                button.link type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { (body) }
                @for src in scripts {
                    script src=(src) defer {}
                }
            }
        }
    }
}

/// A page with a title and a sentence: errors and refusals.
pub(crate) fn message_page(title: &str, text: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                main.narrow {
                    h1 { (title) }
                    p { (text) }
                    p { a href="/" { "Back to the overview" } }
                }
            }
        }
    }
}

pub(crate) fn login(next: &str, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Log in"))
            body {
                main.narrow.login {
                    h1 { "jobq admin" }
                    p.muted { "Paste your admin token. It is kept in this browser only as a session cookie, never shown again." }
                    @if let Some(error) = error {
                        p.flash.error role="alert" { (error) }
                    }
                    form method="post" action="/login" {
                        input type="hidden" name="next" value=(next);
                        label for="token" { "Admin token" }
                        input #token type="password" name="token" autocomplete="current-password" required autofocus;
                        button.primary type="submit" { "Log in" }
                    }
                }
            }
        }
    }
}

fn plural(n: impl Into<i64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

fn notice_flash(notice: &Notice) -> Markup {
    let changed = notice.changed.unwrap_or(0);
    let skipped = notice.skipped.unwrap_or(0);
    let jobs = |n: u64| plural(i64::try_from(n).unwrap_or(i64::MAX), "job", "jobs");
    let text = match notice.done.as_deref() {
        Some("retry") => format!("Retried {}.", jobs(changed)),
        Some("discard") => format!("Discarded {}.", jobs(changed)),
        Some("cancel") => format!("Cancelled {}.", jobs(changed)),
        Some("edit_retry") => "Payload saved and the job retried.".to_string(),
        Some("pause") => "Queue paused: workers take no new jobs from it.".to_string(),
        Some("resume") => "Queue resumed.".to_string(),
        _ => return html! {},
    };
    let left = if skipped > 0 {
        format!(
            " {} left alone (not in a state this action applies to).",
            jobs(skipped)
        )
    } else {
        String::new()
    };
    let class = if changed == 0 && skipped > 0 {
        "flash warn"
    } else {
        "flash ok"
    };
    html! { p class=(class) role="status" { (text) (left) } }
}

fn when(at: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339()) title=(at.format("%Y-%m-%d %H:%M:%S%.3f UTC")) {
            (relative(at, now))
        }
    }
}

fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - at).num_seconds();
    let (n, future) = if secs < 0 {
        (-secs, true)
    } else {
        (secs, false)
    };
    let span = human_secs(n as f64);
    if n < 2 {
        "now".to_string()
    } else if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

fn human_secs(s: f64) -> String {
    let s = s.max(0.0);
    if s < 60.0 {
        format!("{}s", s.round() as i64)
    } else if s < 3600.0 {
        format!("{}m {}s", (s / 60.0) as i64, (s % 60.0) as i64)
    } else if s < 86_400.0 {
        format!("{}h {}m", (s / 3600.0) as i64, ((s % 3600.0) / 60.0) as i64)
    } else {
        format!(
            "{}d {}h",
            (s / 86_400.0) as i64,
            ((s % 86_400.0) / 3600.0) as i64
        )
    }
}

fn state_badge(state: JobState) -> Markup {
    html! { span class={"badge s-" (state.as_str())} { (state.as_str()) } }
}

fn jobs_link(filter: &JobFilter) -> String {
    let q = filter_query(filter);
    if q.is_empty() {
        "/jobs".to_string()
    } else {
        format!("/jobs?{q}")
    }
}

// ---------------------------------------------------------------------------------------------
// Overview

pub(crate) fn overview(admin: &Admin, data: &OverviewData, notice: &Notice) -> Markup {
    let now = data.now;
    let total = |state: JobState| -> i64 {
        data.queues
            .iter()
            .filter_map(|q| q.counts.get(&state))
            .sum()
    };
    let failed_hour: i64 = data
        .queues
        .iter()
        .flat_map(|q| q.minutes.iter())
        .map(|m| m.failed)
        .sum();
    let done_hour: i64 = data
        .queues
        .iter()
        .flat_map(|q| q.minutes.iter())
        .map(|m| m.completed)
        .sum();
    let body = html! {
        (notice_flash(notice))
        section.cards {
            a.card href="/jobs?state=available" {
                span.label { "Available" }
                span.value data-total="available" { (total(JobState::Available)) }
            }
            a.card href="/jobs?state=running" {
                span.label { "Running" }
                span.value data-total="running" { (total(JobState::Running)) }
            }
            a.card href="/jobs?state=retrying" {
                span.label { "Retrying" }
                span.value data-total="retrying" { (total(JobState::Retrying)) }
            }
            a.card.bad[total(JobState::Failed) > 0] href="/jobs?state=failed" {
                span.label { "Failed" }
                span.value data-total="failed" { (total(JobState::Failed)) }
            }
            div.card {
                span.label { "Last hour" }
                span.value { (done_hour) " " small { "done" } }
                span.sub.bad[failed_hour > 0] { (plural(failed_hour, "failed attempt", "failed attempts")) }
            }
            div.card {
                span.label { "Live workers" }
                span.value data-workers { (data.live_workers.len()) }
            }
        }
        section {
            div.section-head {
                h2 { "Queues" }
                span.muted #live-status { "As of " (when(now, now)) ". " a href="/" { "Refresh" } }
            }
            @if data.queues.is_empty() {
                p.empty { "No queues yet: enqueue a job and it appears here." }
            } @else {
                div.scroll {
                table.queues {
                    thead {
                        tr {
                            th { "Queue" }
                            @for s in STATES { th.num { (s.as_str()) } }
                            th { "Last hour" }
                            th.num { "Oldest available" }
                            th {}
                        }
                    }
                    tbody {
                        @for q in &data.queues {
                            tr id={"queue-" (q.name)} class=[q.paused.then_some("paused")] {
                                th scope="row" {
                                    a href=(jobs_link(&JobFilter { queue: Some(q.name.clone()), ..JobFilter::default() })) { (q.name) }
                                    @if q.paused { " " span.badge.s-paused { "paused" } }
                                }
                                @for s in STATES {
                                    @let n = q.counts.get(&s).copied().unwrap_or(0);
                                    td.num class=[(n > 0 && s == JobState::Failed).then_some("bad")] {
                                        a href=(jobs_link(&JobFilter { state: Some(s), queue: Some(q.name.clone()), ..JobFilter::default() }))
                                          data-count={(q.name) ":" (s.as_str())} class=[(n == 0).then_some("zero")] { (n) }
                                    }
                                }
                                td.chart {
                                    (chart::svg(&q.name, &q.minutes, now))
                                }
                                td.num {
                                    @match q.oldest_available_age_s {
                                        Some(age) => span class=[(age > 60.0).then_some("warn-text")] { (human_secs(age)) },
                                        None => span.muted { "—" },
                                    }
                                }
                                td {
                                    form method="post" action={"/queues/" (q.name) (if q.paused { "/resume" } else { "/pause" })} {
                                        (csrf_field(admin))
                                        @if q.paused {
                                            button.small type="submit" { "Resume" }
                                        } @else {
                                            button.small.secondary type="submit" { "Pause" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                }
                p.legend.muted {
                    span.key.ok {} " completed " span.key.bad {} " failed attempts (retried or failed) per minute, last 60 minutes"
                }
            }
        }
        section {
            h2 { "Workers" }
            (workers_table(&data.live_workers, &data.running, now))
            @if !data.stale_workers.is_empty() {
                p.flash.warn {
                    (plural(data.stale_workers.len() as i64, "worker has", "workers have"))
                    " stopped sending heartbeats (crashed or cut off): "
                    @for (i, w) in data.stale_workers.iter().enumerate() {
                        @if i > 0 { ", " }
                        code { (w.id) } " (last seen " (when(w.heartbeat_at, now)) ")"
                    }
                    ". Their running jobs are rescued when their leases expire."
                }
            }
        }
        section {
            div.section-head {
                h2 { "Recent admin actions" }
                a href="/audit" { "Full audit log" }
            }
            (audit_table(&data.audit, now))
        }
    };
    layout(admin, "Overview", Nav::Overview, &["/static/live.js"], body)
}

/// Running jobs listed per worker; the rest are counted.
const RUNNING_SHOWN: usize = 8;

fn workers_table(
    workers: &[WorkerInfo],
    running: &HashMap<String, Vec<JobRecord>>,
    now: DateTime<Utc>,
) -> Markup {
    html! {
        @if workers.is_empty() {
            p.empty { "No live worker. Start one with " code { "jobq worker" } "." }
        } @else {
            div.scroll {
            table.workers {
                thead { tr { th { "Worker" } th { "Host" } th.num { "PID" } th { "Queues" } th.num { "Slots" } th.num { "Running" } th { "Running jobs" } th { "Started" } th { "Heartbeat" } } }
                tbody {
                    @for w in workers {
                        @let jobs = running.get(&w.id).map(Vec::as_slice).unwrap_or_default();
                        tr data-worker=(w.id) {
                            td { code { (w.id) } }
                            td { (w.host) }
                            td.num { (w.pid) }
                            td { (w.queues) }
                            td.num { (w.concurrency) }
                            td.num { (jobs.len()) }
                            td.running {
                                @for (i, j) in jobs.iter().take(RUNNING_SHOWN).enumerate() {
                                    @if i > 0 { ", " }
                                    a href={"/jobs/" (j.id)} title={(j.kind) " since " (j.attempted_at.map(|t| relative(t, now)).unwrap_or_default())} { "#" (j.id) } " " span.muted { (j.kind) }
                                }
                                @if jobs.len() > RUNNING_SHOWN { " and " (jobs.len() - RUNNING_SHOWN) " more" }
                                @if jobs.is_empty() { span.muted { "idle" } }
                            }
                            td { (when(w.started_at, now)) }
                            td { (when(w.heartbeat_at, now)) }
                        }
                    }
                }
            }
            }
        }
    }
}

fn audit_table(records: &[AuditRecord], now: DateTime<Utc>) -> Markup {
    html! {
        @if records.is_empty() {
            p.empty { "No admin action yet." }
        } @else {
            div.scroll {
            table.audit {
                thead { tr { th { "When" } th { "Who" } th { "Where" } th { "Action" } th { "Target" } th.num { "Jobs changed" } } }
                tbody {
                    @for r in records {
                        tr {
                            td { (when(r.at, now)) }
                            td { strong { (r.actor) } }
                            td { (r.surface) }
                            td { span class={"badge a-" (r.action)} { (r.action) } }
                            td.target { (r.target) }
                            td.num { (r.count) }
                        }
                    }
                }
            }
            }
        }
    }
}

/// The actions the audit log records, for its filter.
const AUDIT_ACTIONS: [&str; 6] = [
    "retry",
    "edit_retry",
    "discard",
    "cancel",
    "pause",
    "resume",
];

pub(crate) fn audit(admin: &Admin, data: &AuditData, now: DateTime<Utc>) -> Markup {
    let q = &data.query;
    let action = q.action.as_deref().unwrap_or("");
    let body = html! {
        h1 { "Audit log" }
        p.muted { "Every repair and queue change, from the dashboard, the CLI and the bots: newest first, the last 200 that match." }
        @for p in &data.problems {
            p.flash.warn role="alert" { (p) }
        }
        form.filters method="get" action="/audit" {
            label {
                span { "Who" }
                input name="actor" value=[q.actor.as_deref()] placeholder="anyone";
            }
            label {
                span { "Action" }
                select name="action" {
                    option value="" selected[action.is_empty()] { "any" }
                    @for a in AUDIT_ACTIONS {
                        option value=(a) selected[action == a] { (a) }
                    }
                    @if !action.is_empty() && !AUDIT_ACTIONS.contains(&action) {
                        option value=(action) selected { (action) }
                    }
                }
            }
            label {
                span { "Job" }
                input name="job" value=[q.job.as_deref()] placeholder="id" inputmode="numeric";
            }
            button.primary type="submit" { "Filter" }
            @if data.filtered { a.clear href="/audit" { "Clear" } }
        }
        (audit_table(&data.records, now))
    };
    layout(admin, "Audit log", Nav::Audit, &[], body)
}

// ---------------------------------------------------------------------------------------------
// Jobs

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut t: String = text.chars().take(max).collect();
        t.push('…');
        t
    }
}

pub(crate) fn jobs_list(admin: &Admin, data: &ListData, notice: &Notice) -> Markup {
    let now = Utc::now();
    let f = &data.filter;
    let filtered = f.state.is_some() || f.queue.is_some() || f.kind.is_some();
    let nav = if f.state == Some(JobState::Failed) && f.queue.is_none() && f.kind.is_none() {
        Nav::Failed
    } else {
        Nav::Jobs
    };
    let base = filter_query(f);
    let bulk = |action: &str| {
        if base.is_empty() {
            format!("/jobs/bulk?action={action}")
        } else {
            format!("/jobs/bulk?action={action}&{base}")
        }
    };
    let body = html! {
        h1 { "Jobs" }
        (notice_flash(notice))
        @for p in &data.problems {
            p.flash.warn role="alert" { (p) }
        }
        form.filters method="get" action="/jobs" {
            label {
                span { "State" }
                select name="state" {
                    option value="" selected[f.state.is_none()] { "any" }
                    @for s in STATES {
                        option value=(s.as_str()) selected[f.state == Some(s)] { (s.as_str()) }
                    }
                }
            }
            label {
                span { "Queue" }
                select name="queue" {
                    option value="" selected[f.queue.is_none()] { "any" }
                    @for q in &data.queues {
                        option value=(q) selected[f.queue.as_deref() == Some(q.as_str())] { (q) }
                    }
                }
            }
            label {
                span { "Kind" }
                input name="kind" list="kinds" value=[f.kind.as_deref()] placeholder="any";
                datalist #kinds { @for k in &data.kinds { option value=(k) {} } }
            }
            button.primary type="submit" { "Filter" }
            @if filtered { a.clear href="/jobs" { "Clear" } }
            span.spacer {}
            label.search {
                span { "Find a job" }
                input type="search" name="q" value=[data.search.as_deref()] placeholder="id or idempotency key";
            }
            button type="submit" { "Find" }
        }
        div.section-head {
            p.count {
                strong { (data.total) } " " (if data.total == 1 { "job" } else { "jobs" })
                @if filtered { " matching " code { (describe_filter(f)) } }
                ", newest first."
            }
            @if filtered && data.total > 0 {
                div.bulk {
                    a.button.secondary href=(bulk("retry")) { "Retry all " (data.total) "…" }
                    a.button.danger href=(bulk("discard")) { "Discard all " (data.total) "…" }
                }
            }
        }
        @if data.jobs.is_empty() {
            p.empty { "No job matches." }
        } @else {
            (selection_form(&jobs_link(f)))
            div.scroll {
            table.jobs {
                thead { tr { th { span.visually-hidden { "Select" } } th.num { "Id" } th { "Kind" } th { "Queue" } th { "State" } th.num { "Attempts" } th { "Created" } th { "Run at / finished" } th { "Last error" } } }
                tbody {
                    @for listed in &data.jobs {
                        @match listed {
                            Listed::Job(j) => tr {
                                td { (select_box(j.id)) }
                                (job_cells(j))
                                td.num { (j.attempts) "/" (j.max_attempts) }
                                td { (when(j.created_at, now)) }
                                td { (when(j.finalized_at.unwrap_or(j.run_at), now)) }
                                td.error-cell { @if let Some(e) = &j.last_error { (truncate(e, 140)) } }
                            },
                            Listed::Unreadable(row) => tr.unreadable {
                                td { (select_box(row.id)) }
                                (unreadable_cells(row, 7))
                            },
                        }
                    }
                }
            }
            }
        }
        nav.pager {
            @if data.paged {
                a href=(jobs_link(f)) { "← Newest" }
            }
            @if let Some(older) = data.older {
                @let q = if base.is_empty() { format!("/jobs?before={older}") } else { format!("/jobs?{base}&before={older}") };
                a href=(q) { "Older →" }
            }
        }
    };
    layout(admin, "Jobs", nav, &[], body)
}

/// A job's first cells in a list: its id (linked), kind, queue and state.
fn job_cells(j: &JobRecord) -> Markup {
    html! {
        td.num { a href={"/jobs/" (j.id)} { "#" (j.id) } }
        td { (j.kind) }
        td { (j.queue) }
        td { (state_badge(j.state)) }
    }
}

/// A listed row that cannot be read: its id (linked) and, across the other `columns`, which
/// column holds what jobq cannot read.
fn unreadable_cells(row: &Unreadable, columns: u32) -> Markup {
    html! {
        td.num { a href={"/jobs/" (row.id)} { "#" (row.id) } }
        td.error-cell colspan=(columns) { strong { "Unreadable row: " } (row.to_string()) }
    }
}

/// The actions on ticked jobs: a form outside the table, which the rows' boxes join by its id
/// (`form="selection"`), so it works without a script. `back` is the page to return to.
pub(crate) fn selection_form(back: &str) -> Markup {
    html! {
        form.selection #selection method="get" action="/jobs/selected" {
            input type="hidden" name="back" value=(back);
            span.muted { "Ticked jobs: " }
            button.small.secondary type="submit" name="action" value="retry" { "Retry selected…" }
            button.small.secondary type="submit" name="action" value="cancel" { "Cancel selected…" }
            button.small.danger type="submit" name="action" value="discard" { "Discard selected…" }
        }
    }
}

/// The page of a job whose row cannot be read: what is wrong, and the one repair that needs
/// nothing from the row (discard; the database refuses it if the state does not allow it).
pub(crate) fn unreadable_job(admin: &Admin, row: &Unreadable, notice: &Notice) -> Markup {
    let title = format!("Job #{}", row.id);
    let body = html! {
        p.crumbs { a href="/jobs" { "Jobs" } " / " "#" (row.id) }
        div.title-row {
            h1 { (title) }
            div.actions {
                form method="post" action={"/jobs/" (row.id) "/discard"} {
                    (csrf_field(admin))
                    button.danger type="submit" { "Discard" }
                }
            }
        }
        (notice_flash(notice))
        p.flash.error {
            "This job's row cannot be read: " (row.to_string()) ". "
            "It was written by hand or by something other than this jobq; repair the row in the "
            "database, or discard the job."
        }
    };
    layout(admin, &title, Nav::Jobs, &[], body)
}

/// A row's box for [`selection_form`].
pub(crate) fn select_box(id: i64) -> Markup {
    html! {
        input type="checkbox" name="id" value=(id) form="selection" aria-label={"Select job #" (id)};
    }
}

fn verb_of(action: &str) -> &'static str {
    match action {
        "retry" => "Retry",
        "discard" => "Discard",
        _ => "Cancel",
    }
}

/// The action's verb as "this … every job": "retries", "discards", "cancels".
fn third_person(action: &str) -> &'static str {
    match action {
        "retry" => "retries",
        "discard" => "discards",
        _ => "cancels",
    }
}

pub(crate) fn selection_confirm(admin: &Admin, data: &SelectionData) -> Markup {
    let now = Utc::now();
    let selection = &data.selection;
    let action = selection.action;
    let verb = verb_of(action);
    let applies = data.jobs.iter().filter(|j| can(action, j.state)).count() as i64;
    let left_alone = selection.ids.len() as i64 - applies;
    let body = html! {
        p.crumbs { a href=(selection.back) { "← Back" } }
        h1 { (verb) " " (plural(selection.ids.len() as i64, "selected job", "selected jobs")) "?" }
        p {
            (verb) " applies to " strong { (applies) " of them" } " now"
            @if left_alone > 0 {
                "; " (plural(left_alone, "job is", "jobs are")) " in a state " (action)
                " does not apply to (or gone) and will be left alone"
            }
            ". The audit log records it under your name."
        }
        @if action == "discard" {
            p.flash.warn { "Discarded jobs never run; they are pruned after the retention period." }
        }
        form.confirm method="post" action="/jobs/selected" {
            (csrf_field(admin))
            input type="hidden" name="action" value=(action);
            input type="hidden" name="back" value=(selection.back);
            @for id in &selection.ids { input type="hidden" name="id" value=(id); }
            button type="submit" class=(if action == "discard" { "danger" } else { "primary" }) disabled[applies == 0] {
                (verb) " " (plural(applies, "job", "jobs"))
            }
            " "
            a href=(selection.back) { "Cancel, go back" }
        }
        table.jobs {
            thead { tr { th.num { "Id" } th { "Kind" } th { "Queue" } th { "State" } th { (verb) "?" } th { "Created" } th { "Last error" } } }
            tbody {
                @for j in &data.jobs {
                    tr {
                        td.num { a href={"/jobs/" (j.id)} { "#" (j.id) } }
                        td { (j.kind) }
                        td { (j.queue) }
                        td { (state_badge(j.state)) }
                        td { @if can(action, j.state) { "yes" } @else { span.muted { "no: left alone" } } }
                        td { (when(j.created_at, now)) }
                        td.error-cell { @if let Some(e) = &j.last_error { (truncate(e, 140)) } }
                    }
                }
            }
        }
    };
    layout(
        admin,
        &format!("{verb} selected jobs"),
        Nav::None,
        &[],
        body,
    )
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// The payload editor's state on a job page: empty, or an edit sent back with what is wrong.
#[derive(Debug, Default)]
pub(crate) struct EditForm {
    pub(crate) draft: Option<String>,
    pub(crate) problem: Option<String>,
}

fn payload_editor(admin: &Admin, job: &JobRecord, payload: &Value, edit: &EditForm) -> Markup {
    html! {
        @if editable(job) {
            details.edit open[edit.problem.is_some()] {
                summary { "Edit the payload and retry" }
                p.muted {
                    "The " code { (job.kind) } " kind checks the new payload before anything is saved; "
                    "the old and the new payload go to the audit log under your name."
                }
                @if let Some(problem) = &edit.problem {
                    p.flash.error role="alert" { (problem) }
                }
                form.edit method="post" action={"/jobs/" (job.id) "/edit"} {
                    (csrf_field(admin))
                    textarea name="payload" rows="10" spellcheck="false" aria-label="Payload (JSON)" {
                        (edit.draft.clone().unwrap_or_else(|| pretty(payload)))
                    }
                    button.primary type="submit" { "Save and retry" }
                }
            }
        } @else if job.state == JobState::Failed {
            p.muted {
                @if jobs::kinds::spec(&job.kind).is_none() {
                    "This payload cannot be edited here: the dashboard does not know the kind, so it could not check an edit."
                } @else {
                    "This payload cannot be edited here: its kind masks some of it (links), and an edit of the masked copy would lose them."
                }
            }
        }
    }
}

pub(crate) fn job(
    admin: &Admin,
    job: &JobRecord,
    payload: &Value,
    known_kind: bool,
    notice: &Notice,
    edit: &EditForm,
    now: DateTime<Utc>,
) -> Markup {
    let waiting = matches!(
        job.state,
        JobState::Available | JobState::Scheduled | JobState::Retrying
    );
    let title = format!("Job #{}", job.id);
    let action_button = |action: &str, label: &str, class: &str| {
        html! {
            @if can(action, job.state) {
                form method="post" action={"/jobs/" (job.id) "/" (action)} {
                    (csrf_field(admin))
                    button class=(class) type="submit" { (label) }
                }
            }
        }
    };
    let body = html! {
        p.crumbs { a href=(jobs_link(&JobFilter { queue: Some(job.queue.clone()), ..JobFilter::default() })) { "Jobs in " (job.queue) } " / " "#" (job.id) }
        div.title-row {
            h1 { (title) " " span.kind { (job.kind) } " " (state_badge(job.state)) }
            div.actions {
                (action_button("retry", "Retry now", "primary"))
                (action_button("cancel", "Cancel", "secondary"))
                (action_button("discard", "Discard", "danger"))
            }
        }
        (notice_flash(notice))
        @if notice.done.is_some() && notice.changed == Some(0) {
            p.flash.warn {
                "Nothing changed: the job is " (job.state.as_str()) ", and "
                (notice.done.as_deref().unwrap_or("that")) " does not apply to " (job.state.as_str()) " jobs"
                @if job.key.is_some() { " (or its idempotency key is now held by another job)" }
                "."
            }
        }
        @if job.state == JobState::Failed {
            p.flash.error {
                "Failed after " (plural(job.attempts, "attempt", "attempts")) ": it stays here until an admin retries or discards it."
            }
        }
        dl.facts {
            dt { "Queue" } dd { a href=(jobs_link(&JobFilter { queue: Some(job.queue.clone()), ..JobFilter::default() })) { (job.queue) } }
            dt { "Kind" } dd { a href=(jobs_link(&JobFilter { kind: Some(job.kind.clone()), ..JobFilter::default() })) { (job.kind) } }
            dt { "Attempts" } dd { (job.attempts) " of " (job.max_attempts) }
            dt { "Priority" } dd { (job.priority) }
            dt { "Idempotency key" } dd { @match &job.key { Some(k) => code { (k) }, None => span.muted { "none" } } }
            dt { "Created" } dd { (when(job.created_at, now)) " · " (job.created_at.format("%Y-%m-%d %H:%M:%S UTC")) }
            dt { @if waiting { "Next run" } @else { "Run at" } }
            dd {
                (when(job.run_at, now)) " · " (job.run_at.format("%Y-%m-%d %H:%M:%S UTC"))
                @if waiting && job.run_at > now { span.muted { " (waiting for its backoff or schedule)" } }
            }
            @if let Some(at) = job.attempted_at {
                dt { "Last attempt" }
                dd { (when(at, now)) @if let Some(by) = &job.attempted_by { " on " code { (by) } } }
            }
            @if job.state == JobState::Running {
                @if let Some(until) = job.locked_until {
                    dt { "Lease until" } dd { (when(until, now)) }
                }
            }
            @if let Some(at) = job.finalized_at {
                dt { "Finished" } dd { (when(at, now)) " · " (at.format("%Y-%m-%d %H:%M:%S UTC")) }
            }
        }
        section {
            h2 { "Attempts" }
            @if job.errors.is_empty() {
                p.empty {
                    @if job.attempts == 0 { "Not attempted yet." }
                    @else if job.state == JobState::Running { "Attempt " (job.attempts) " is running; no attempt has failed." }
                    @else { "No failed attempt." }
                }
            } @else {
                ol.attempts reversed {
                    @for e in job.errors.iter().rev() {
                        li {
                            div.attempt-head {
                                strong { "Attempt " (e.attempt) }
                                " · " (when(e.at, now))
                                " · " (e.at.format("%Y-%m-%d %H:%M:%S UTC"))
                                " · on " code { (e.worker) }
                                " · " (e.duration_ms) " ms"
                            }
                            pre.error { (e.error) }
                        }
                    }
                }
                @if job.state == JobState::Completed {
                    p.flash.ok { "Completed on attempt " (job.attempts) "." }
                }
            }
        }
        section {
            h2 { "Payload" }
            p.muted {
                @if known_kind { "Secrets (links, client names, tokens) are redacted by the " code { (job.kind) } " kind." }
                @else { "Shown as stored: this dashboard does not know the kind " code { (job.kind) } "." }
            }
            pre.payload { code { (pretty(payload)) } }
            (payload_editor(admin, job, payload, edit))
        }
    };
    layout(admin, &title, Nav::Jobs, &[], body)
}

pub(crate) fn bulk_confirm(admin: &Admin, data: &BulkData) -> Markup {
    let now = Utc::now();
    let f = &data.filter;
    let verb = verb_of(data.action);
    let body = html! {
        p.crumbs { a href=(jobs_link(f)) { "← Back to the jobs" } }
        h1 { (verb) " " (plural(data.count, "job", "jobs")) "?" }
        @if data.count == 0 {
            p.empty { "No job matches " code { (describe_filter(f)) } " any more." }
        } @else {
            p {
                "This " (third_person(data.action)) " every job matching " code { (describe_filter(f)) }
                @if let Some(upto) = data.upto { " (ids up to #" (upto) ")" }
                ": " strong { (plural(data.count, "job", "jobs")) } " now. "
                "Jobs that arrive after this page was shown are left alone, and so are jobs in a state "
                (data.action) " does not apply to. The audit log records it under your name."
            }
            @if data.action == "discard" {
                p.flash.warn { "Discarded jobs never run; they are pruned after the retention period." }
            }
            form.confirm method="post" action="/jobs/bulk" {
                (csrf_field(admin))
                input type="hidden" name="action" value=(data.action);
                @if let Some(s) = f.state { input type="hidden" name="state" value=(s.as_str()); }
                @if let Some(q) = &f.queue { input type="hidden" name="queue" value=(q); }
                @if let Some(k) = &f.kind { input type="hidden" name="kind" value=(k); }
                @if let Some(upto) = data.upto { input type="hidden" name="upto" value=(upto); }
                button type="submit" class=(if data.action == "discard" { "danger" } else { "primary" }) {
                    (verb) " " (plural(data.count, "job", "jobs"))
                }
                " "
                a href=(jobs_link(f)) { "Cancel, go back" }
            }
            h2 { "The newest of them" }
            table.jobs {
                thead { tr { th.num { "Id" } th { "Kind" } th { "Queue" } th { "State" } th { "Created" } th { "Last error" } } }
                tbody {
                    @for listed in &data.sample {
                        @match listed {
                            Listed::Job(j) => tr {
                                (job_cells(j))
                                td { (when(j.created_at, now)) }
                                td.error-cell { @if let Some(e) = &j.last_error { (truncate(e, 140)) } }
                            },
                            Listed::Unreadable(row) => tr.unreadable { (unreadable_cells(row, 5)) },
                        }
                    }
                }
            }
        }
    };
    layout(admin, &format!("{verb} jobs"), Nav::None, &[], body)
}
