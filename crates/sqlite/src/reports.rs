//! `ReportStore`: the figures of operator reports, alerts, the capacity planner and
//! `/metrics`, read from `jobs`, `job_events` and `ledger` (no materialized aggregate).

use crate::error::{classify, corrupt};
use crate::rows::{DayCountRow, JobTimingRow, ReportUsageRow, SlotIntervalRow, micros};
use crate::sql;
use crate::store::SqliteStore;
use async_trait::async_trait;
use mediagen_domain::Timestamp;
use mediagen_ports::{DayCount, JobCounts, JobTiming, ReportStore, SlotInterval, StorageError, UsageRow};

#[async_trait]
impl ReportStore for SqliteStore {
    async fn usage_rows(&self, from: Timestamp, to: Timestamp) -> Result<Vec<UsageRow>, StorageError> {
        sqlx::query_as::<_, ReportUsageRow>(sql::REPORT_USAGE_ROWS)
            .bind(micros(from))
            .bind(micros(to))
            .bind(sql::DAY_MICROS)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .into_iter()
            .map(ReportUsageRow::into_row)
            .collect()
    }

    async fn requests_by_day(&self, from: Timestamp, to: Timestamp) -> Result<Vec<DayCount>, StorageError> {
        sqlx::query_as::<_, DayCountRow>(sql::REPORT_REQUESTS_BY_DAY)
            .bind(micros(from))
            .bind(micros(to))
            .bind(sql::DAY_MICROS)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .into_iter()
            .map(DayCountRow::into_count)
            .collect()
    }

    async fn job_counts(&self) -> Result<JobCounts, StorageError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as(sql::REPORT_JOB_COUNTS).fetch_all(&self.pool).await.map_err(classify)?;
        let mut counts = JobCounts::default();
        for (state, n) in rows {
            let n = u64::try_from(n).map_err(corrupt)?;
            let slot = match state.as_str() {
                "queued" => &mut counts.queued,
                "dispatching" => &mut counts.dispatching,
                "submitted" => &mut counts.submitted,
                "running" => &mut counts.running,
                "succeeded" => &mut counts.succeeded,
                "failed" => &mut counts.failed,
                "canceled" => &mut counts.canceled,
                other => return Err(corrupt(format!("job state {other:?}"))),
            };
            *slot = n;
        }
        Ok(counts)
    }

    async fn job_timings(&self, from: Timestamp, to: Timestamp) -> Result<Vec<JobTiming>, StorageError> {
        sqlx::query_as::<_, JobTimingRow>(sql::REPORT_JOB_TIMINGS)
            .bind(micros(from))
            .bind(micros(to))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .into_iter()
            .map(JobTimingRow::into_timing)
            .collect()
    }

    async fn slot_intervals(&self, from: Timestamp, to: Timestamp) -> Result<Vec<SlotInterval>, StorageError> {
        sqlx::query_as::<_, SlotIntervalRow>(sql::REPORT_SLOT_INTERVALS)
            .bind(micros(from))
            .bind(micros(to))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .into_iter()
            .map(SlotIntervalRow::into_interval)
            .collect()
    }
}
