//! `jobq jobs retry|discard|cancel`: by id, or every job a filter names. A filter's jobs are
//! counted first and shown (how many, the first ids); the change is made only after a yes on
//! the terminal, or with `--yes`. `--dry-run` shows the same and writes nothing. Every change is
//! audited with the OS user who ran it.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use jobs::audit::{AuditEntry, describe_ids};
use jobs::driver::{JobFilter, Listed, Repair, skip_reason};
use jobs::state::RepairAction;
use jobs::{JobState, Queue};
use serde_json::json;

use crate::admin::{FilterArgs, print_json};
use crate::output::say;

#[derive(Args)]
pub struct RepairArgs {
    /// Job ids; without ids, every job matching the filter (asked first).
    #[arg(value_name = "ID")]
    ids: Vec<i64>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Change the jobs a filter names without asking (needed when there is no terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Show what would change (by the jobs' states now) and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// List every job, not only the counts: those changed, and those left alone and why.
    #[arg(long, short = 'v')]
    verbose: bool,
}

/// Ids shown when asking, and in a summary without `--verbose`.
const SHOWN_IDS: usize = 10;
/// Jobs per repair statement (and audit entry).
const PAGE: u32 = 1_000;

/// What a repair did, or with `--dry-run` would do.
#[derive(Default)]
struct Outcome {
    changed: Vec<i64>,
    /// A filter's jobs the action does not apply to, counted by state.
    left_by_state: BTreeMap<JobState, i64>,
    /// Those jobs one by one with why (`--verbose` only).
    listed: Vec<(i64, String)>,
    /// Jobs left alone with why: named ids the action does not apply to, and a filter's jobs
    /// that changed between being counted and the change.
    skipped: Vec<(i64, String)>,
}

impl Outcome {
    fn absorb(&mut self, repair: Repair) {
        self.changed.extend(repair.changed);
        self.skipped.extend(repair.skipped);
    }
}

pub async fn run(
    queue: &Queue,
    action: RepairAction,
    args: RepairArgs,
    json: bool,
) -> anyhow::Result<()> {
    let verb = action.as_str();
    let by_filter = args.ids.is_empty();
    if by_filter && args.filter.is_empty() {
        bail!("{verb} needs job ids, or a filter (--state, --queue, --kind) naming the jobs");
    }
    if !by_filter && !args.filter.is_empty() {
        bail!("{verb} takes job ids or a filter, not both");
    }
    let outcome = if by_filter {
        by_filter_asked(queue, action, &args).await?
    } else if args.dry_run {
        dry_run_ids(queue, action, &args.ids).await?
    } else {
        let audit = AuditEntry::cli(verb, describe_ids(&args.ids));
        let mut outcome = Outcome::default();
        outcome.absorb(apply(queue, action, &args.ids, &audit).await?);
        outcome
    };
    report(action, &args, &outcome, json)?;
    // Named ids that could not be repaired are the caller's error; a filter's leftovers are not.
    if !by_filter && !outcome.skipped.is_empty() {
        let why: Vec<String> = outcome
            .skipped
            .iter()
            .map(|(id, why)| format!("job {id}: {why}"))
            .collect();
        let would = if args.dry_run {
            "would not "
        } else {
            "could not "
        };
        bail!("{would}{verb} {}", why.join("; "));
    }
    Ok(())
}

/// A filter's jobs: counted, shown, asked about (or `--yes`), then changed: exactly the jobs
/// counted, so jobs arriving meanwhile are left alone.
async fn by_filter_asked(
    queue: &Queue,
    action: RepairAction,
    args: &RepairArgs,
) -> anyhow::Result<Outcome> {
    let plan = plan(queue, action, &args.filter, args.verbose).await?;
    if args.dry_run || plan.changed.is_empty() {
        return Ok(plan);
    }
    if !args.yes {
        confirm(action, &args.filter, &plan.changed)?;
    }
    let mut outcome = apply_all(queue, action, &args.filter, &plan.changed).await?;
    outcome.left_by_state = plan.left_by_state;
    outcome.listed = plan.listed;
    Ok(outcome)
}

/// The jobs the filter names now: those the action applies to (`changed`), the others counted
/// by state (and listed with `verbose`).
async fn plan(
    queue: &Queue,
    action: RepairAction,
    filter: &FilterArgs,
    verbose: bool,
) -> anyhow::Result<Outcome> {
    let mut plan = Outcome::default();
    for state in JobState::ALL {
        if filter.state().is_some_and(|wanted| wanted != state) {
            continue;
        }
        let in_state = JobFilter {
            state: Some(state),
            ..filter.to_filter()
        };
        if action.allows(state) {
            plan.changed.extend(all_ids(queue, &in_state).await?);
            continue;
        }
        let count = if verbose {
            let ids = all_ids(queue, &in_state).await?;
            let why = skip_reason(Some(&state.to_string()), action);
            plan.listed.extend(ids.iter().map(|id| (*id, why.clone())));
            ids.len() as i64
        } else {
            queue.driver().count_matching(&in_state).await?
        };
        if count > 0 {
            plan.left_by_state.insert(state, count);
        }
    }
    plan.changed.sort_unstable();
    plan.listed.sort_unstable();
    Ok(plan)
}

async fn all_ids(queue: &Queue, filter: &JobFilter) -> anyhow::Result<Vec<i64>> {
    let mut ids = Vec::new();
    let mut after = 0;
    loop {
        let page = queue.matching_ids(filter, after, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(ids);
        };
        after = *last;
        ids.extend(page);
    }
}

/// Named ids under `--dry-run`: each looked up, and sorted by whether the action applies.
async fn dry_run_ids(queue: &Queue, action: RepairAction, ids: &[i64]) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    for id in ids {
        let state = match queue.driver().job(*id).await? {
            Some(Listed::Job(job)) => Some(job.state),
            Some(Listed::Unreadable(row)) => {
                // Its state decides, and the row does not read: say so rather than guess.
                let reason = format!(
                    "cannot be read ({row}); {} decides by its stored state",
                    action.as_str()
                );
                outcome.skipped.push((*id, reason));
                continue;
            }
            None => None,
        };
        match state {
            Some(state) if action.allows(state) => outcome.changed.push(*id),
            state => outcome.skipped.push((
                *id,
                skip_reason(state.map(|s| s.to_string()).as_ref(), action),
            )),
        }
    }
    Ok(outcome)
}

/// Asks on the terminal; without one, refuses, saying how to go ahead.
fn confirm(action: RepairAction, filter: &FilterArgs, ids: &[i64]) -> anyhow::Result<()> {
    let verb = action.as_str();
    let what = format!(
        "{verb} {} {} ({}: {})",
        ids.len(),
        filter.describe(),
        if ids.len() > SHOWN_IDS {
            "first ids"
        } else {
            "ids"
        },
        shown_ids(ids)
    );
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        bail!(
            "this would {what}. Nothing was changed: there is no terminal to ask on. \
             Run it again with --yes to go ahead, or --dry-run to see what would change."
        );
    }
    let mut stderr = std::io::stderr().lock();
    write!(stderr, "About to {what}.\nGo ahead? [y/N] ")?;
    stderr.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        bail!("not confirmed: nothing was changed");
    }
    Ok(())
}

