//! Schema versions: forward-only migrations, and a refusal to run against a schema this binary
//! does not understand (older: migrate first; newer: upgrade jobq).

use sqlx::migrate::Migrator;

pub static POSTGRES: Migrator = sqlx::migrate!("../migrations/postgres");
pub static SQLITE: Migrator = sqlx::migrate!("../migrations/sqlite");

/// The newest version a migrator knows.
pub fn latest(migrator: &Migrator) -> i64 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Compares what the database has applied with what this binary knows. `Ok` only when equal.
pub fn compare(applied: &[i64], known: &Migrator, location: &str) -> Result<(), String> {
    let newest_known = latest(known);
    let newest_applied = applied.iter().copied().max().unwrap_or(0);
    if newest_applied > newest_known {
        return Err(format!(
            "the database at {location} has schema version {newest_applied}, newer than this jobq \
             understands (up to {newest_known}): run a jobq release that knows version \
             {newest_applied}; refusing to run"
        ));
    }
    let missing: Vec<i64> = known
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the database at {location} has schema version {newest_applied} but this jobq needs \
             version {newest_known}: run `jobq migrate` (with the same JOBQ_DATABASE_URL) first"
        ));
    }
    Ok(())
}
