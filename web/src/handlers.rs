//! The routes: pages read the queue through its driver; actions go through `Queue`'s audited
//! repairs with the admin's name, then redirect to a page that says what happened.

use std::collections::{BTreeMap, HashMap};

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Redirect, Response};
use chrono::Utc;
use jobs::audit::{AuditEntry, describe_ids};
use jobs::driver::{EditOutcome, JobFilter, JobRecord, Listed, PayloadEdit, Repair};
use jobs::queue::QueueError;
use jobs::state::RepairAction;
use jobs::{JobState, Queue};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Admin, csrf_field};
use crate::{AppState, chart, views};

mod reports;
pub(crate) use reports::{FailuresData, PeriodicRow, failures_page, periodic_page};

/// Jobs per page of the list.
pub(crate) const PAGE: u32 = 50;
/// Jobs per repair statement in a bulk action.
const BULK_PAGE: u32 = 500;

/// A page could not be built: logged in full, shown without details.
pub(crate) struct PageError(QueueError);

impl From<QueueError> for PageError {
    fn from(e: QueueError) -> Self {
        PageError(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self.0, "dashboard request failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            views::message_page(
                "Database error",
                "The dashboard could not read or write the queue. The server log has the details; try again.",
            ),
        )
            .into_response()
    }
}

type PageResult = Result<Response, PageError>;

fn queue(state: &AppState) -> &Queue {
    &state.inner.queue
}

/// What a redirect after an action tells the page: one of a fixed set of messages, with counts.
#[derive(Debug, Default)]
pub(crate) struct Notice {
    pub(crate) done: Option<String>,
    pub(crate) changed: Option<u64>,
    pub(crate) skipped: Option<u64>,
}

