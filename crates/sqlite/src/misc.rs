//! The small ports: the prompt cache, the alert log, media records and usage reports.

use crate::error::classify;
use crate::queue::save_media;
use crate::rows::{MediaRow, ModelUsageRow, UserSpendRow, micros};
use crate::sql;
use crate::store::SqliteStore;
use async_trait::async_trait;
use chrono::Utc;
use mediagen_domain::{JobId, Timestamp};
use mediagen_ports::{AlertLog, MediaRecord, ModelUsage, PromptCache, StorageError, UsageStore, UserSpend};

#[async_trait]
impl PromptCache for SqliteStore {
    async fn cache_get(&self, key: &str, now: Timestamp) -> Result<Option<String>, StorageError> {
        let found: Option<(String, i64)> =
            sqlx::query_as(sql::CACHE_GET).bind(key).fetch_optional(&self.pool).await.map_err(classify)?;
        match found {
            Some((value, expires_at)) if expires_at > micros(now) => Ok(Some(value)),
            Some(_) => {
                // Expired: drop it on the way (only then does a read write).
                sqlx::query(sql::CACHE_DROP_EXPIRED)
                    .bind(key)
                    .bind(micros(now))
                    .execute(&self.pool)
                    .await
                    .map_err(classify)?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn cache_put(&self, key: &str, value: &str, expires_at: Timestamp) -> Result<(), StorageError> {
        sqlx::query(sql::CACHE_PUT)
            .bind(key)
            .bind(value)
            .bind(micros(expires_at))
            .bind(micros(Utc::now()))
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }
}

#[async_trait]
impl AlertLog for SqliteStore {
    async fn record_alert(&self, key: &str, period: &str, now: Timestamp) -> Result<bool, StorageError> {
        let done = sqlx::query(sql::RECORD_ALERT)
            .bind(key)
            .bind(period)
            .bind(micros(now))
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() == 1)
    }
}

#[async_trait]
impl UsageStore for SqliteStore {
    async fn save_media(&self, record: &MediaRecord) -> Result<(), StorageError> {
        // An unknown job trips media_job_id_fkey: NotFound.
        let mut conn = self.pool.acquire().await.map_err(classify)?;
        save_media(&mut conn, record.job, record, Utc::now()).await
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
            .bind(micros(from))
            .bind(micros(to))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .into_iter()
            .map(ModelUsageRow::into_usage)
            .collect()
    }

    async fn usage_by_user(&self, from: Timestamp, to: Timestamp) -> Result<Vec<UserSpend>, StorageError> {
        sqlx::query_as::<_, UserSpendRow>(sql::USAGE_BY_USER)
            .bind(micros(from))
            .bind(micros(to))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .into_iter()
            .map(UserSpendRow::into_spend)
            .collect()
    }

    async fn request_count(&self, from: Timestamp, to: Timestamp) -> Result<u64, StorageError> {
        let n: i64 = sqlx::query_scalar(sql::REQUEST_COUNT)
            .bind(micros(from))
            .bind(micros(to))
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
