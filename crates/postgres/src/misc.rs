//! The small ports: the prompt cache, the alert log, media records and usage reports.

use crate::error::classify;
use crate::queue::save_media;
use crate::rows::{MediaRow, ModelUsageRow, UserSpendRow};
use crate::sql;
use crate::store::PgStore;
use async_trait::async_trait;
use mediagen_domain::{JobId, Timestamp};
use mediagen_ports::{AlertLog, MediaRecord, ModelUsage, PromptCache, StorageError, UsageStore, UserSpend};

#[async_trait]
impl PromptCache for PgStore {
    async fn cache_get(&self, key: &str, now: Timestamp) -> Result<Option<String>, StorageError> {
        sqlx::query_scalar(sql::CACHE_GET).bind(key).bind(now).fetch_optional(&self.pool).await.map_err(classify)
    }

    async fn cache_put(&self, key: &str, value: &str, expires_at: Timestamp) -> Result<(), StorageError> {
        sqlx::query(sql::CACHE_PUT)
            .bind(key)
            .bind(value)
            .bind(expires_at)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }
}

#[async_trait]
impl AlertLog for PgStore {
    async fn record_alert(&self, key: &str, period: &str, now: Timestamp) -> Result<bool, StorageError> {
        let done = sqlx::query(sql::RECORD_ALERT)
            .bind(key)
            .bind(period)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() == 1)
    }
}

#[async_trait]
impl UsageStore for PgStore {
    async fn save_media(&self, record: &MediaRecord) -> Result<(), StorageError> {
        // An unknown job trips media_job_id_fkey: NotFound.
        let mut conn = self.pool.acquire().await.map_err(classify)?;
        save_media(&mut conn, record.job, record).await
    }

    async fn media_for_job(&self, job: JobId) -> Result<Vec<MediaRecord>, StorageError> {
        sqlx::query_as::<_, MediaRow>(sql::MEDIA_FOR_JOB)
            .bind(job.0)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .into_iter()
            .map(MediaRow::into_record)
            .collect()
    }

    async fn usage_by_model(&self, from: Timestamp, to: Timestamp) -> Result<Vec<ModelUsage>, StorageError> {
        sqlx::query_as::<_, ModelUsageRow>(sql::USAGE_BY_MODEL)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .into_iter()
            .map(ModelUsageRow::into_usage)
            .collect()
    }

    async fn usage_by_user(&self, from: Timestamp, to: Timestamp) -> Result<Vec<UserSpend>, StorageError> {
        sqlx::query_as::<_, UserSpendRow>(sql::USAGE_BY_USER)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .into_iter()
            .map(UserSpendRow::into_spend)
            .collect()
    }

    async fn request_count(&self, from: Timestamp, to: Timestamp) -> Result<u64, StorageError> {
        let n: i64 =
            sqlx::query_scalar(sql::REQUEST_COUNT).bind(from).bind(to).fetch_one(&self.pool).await.map_err(classify)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