fn shown_ids(ids: &[i64]) -> String {
    let shown: Vec<String> = ids.iter().take(SHOWN_IDS).map(i64::to_string).collect();
    let more = if ids.len() > SHOWN_IDS { ", …" } else { "" };
    format!("{}{more}", shown.join(", "))
}

async fn apply(
    queue: &Queue,
    action: RepairAction,
    ids: &[i64],
    audit: &AuditEntry,
) -> anyhow::Result<Repair> {
    Ok(match action {
        RepairAction::Retry => queue.retry(ids, audit).await?,
        RepairAction::Discard => queue.discard(ids, audit).await?,
        RepairAction::Cancel => queue.cancel(ids, audit).await?,
    })
}

/// Repairs the counted jobs a page at a time (one audit entry each), with progress on a
/// terminal.
async fn apply_all(
    queue: &Queue,
    action: RepairAction,
    filter: &FilterArgs,
    ids: &[i64],
) -> anyhow::Result<Outcome> {
    let verb = action.as_str();
    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(ids.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{msg}: {pos}/{len} jobs ({per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(verb);
        bar
    } else {
        ProgressBar::hidden()
    };
    let target = filter.describe();
    let mut outcome = Outcome::default();
    for page in ids.chunks(PAGE as usize) {
        let audit = AuditEntry::cli(verb, format!("{target}: {}", describe_ids(page)));
        outcome.absorb(apply(queue, action, page, &audit).await?);
        progress.inc(page.len() as u64);
    }
    progress.finish_and_clear();
    Ok(outcome)
}

/// One summary line (the jobs left alone counted, not listed, unless `--verbose`).
fn report(
    action: RepairAction,
    args: &RepairArgs,
    outcome: &Outcome,
    json: bool,
) -> anyhow::Result<()> {
    let verb = action.as_str();
    if json {
        return print_json(&json!({
            "action": verb,
            "dry_run": args.dry_run,
            "changed": outcome.changed,
            "left_alone": outcome.left_by_state.iter()
                .map(|(state, n)| (state.as_str(), *n)).collect::<BTreeMap<_, _>>(),
            "skipped": outcome.listed.iter().chain(&outcome.skipped)
                .map(|(id, why)| json!({"id": id, "reason": why})).collect::<Vec<_>>(),
        }));
    }
    let head = if args.dry_run {
        format!(
            "{verb} (dry run, nothing changed): {} job(s) would change",
            outcome.changed.len()
        )
    } else {
        format!("{verb}: {} job(s) changed", outcome.changed.len())
    };
    let shown = if outcome.changed.is_empty() || args.verbose {
        String::new()
    } else {
        format!(" ({})", shown_ids(&outcome.changed))
    };
    let by_filter = args.ids.is_empty();
    say!("{head}{shown}{}", left_alone(action, by_filter, outcome));
    if args.verbose {
        let done = if args.dry_run {
            "would change"
        } else {
            "changed"
        };
        for id in &outcome.changed {
            say!("  {done}: job {id}");
        }
        for (id, why) in outcome.listed.iter().chain(&outcome.skipped) {
            say!("  left alone: job {id}: {why}");
        }
    }
    Ok(())
}

/// `; 35 left alone (completed=35; cancel applies to available, scheduled, retrying jobs)`.
fn left_alone(action: RepairAction, by_filter: bool, outcome: &Outcome) -> String {
    let mut parts: Vec<String> = outcome
        .left_by_state
        .iter()
        .map(|(state, n)| format!("{state}={n}"))
        .collect();
    if by_filter && !outcome.skipped.is_empty() {
        parts.push(format!("{} changed since counted", outcome.skipped.len()));
    }
    let total = outcome.left_by_state.values().sum::<i64>() + outcome.skipped.len() as i64;
    if total == 0 {
        return String::new();
    }
    let rule = if outcome.left_by_state.is_empty() {
        String::new()
    } else {
        let allowed: Vec<&str> = action.allowed_from().iter().map(|s| s.as_str()).collect();
        format!(
            "; {} applies to {} jobs",
            action.as_str(),
            allowed.join(", ")
        )
    };
    if parts.is_empty() {
        format!("; {total} left alone")
    } else {
        format!("; {total} left alone ({}{rule})", parts.join(" "))
    }
}
