//! `ReportStore`: the read-only figures of operator reports, alerts, the capacity planner
//! and `/metrics`, with their SQL and row types.
//!
//! Grouping days are UTC calendar days (`at AT TIME ZONE 'UTC'`), and text keys sort
//! byte-wise (`COLLATE "C"`), so the order does not depend on the server's locale and
//! matches any other adapter's.

use crate::error::{classify, corrupt};
use crate::store::PgStore;
use async_trait::async_trait;
use chrono::NaiveDate;
use mediagen_domain::{AccountId, JobId, ModelId, Money, Timestamp, UserId};
use mediagen_ports::{DayCount, JobCounts, JobTiming, ReportStore, SlotInterval, StorageError, UsageRow};

/// Jobs finished in [$1, $2) grouped by (UTC day, user, model, account), settlements summed.
const USAGE_ROWS: &str = r#"
    WITH finished AS (
        SELECT id, user_id, model, account_id, state, finished_at FROM jobs
        WHERE finished_at >= $1 AND finished_at < $2
    ), money AS (
        SELECT l.job_id,
               sum(l.amount_micros) FILTER (WHERE l.kind = 'charge') AS charged,
               sum(l.amount_micros) FILTER (WHERE l.kind = 'refund') AS refunded,
               sum(l.amount_micros) FILTER (WHERE l.kind = 'fal_cost') AS fal_cost
        FROM ledger l JOIN finished f ON f.id = l.job_id
        GROUP BY l.job_id
    )
    SELECT (f.finished_at AT TIME ZONE 'UTC')::date AS day,
           f.user_id,
           f.model,
           f.account_id,
           count(*) AS jobs,
           count(*) FILTER (WHERE f.state = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE f.state = 'failed') AS failed,
           count(*) FILTER (WHERE f.state = 'canceled') AS canceled,
           coalesce(sum(m.charged), 0)::int8 AS user_charged,
           coalesce(sum(m.refunded), 0)::int8 AS user_refunded,
           coalesce(sum(m.fal_cost), 0)::int8 AS fal_cost
    FROM finished f LEFT JOIN money m ON m.job_id = f.id
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, f.model COLLATE "C", f.account_id COLLATE "C" NULLS LAST"#;

/// Accepted submissions in [$1, $2) per UTC day (the same events `REQUEST_COUNT` counts).
const REQUESTS_BY_DAY: &str = "
    SELECT (at AT TIME ZONE 'UTC')::date AS day, count(*) AS count FROM job_events
    WHERE event = 'submitted' AND at >= $1 AND at < $2
    GROUP BY 1 ORDER BY 1";

const JOB_COUNTS: &str = "SELECT state, count(*) AS count FROM jobs GROUP BY state";

/// Jobs whose life [enqueued_at, finished_at) overlaps [$1, $2), with their first claim.
const JOB_TIMINGS: &str = "
    SELECT j.id, j.user_id, j.model, j.state, j.enqueued_at,
           (SELECT min(e.at) FROM job_events e WHERE e.job_id = j.id AND e.event = 'claimed') AS first_claimed_at,
           j.finished_at
    FROM jobs j
    WHERE j.enqueued_at < $2 AND (j.finished_at IS NULL OR j.finished_at > $1)
    ORDER BY j.enqueued_at, j.id";

/// Each `claimed` event paired with the job's next event that leaves flight (by event
/// order, which is commit order within a job), kept when the interval overlaps [$1, $2).
const SLOT_INTERVALS: &str = "
    WITH claims AS (
        SELECT c.id, c.job_id, c.account_id, c.at AS claimed_at,
               (SELECT r.id FROM job_events r
                WHERE r.job_id = c.job_id AND r.id > c.id
                  AND r.to_state IN ('queued', 'succeeded', 'failed', 'canceled')
                ORDER BY r.id LIMIT 1) AS release_id
        FROM job_events c
        WHERE c.event = 'claimed' AND c.at < $2 AND c.account_id IS NOT NULL
    )
    SELECT c.job_id, c.account_id, j.model, c.claimed_at, r.at AS released_at, r.to_state AS released_to
    FROM claims c
    JOIN jobs j ON j.id = c.job_id
    LEFT JOIN job_events r ON r.id = c.release_id
    WHERE r.id IS NULL OR r.at > $1
    ORDER BY c.claimed_at, c.job_id, c.id";