impl Notice {
    fn query(action: &str, repair: &Repair) -> String {
        format!(
            "done={action}&changed={}&skipped={}",
            repair.changed.len(),
            repair.skipped.len()
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Overview

pub(crate) struct QueueRow {
    pub(crate) name: String,
    pub(crate) paused: bool,
    pub(crate) oldest_available_age_s: Option<f64>,
    pub(crate) counts: HashMap<JobState, i64>,
    pub(crate) minutes: Vec<chart::Minute>,
}

/// Running jobs read for the workers table.
const RUNNING_READ: u32 = 1_000;

pub(crate) struct OverviewData {
    pub(crate) queues: Vec<QueueRow>,
    /// Each worker's running jobs (by the worker id that claimed them), newest first.
    pub(crate) running: HashMap<String, Vec<JobRecord>>,
    pub(crate) live_workers: Vec<jobs::driver::WorkerInfo>,
    pub(crate) stale_workers: Vec<jobs::driver::WorkerInfo>,
    pub(crate) audit: Vec<jobs::audit::AuditRecord>,
    pub(crate) now: chrono::DateTime<Utc>,
}

async fn overview_data(state: &AppState) -> Result<OverviewData, QueueError> {
    let driver = queue(state).driver();
    let now = Utc::now();
    let counts = driver.state_counts().await?;
    let infos = driver.queues().await?;
    let series = driver.outcome_series(chart::start_of(now)).await?;
    let workers = driver.workers().await?;
    let audit = driver.audit_log(8).await?;
    let running_filter = JobFilter {
        state: Some(JobState::Running),
        ..JobFilter::default()
    };
    let mut running: HashMap<String, Vec<JobRecord>> = HashMap::new();
    // A running row that cannot be read names no worker: /jobs lists it.
    for job in readable(driver.list_jobs(&running_filter, RUNNING_READ).await?) {
        let worker = job.attempted_by.clone().unwrap_or_default();
        running.entry(worker).or_default().push(job);
    }
    let mut queues: BTreeMap<String, QueueRow> = BTreeMap::new();
    let row = |name: &str| QueueRow {
        name: name.to_string(),
        paused: false,
        oldest_available_age_s: None,
        counts: HashMap::new(),
        minutes: Vec::new(),
    };
    for info in &infos {
        let r = queues
            .entry(info.name.clone())
            .or_insert_with(|| row(&info.name));
        r.paused = info.paused;
        r.oldest_available_age_s = info.oldest_available_age_s;
    }
    for c in &counts {
        *queues
            .entry(c.queue.clone())
            .or_insert_with(|| row(&c.queue))
            .counts
            .entry(c.state)
            .or_default() += c.count;
    }
    for s in &series {
        queues
            .entry(s.queue.clone())
            .or_insert_with(|| row(&s.queue));
    }
    for r in queues.values_mut() {
        r.minutes = chart::series(&series, &r.name, now);
    }
    let stale_after = chrono::Duration::from_std(state.inner.worker_stale_after)
        .unwrap_or(chrono::Duration::seconds(15));
    let (live_workers, stale_workers) = workers
        .into_iter()
        .partition(|w| now - w.heartbeat_at <= stale_after);
    Ok(OverviewData {
        queues: queues.into_values().collect(),
        running,
        live_workers,
        stale_workers,
        audit,
        now,
    })
}

pub(crate) async fn overview(
    State(state): State<AppState>,
    admin: Admin,
    Query(notice): Query<NoticeFields>,
) -> PageResult {
    let data = overview_data(&state).await?;
    Ok(views::overview(&admin, &data, &notice.notice()).into_response())
}

/// The overview's figures as JSON, for the page's live counts and for scripts.
pub(crate) async fn overview_json(State(state): State<AppState>, _admin: Admin) -> PageResult {
    let data = overview_data(&state).await?;
    let queues: serde_json::Map<String, Value> = data
        .queues
        .iter()
        .map(|q| {
            let counts: serde_json::Map<String, Value> = q
                .counts
                .iter()
                .map(|(s, n)| (s.as_str().to_string(), json!(n)))
                .collect();
            (
                q.name.clone(),
                json!({
                    "paused": q.paused,
                    "oldest_available_age_s": q.oldest_available_age_s,
                    "counts": counts,
                    "last_hour": {
                        "completed": q.minutes.iter().map(|m| m.completed).sum::<i64>(),
                        "failed": q.minutes.iter().map(|m| m.failed).sum::<i64>(),
                    },
                }),
            )
        })
        .collect();
    Ok(Json(json!({
        "queues": queues,
        "live_workers": data.live_workers.len(),
        "at": data.now,
    }))
    .into_response())
}

// ---------------------------------------------------------------------------------------------
// Jobs

/// The list's filter as the query string gives it; bad values are shown, not fatal.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct ListQuery {
    pub(crate) state: Option<String>,
    pub(crate) queue: Option<String>,
    pub(crate) kind: Option<String>,
    pub(crate) q: Option<String>,
    pub(crate) before: Option<String>,
    #[serde(flatten)]
    pub(crate) notice: NoticeFields,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct NoticeFields {
    pub(crate) done: Option<String>,
    pub(crate) changed: Option<String>,
    pub(crate) skipped: Option<String>,
}

impl NoticeFields {
    fn notice(&self) -> Notice {
        Notice {
            done: self.done.clone(),
            changed: self.changed.as_deref().and_then(|n| n.parse().ok()),
            skipped: self.skipped.as_deref().and_then(|n| n.parse().ok()),
        }
    }
}

fn non_empty(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// A filter from form fields: the filter, and the problems with what was given.
pub(crate) fn parse_filter(
    state: &Option<String>,
    queue: &Option<String>,
    kind: &Option<String>,
) -> (JobFilter, Vec<String>) {
    let mut problems = Vec::new();
    let state = match non_empty(state) {
        None => None,
        Some(s) => match s.parse::<JobState>() {
            Ok(state) => Some(state),
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        },
    };
    (
        JobFilter {
            state,
            queue: non_empty(queue),
            kind: non_empty(kind),
            before_id: None,
        },
        problems,
    )
}

/// `state=failed&queue=panel`: the filter as a query string (empty fields left out).
pub(crate) fn filter_query(filter: &JobFilter) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    if let Some(s) = filter.state {
        q.append_pair("state", s.as_str());
    }
    if let Some(queue) = &filter.queue {
        q.append_pair("queue", queue);
    }
    if let Some(kind) = &filter.kind {
        q.append_pair("kind", kind);
    }
    q.finish()
}

/// `state=failed queue=* kind=*`, for the audit log and confirmations.
pub(crate) fn describe_filter(filter: &JobFilter) -> String {
    format!(
        "state={} queue={} kind={}",
        filter.state.map(|s| s.as_str()).unwrap_or("*"),
        filter.queue.as_deref().unwrap_or("*"),
        filter.kind.as_deref().unwrap_or("*")
    )
}

pub(crate) struct ListData {
    pub(crate) filter: JobFilter,
    pub(crate) search: Option<String>,
    pub(crate) problems: Vec<String>,
    pub(crate) jobs: Vec<Listed>,
    pub(crate) older: Option<i64>,
    pub(crate) paged: bool,
    pub(crate) total: i64,
    pub(crate) queues: Vec<String>,
    pub(crate) kinds: Vec<String>,
}

pub(crate) async fn jobs_list(
    State(state): State<AppState>,
    admin: Admin,
    Query(query): Query<ListQuery>,
) -> PageResult {
    let driver = queue(&state).driver();
    let (mut filter, mut problems) = parse_filter(&query.state, &query.queue, &query.kind);
    let search = non_empty(&query.q);
    if let Some(term) = &search {
        // An id (`17` or `#17`) or an idempotency key: straight to the job when it exists.
        let as_id = term.strip_prefix('#').unwrap_or(term).parse::<i64>().ok();
        let found = match as_id {
            Some(id) => driver.job(id).await?,
            None => None,
        };
        let found = match found {
            Some(job) => Some(job),
            None => driver.job_by_key(term).await?,
        };
        if let Some(job) = found {
            return Ok(Redirect::to(&format!("/jobs/{}", job.id())).into_response());
        }
        problems.push(format!("No job has the id or idempotency key “{term}”."));
    }
    let total = driver.count_matching(&filter).await?;
    let before = non_empty(&query.before);
    match before.as_deref().map(str::parse::<i64>) {
        None => {}
        Some(Ok(id)) => filter.before_id = Some(id),
        Some(Err(_)) => problems.push("The page marker `before` is not a job id.".to_string()),
    }
    let mut jobs = driver.list_jobs(&filter, PAGE + 1).await?;
    let older = if jobs.len() > PAGE as usize {
        jobs.truncate(PAGE as usize);
        jobs.last().map(Listed::id)
    } else {
        None
    };
    let paged = filter.before_id.is_some();
    filter.before_id = None;
    let mut queues: Vec<String> = driver.queues().await?.into_iter().map(|q| q.name).collect();
    if let Some(q) = &filter.queue
        && !queues.contains(q)
    {
        queues.push(q.clone());
    }
    let kinds = jobs::kinds::specs()
        .iter()
        .map(|s| s.kind.to_string())
        .collect();
    let data = ListData {
        filter,
        search,
        problems,
        jobs,
        older,
        paged,
        total,
        queues,
        kinds,
    };
    Ok(views::jobs_list(&admin, &data, &query.notice.notice()).into_response())
}

/// The listed jobs that read (an unreadable row is on the jobs list, naming its column).
fn readable(listed: Vec<Listed>) -> impl Iterator<Item = JobRecord> {
    listed.into_iter().filter_map(|row| match row {
        Listed::Job(job) => Some(*job),
        Listed::Unreadable(_) => None,
    })
}

/// The payload as admins may see it: the kind's redaction; an unknown kind's as stored.
pub(crate) fn redacted(job: &JobRecord) -> (Value, bool) {
    match jobs::kinds::spec(&job.kind) {
        Some(spec) => ((spec.redact)(&job.payload), true),
        None => (job.payload.clone(), false),
    }
}

pub(crate) async fn job_page(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Query(notice): Query<NoticeFields>,
) -> PageResult {
    let notice = notice.notice();
    let Ok(id) = id.parse::<i64>() else {
        return Ok(not_found_page());
    };
    let job = match queue(&state).driver().job(id).await? {
        Some(Listed::Job(job)) => job,
        Some(Listed::Unreadable(row)) => {
            return Ok(views::unreadable_job(&admin, &row, &notice).into_response());
        }
        None => {
            return Ok((
                StatusCode::NOT_FOUND,
                views::message_page(
                    "No such job",
                    &format!("There is no job #{id}: it may have been pruned after it finished."),
                ),
            )
                .into_response());
        }
    };
    let (payload, known) = redacted(&job);
    let edit = views::EditForm::default();
    Ok(views::job(&admin, &job, &payload, known, &notice, &edit, Utc::now()).into_response())
}

/// Whether a job's payload may be edited here: a failed job of a kind the dashboard knows
/// (its parser checks the edit), whose payload has nothing its kind masks (an edit of a masked
/// copy would write the mask over the secret).
pub(crate) fn editable(job: &JobRecord) -> bool {
    job.state == JobState::Failed
        && jobs::kinds::spec(&job.kind)
            .is_some_and(|spec| (spec.redact)(&job.payload) == job.payload)
}

/// What a payload's audit entry shows of it: its kind's redaction, compact, cut to a length.
fn audited_payload(kind: &str, payload: &Value) -> String {
    const SHOWN: usize = 2_000;
    let shown = match jobs::kinds::spec(kind) {
        Some(spec) => (spec.redact)(payload),
        None => payload.clone(),
    };
    let text = shown.to_string();
    if text.chars().count() > SHOWN {
        format!("{}…", text.chars().take(SHOWN).collect::<String>())
    } else {
        text
    }
}

/// The kind's parser on an edited payload: the normalised payload to store, or why not.
fn check_payload(kind: &str, payload: &Value) -> Result<Value, String> {
    let spec = jobs::kinds::spec(kind).ok_or_else(|| {
        format!("this dashboard does not know the kind {kind}, so it cannot check a payload for it")
    })?;
    (spec.parse)(payload)
        .map(|parsed| parsed.payload)
        .map_err(|problem| format!("not a valid {kind} payload: {problem}"))
}

/// `POST /jobs/{id}/edit`: the edited payload, checked by the job's kind, stored and the job
/// retried in one audited transaction; a bad payload is shown back with what is wrong.
pub(crate) async fn job_edit(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> PageResult {
    if let Some(refused) = admin.csrf_refusal(csrf_field(&body).as_deref()) {
        return Ok(refused);
    }
    let Ok(id) = id.parse::<i64>() else {
        return Ok(not_found_page());
    };
    let draft = url::form_urlencoded::parse(&body)
        .find(|(name, _)| name == "payload")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let outcome = match serde_json::from_str::<Value>(&draft) {
        Err(error) => EditOutcome::Invalid(format!("the payload is not JSON: {error}")),
        Ok(payload) => {
            let actor = admin.name.clone();
            let audit = move |job: &JobRecord, new: &Value| AuditEntry {
                actor: actor.clone(),
                surface: "dashboard",
                action: "edit_retry",
                target: format!(
                    "job {} ({}) payload {} -> {}",
                    job.id,
                    job.kind,
                    audited_payload(&job.kind, &job.payload),
                    audited_payload(&job.kind, new)
                ),
            };
            let edit = PayloadEdit {
                id,
                payload: &payload,
                check: &check_payload,
                audit: &audit,
            };
            queue(&state).retry_edited(&edit).await?
        }
    };
    tracing::info!(admin = %admin.name, job = id, ?outcome, "dashboard payload edit");
    match outcome {
        EditOutcome::Retried => {
            Ok(Redirect::to(&format!("/jobs/{id}?done=edit_retry&changed=1")).into_response())
        }
        EditOutcome::Invalid(problem) | EditOutcome::LeftAlone(problem) => {
            let job = match queue(&state).driver().job(id).await? {
                Some(Listed::Job(job)) => job,
                Some(Listed::Unreadable(row)) => {
                    let page = views::unreadable_job(&admin, &row, &Notice::default());
                    return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
                }
                None => return Ok(not_found_page()),
            };
            let (payload, known) = redacted(&job);
            let edit = views::EditForm {
                draft: Some(draft),
                problem: Some(problem),
            };
            let page = views::job(
                &admin,
                &job,
                &payload,
                known,
                &Notice::default(),
                &edit,
                Utc::now(),
            );
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// Whether a repair applies to a job in this state: the queue's own rule.
pub(crate) fn can(action: &str, state: JobState) -> bool {
    RepairAction::parse(action).is_some_and(|a| a.allows(state))
}

fn repair_action(action: &str) -> Option<&'static str> {
    RepairAction::parse(action).map(RepairAction::as_str)
}

async fn apply(
    queue: &Queue,
    action: &'static str,
    ids: &[i64],
    entry: &AuditEntry,
) -> Result<Repair, QueueError> {
    match action {
        "retry" => queue.retry(ids, entry).await,
        "discard" => queue.discard(ids, entry).await,
        _ => queue.cancel(ids, entry).await,
    }
}

fn audit_entry(admin: &Admin, action: &'static str, target: String) -> AuditEntry {
    AuditEntry {
        actor: admin.name.clone(),
        surface: "dashboard",
        action,
        target,
    }
}

pub(crate) async fn job_action(
    State(state): State<AppState>,
    admin: Admin,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> PageResult {
    if let Some(refused) = admin.csrf_refusal(csrf_field(&body).as_deref()) {
        return Ok(refused);
    }
    let (Ok(id), Some(action)) = (id.parse::<i64>(), repair_action(&action)) else {
        return Ok(not_found_page());
    };
    let entry = audit_entry(&admin, action, describe_ids(&[id]));
    let repair = apply(queue(&state), action, &[id], &entry).await?;
    tracing::info!(admin = %admin.name, action, job = id, changed = repair.changed.len(), "dashboard repair");
    Ok(Redirect::to(&format!("/jobs/{id}?{}", Notice::query(action, &repair))).into_response())
}

// ---------------------------------------------------------------------------------------------
// Bulk repairs by filter

#[derive(Debug, Deserialize)]
pub(crate) struct BulkQuery {
    action: Option<String>,
    state: Option<String>,
    queue: Option<String>,
    kind: Option<String>,
}

pub(crate) struct BulkData {
    pub(crate) action: &'static str,
    pub(crate) filter: JobFilter,
    pub(crate) count: i64,
    pub(crate) upto: Option<i64>,
    pub(crate) sample: Vec<Listed>,
}

fn bulk_refusal(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        views::message_page("Cannot do that", message),
    )
        .into_response()
}

const NEEDS_FILTER: &str = "A bulk action needs a filter (a state, a queue or a kind): \
     choose one on the jobs page first.";

/// The confirmation: how many jobs the filter names now, the newest of them, and a form that
/// acts on exactly those (jobs arriving later are left alone).
pub(crate) async fn bulk_confirm(
    State(state): State<AppState>,
    admin: Admin,
    Query(query): Query<BulkQuery>,
) -> PageResult {
    let Some(action) = query.action.as_deref().and_then(repair_action) else {
        return Ok(bulk_refusal("Choose retry, discard or cancel."));
    };
    let (filter, problems) = parse_filter(&query.state, &query.queue, &query.kind);
    if let Some(problem) = problems.first() {
        return Ok(bulk_refusal(problem));
    }
    if filter.state.is_none() && filter.queue.is_none() && filter.kind.is_none() {
        return Ok(bulk_refusal(NEEDS_FILTER));
    }
    let driver = queue(&state).driver();
    let sample = driver.list_jobs(&filter, 10).await?;
    let upto = sample.first().map(Listed::id);
    let count = match upto {
        Some(upto) => {
            let mut through = filter.clone();
            through.before_id = Some(upto + 1);
            driver.count_matching(&through).await?
        }
        None => 0,
    };
    let data = BulkData {
        action,
        filter,
        count,
        upto,
        sample,
    };
    Ok(views::bulk_confirm(&admin, &data).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct BulkForm {
    csrf: Option<String>,
    action: Option<String>,
    state: Option<String>,
    queue: Option<String>,
    kind: Option<String>,
    /// The newest job id the confirmation counted: newer jobs are left alone.
    upto: Option<i64>,
}

pub(crate) async fn bulk_apply(
    State(state): State<AppState>,
    admin: Admin,
    Form(form): Form<BulkForm>,
) -> PageResult {
    if let Some(refused) = admin.csrf_refusal(form.csrf.as_deref()) {
        return Ok(refused);
    }
    let Some(action) = form.action.as_deref().and_then(repair_action) else {
        return Ok(bulk_refusal("Choose retry, discard or cancel."));
    };
    let (filter, problems) = parse_filter(&form.state, &form.queue, &form.kind);
    if let Some(problem) = problems.first() {
        return Ok(bulk_refusal(problem));
    }
    if filter.state.is_none() && filter.queue.is_none() && filter.kind.is_none() {
        return Ok(bulk_refusal(NEEDS_FILTER));
    }
    let upto = form.upto.unwrap_or(i64::MAX);
    let q = queue(&state);
    let target = format!("jobs matching {}", describe_filter(&filter));
    let mut total = Repair::default();
    let mut after = 0;
    loop {
        let mut ids = q.matching_ids(&filter, after, BULK_PAGE).await?;
        let Some(last) = ids.last().copied() else {
            break;
        };
        after = last;
        ids.retain(|id| *id <= upto);
        if ids.is_empty() {
            break;
        }
        let entry = audit_entry(&admin, action, format!("{target}: {}", describe_ids(&ids)));
        let done = apply(q, action, &ids, &entry).await?;
        total.changed.extend(done.changed);
        total.skipped.extend(done.skipped);
        if last > upto {
            break;
        }
    }
    tracing::info!(admin = %admin.name, action, filter = %describe_filter(&filter),
        changed = total.changed.len(), skipped = total.skipped.len(), "dashboard bulk repair");
    let filter_part = filter_query(&filter);
    Ok(Redirect::to(&format!(
        "/jobs?{filter_part}&{}",
        Notice::query(action, &total)
    ))
    .into_response())
}

// Failures grouped by error and the periodic jobs: `reports.rs`.

// ---------------------------------------------------------------------------------------------
// Repairs of the jobs an admin ticked

/// The most jobs one selection may name (the list shows 50 a page; a failure group more).
const MAX_SELECTED: usize = BULK_PAGE as usize;

/// A selection as a query string or form gives it: `action=retry&id=17&id=18&back=/jobs?...`
/// (repeated `id`s, which serde's form decoding cannot read).
pub(crate) struct Selection {
    pub(crate) action: &'static str,
    pub(crate) ids: Vec<i64>,
    /// The page to go back to: a path on this site.
    pub(crate) back: String,
    pub(crate) csrf: Option<String>,
}

impl Selection {
    /// The selection, or why it is refused.
    fn parse(raw: &[u8]) -> Result<Selection, String> {
        let mut action = None;
        let mut ids = Vec::new();
        let mut back = None;
        let mut csrf = None;
        for (name, value) in url::form_urlencoded::parse(raw) {
            match name.as_ref() {
                "action" => action = repair_action(&value),
                "id" => match value.parse::<i64>() {
                    Ok(id) if !ids.contains(&id) => ids.push(id),
                    Ok(_) => {}
                    Err(_) => return Err(format!("“{value}” is not a job id.")),
                },
                "back" => back = Some(value.into_owned()),
                "csrf" => csrf = Some(value.into_owned()),
                _ => {}
            }
        }
        let Some(action) = action else {
            return Err("Choose retry, discard or cancel.".to_string());
        };
        if ids.is_empty() {
            return Err(
                "No job selected: tick the jobs on the list, then choose an action.".to_string(),
            );
        }
        if ids.len() > MAX_SELECTED {
            return Err(format!(
                "{} jobs selected; one action takes at most {MAX_SELECTED}. Use a filter and \
                 “Retry all” or “Discard all” instead.",
                ids.len()
            ));
        }
        ids.sort_unstable();
        Ok(Selection {
            action,
            ids,
            back: crate::auth::safe_next(back.as_deref().or(Some("/jobs"))),
            csrf,
        })
    }
}

pub(crate) struct SelectionData {
    pub(crate) selection: Selection,
    /// The selected jobs that still exist, in id order.
    pub(crate) jobs: Vec<JobRecord>,
}

/// The confirmation of an action on ticked jobs: each of them, whether the action applies to
/// it now, and a form that acts on exactly these ids.
pub(crate) async fn selection_confirm(
    State(state): State<AppState>,
    admin: Admin,
    uri: axum::http::Uri,
) -> PageResult {
    let selection = match Selection::parse(uri.query().unwrap_or("").as_bytes()) {
        Ok(selection) => selection,
        Err(refusal) => return Ok(bulk_refusal(&refusal)),
    };
    let driver = queue(&state).driver();
    let mut jobs = Vec::with_capacity(selection.ids.len());
    for id in &selection.ids {
        if let Some(Listed::Job(job)) = driver.job(*id).await? {
            jobs.push(*job);
        }
    }
    let data = SelectionData { selection, jobs };
    Ok(views::selection_confirm(&admin, &data).into_response())
}

/// Applies the confirmed action to the ticked ids, audited as one entry; jobs it does not
/// apply to are left alone and counted.
pub(crate) async fn selection_apply(
    State(state): State<AppState>,
    admin: Admin,
    body: axum::body::Bytes,
) -> PageResult {
    let selection = match Selection::parse(&body) {
        Ok(selection) => selection,
        Err(refusal) => {
            // The CSRF check comes first, whatever else is wrong with the form.
            return Ok(admin
                .csrf_refusal(csrf_field(&body).as_deref())
                .unwrap_or_else(|| bulk_refusal(&refusal)));
        }
    };
    if let Some(refused) = admin.csrf_refusal(selection.csrf.as_deref()) {
        return Ok(refused);
    }
    let action = selection.action;
    let target = format!("selected {}", describe_ids(&selection.ids));
    let entry = audit_entry(&admin, action, target);
    let repair = apply(queue(&state), action, &selection.ids, &entry).await?;
    tracing::info!(admin = %admin.name, action, selected = selection.ids.len(),
        changed = repair.changed.len(), skipped = repair.skipped.len(), "dashboard repair of a selection");
    let back = &selection.back;
    let joiner = if back.contains('?') { '&' } else { '?' };
    Ok(Redirect::to(&format!("{back}{joiner}{}", Notice::query(action, &repair))).into_response())
}

// ---------------------------------------------------------------------------------------------
// Queues, audit, assets

pub(crate) async fn queue_action(
    State(state): State<AppState>,
    admin: Admin,
    Path((name, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> PageResult {
    if let Some(refused) = admin.csrf_refusal(csrf_field(&body).as_deref()) {
        return Ok(refused);
    }
    let (paused, action) = match action.as_str() {
        "pause" => (true, "pause"),
        "resume" => (false, "resume"),
        _ => return Ok(not_found_page()),
    };
    if !jobs::job::is_valid_queue_name(&name) {
        return Ok(bulk_refusal(
            "That is not a valid queue name: 1 to 64 characters of a-z, 0-9, _ and -.",
        ));
    }
    let entry = audit_entry(&admin, action, format!("queue {name}"));
    queue(&state).set_paused(&name, paused, &entry).await?;
    tracing::info!(admin = %admin.name, action, queue = %name, "dashboard queue change");
    Ok(Redirect::to(&format!("/?done={action}&changed=1#queue-{name}")).into_response())
}

/// Entries on the audit page.
const AUDIT_SHOWN: usize = 200;
/// Entries read to find those naming a job (the job filter reads targets).
const AUDIT_SEARCHED: u32 = 5_000;

/// The audit page's filter as the query string gives it.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditQuery {
    pub(crate) actor: Option<String>,
    pub(crate) action: Option<String>,
    pub(crate) job: Option<String>,
}

pub(crate) struct AuditData {
    pub(crate) query: AuditQuery,
    pub(crate) records: Vec<jobs::audit::AuditRecord>,
    pub(crate) problems: Vec<String>,
    pub(crate) filtered: bool,
}

pub(crate) async fn audit_page(
    State(state): State<AppState>,
    admin: Admin,
    Query(query): Query<AuditQuery>,
) -> PageResult {
    let filter = jobs::audit::AuditFilter {
        actor: non_empty(&query.actor),
        action: non_empty(&query.action),
    };
    let mut problems = Vec::new();
    let job = match non_empty(&query.job) {
        None => None,
        Some(job) => match job.strip_prefix('#').unwrap_or(&job).parse::<i64>() {
            Ok(id) => Some(id),
            Err(_) => {
                problems.push(format!("“{job}” is not a job id."));
                None
            }
        },
    };
    let driver = queue(&state).driver();
    let records = match job {
        None => {
            driver
                .audit_log_matching(&filter, AUDIT_SHOWN as u32)
                .await?
        }
        Some(id) => {
            let mut records = driver.audit_log_matching(&filter, AUDIT_SEARCHED).await?;
            records.retain(|r| r.names_job(id));
            records.truncate(AUDIT_SHOWN);
            records
        }
    };
    let filtered = filter.actor.is_some() || filter.action.is_some() || job.is_some();
    let data = AuditData {
        query,
        records,
        problems,
        filtered,
    };
    Ok(views::audit(&admin, &data, Utc::now()).into_response())
}

pub(crate) async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("../assets/style.css"),
    )
        .into_response()
}

/// The tab's icon: browsers ask for `/favicon.ico` whatever the page says, so both names serve
/// it (an SVG; the security headers go on it like on every response).
pub(crate) async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../assets/favicon.svg"),
    )
        .into_response()
}

pub(crate) async fn live_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("../assets/live.js"),
    )
        .into_response()
}

fn not_found_page() -> Response {
    (
        StatusCode::NOT_FOUND,
        views::message_page("Not found", "There is no such page."),
    )
        .into_response()
}

pub(crate) async fn not_found() -> Response {
    not_found_page()
}
