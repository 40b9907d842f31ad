//! What the status line and the report read. Almost all of it goes through the storage
//! ports (`ReportStore`, `JobQueue`, `AccountStore`, `UserStore`, `UsageStore`), which
//! answer alike on SQLite and PostgreSQL; the two reads no port offers (the ledger per
//! job, the alerts that fired) are plain SQL that both dialects run unchanged. Read-only;
//! money in micro-dollars.

use mediagen_domain::{AccountId, Money, Timestamp};
use mediagen_ports::JobCounts;
use mediagen_stack::{Store, with_pool};

/// Every ledger row: `(job_id, kind, amount_micros)`.
const LEDGER: &str = "SELECT job_id, kind, amount_micros FROM ledger ORDER BY job_id, id";

/// Alerts that fired, by key, in order.
const ALERTS: &str = "SELECT key FROM alerts ORDER BY fired_at, key";

/// A period that holds every instant the demo writes: from 1970 to a day from now.
pub fn all_time() -> (Timestamp, Timestamp) {
    (Timestamp::UNIX_EPOCH, chrono::Utc::now() + chrono::TimeDelta::days(1))
}

/// Jobs not finished yet: queued or in flight.
pub fn open_jobs(counts: &JobCounts) -> u64 {
    counts.queued + counts.dispatching + counts.submitted + counts.running
}

/// Every stored job by state.
///
/// # Errors
/// When the database does not answer.
pub async fn job_counts(store: &Store) -> anyhow::Result<JobCounts> {
    Ok(store.ports().reports.job_counts().await?)
}

/// What users were charged so far (the ledger's charges, written when jobs finish).
///
/// # Errors
/// When the database does not answer.
pub async fn charged(store: &Store) -> anyhow::Result<Money> {
    let (from, to) = all_time();
    let rows = store.ports().reports.usage_rows(from, to).await?;
    Ok(Money::from_micros(rows.iter().map(|row| row.user_charged.micros()).sum()))
}

/// Accounts the bot has locked (fal refused them), by id.
///
/// # Errors
/// When the database does not answer.
pub async fn locked_accounts(store: &Store) -> anyhow::Result<Vec<AccountId>> {
    let accounts = store.ports().accounts.list_accounts().await?;
    Ok(accounts.into_iter().filter(|a| a.locked.is_some()).map(|a| a.id).collect())
}

/// Every ledger row: `(job_id, kind, amount_micros)`, by job.
///
/// # Errors
/// When the query fails.
pub async fn ledger(store: &Store) -> anyhow::Result<Vec<(i64, String, i64)>> {
    Ok(with_pool!(store, |pool| sqlx::query_as(LEDGER).fetch_all(pool).await?))
}

/// The keys of the alerts that fired, in order.
///
/// # Errors
/// When the query fails.
pub async fn alert_keys(store: &Store) -> anyhow::Result<Vec<String>> {
    Ok(with_pool!(store, |pool| sqlx::query_scalar(ALERTS).fetch_all(pool).await?))
}