#[derive(Debug, sqlx::FromRow)]
struct UsageRowRow {
    day: NaiveDate,
    user_id: i64,
    model: String,
    account_id: Option<String>,
    jobs: i64,
    succeeded: i64,
    failed: i64,
    canceled: i64,
    user_charged: i64,
    user_refunded: i64,
    fal_cost: i64,
}

impl UsageRowRow {
    fn into_row(self) -> Result<UsageRow, StorageError> {
        Ok(UsageRow {
            day: self.day,
            user: UserId(self.user_id),
            model: ModelId::new(self.model),
            account: self.account_id.map(AccountId::new),
            jobs: count(self.jobs)?,
            succeeded: count(self.succeeded)?,
            failed: count(self.failed)?,
            canceled: count(self.canceled)?,
            user_charged: Money::from_micros(self.user_charged),
            user_refunded: Money::from_micros(self.user_refunded),
            fal_cost: Money::from_micros(self.fal_cost),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
struct JobTimingRow {
    id: i64,
    user_id: i64,
    model: String,
    state: String,
    enqueued_at: Timestamp,
    first_claimed_at: Option<Timestamp>,
    finished_at: Option<Timestamp>,
}

#[derive(Debug, sqlx::FromRow)]
struct SlotRow {
    job_id: i64,
    account_id: String,
    model: String,
    claimed_at: Timestamp,
    released_at: Option<Timestamp>,
    released_to: Option<String>,
}

fn count(n: i64) -> Result<u64, StorageError> {
    u64::try_from(n).map_err(corrupt)
}

#[async_trait]
impl ReportStore for PgStore {
    async fn usage_rows(&self, from: Timestamp, to: Timestamp) -> Result<Vec<UsageRow>, StorageError> {
        sqlx::query_as::<_, UsageRowRow>(USAGE_ROWS)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .into_iter()
            .map(UsageRowRow::into_row)
            .collect()
    }

    async fn requests_by_day(&self, from: Timestamp, to: Timestamp) -> Result<Vec<DayCount>, StorageError> {
        sqlx::query_as::<_, (NaiveDate, i64)>(REQUESTS_BY_DAY)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .into_iter()
            .map(|(day, n)| Ok(DayCount { day, count: count(n)? }))
            .collect()
    }

    async fn job_counts(&self) -> Result<JobCounts, StorageError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(JOB_COUNTS).fetch_all(&self.pool).await.map_err(classify)?;
        let mut counts = JobCounts::default();
        for (state, n) in rows {
            let n = count(n)?;
            let slot = match state.as_str() {
                "queued" => &mut counts.queued,
                "dispatching" => &mut counts.dispatching,
                "submitted" => &mut counts.submitted,
                "running" => &mut counts.running,
                "succeeded" => &mut counts.succeeded,
                "failed" => &mut counts.failed,
                "canceled" => &mut counts.canceled,
                other => return Err(corrupt(format!("unknown job state {other:?}"))),
            };
            *slot = n;
        }
        Ok(counts)
    }

    async fn job_timings(&self, from: Timestamp, to: Timestamp) -> Result<Vec<JobTiming>, StorageError> {
        let rows = sqlx::query_as::<_, JobTimingRow>(JOB_TIMINGS)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(|row| JobTiming {
                job: JobId(row.id),
                user: UserId(row.user_id),
                model: ModelId::new(row.model),
                state: row.state,
                enqueued_at: row.enqueued_at,
                first_claimed_at: row.first_claimed_at,
                finished_at: row.finished_at,
            })
            .collect())
    }

    async fn slot_intervals(&self, from: Timestamp, to: Timestamp) -> Result<Vec<SlotInterval>, StorageError> {
        let rows = sqlx::query_as::<_, SlotRow>(SLOT_INTERVALS)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(|row| SlotInterval {
                job: JobId(row.job_id),
                account: AccountId::new(row.account_id),
                model: ModelId::new(row.model),
                claimed_at: row.claimed_at,
                released_at: row.released_at,
                released_to: row.released_to,
            })
            .collect())
    }
}
