//! `AccountStore`: fal accounts, their credit purchases and what fal billed them.

use crate::error::classify;
use crate::rows::{AccountRow, PurchaseRow, SpendRow};
use crate::sql;
use crate::store::PgStore;
use async_trait::async_trait;
use mediagen_domain::credit::{CreditPurchase, CreditSpend};
use mediagen_domain::{AccountId, Money, Timestamp};
use mediagen_ports::{AccountLock, AccountRecord, AccountStore, StorageError};

impl PgStore {
    /// `NotFound` unless the account exists.
    async fn require_account(&self, id: &AccountId) -> Result<(), StorageError> {
        let exists: bool =
            sqlx::query_scalar(sql::ACCOUNT_EXISTS).bind(id.as_str()).fetch_one(&self.pool).await.map_err(classify)?;
        if exists { Ok(()) } else { Err(unknown(id)) }
    }
}

fn unknown(id: &AccountId) -> StorageError {
    StorageError::NotFound(format!("account {id}"))
}

#[async_trait]
impl AccountStore for PgStore {
    async fn upsert_account(&self, id: &AccountId, key_names: &[String]) -> Result<AccountRecord, StorageError> {
        sqlx::query_as::<_, AccountRow>(sql::UPSERT_ACCOUNT)
            .bind(id.as_str())
            .bind(key_names)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?
            .into_record()
    }

    async fn retire_unlisted(&self, configured: &[AccountId], now: Timestamp) -> Result<Vec<AccountId>, StorageError> {
        let ids: Vec<&str> = configured.iter().map(AccountId::as_str).collect();
        let retired: Vec<String> = sqlx::query_scalar(sql::RETIRE_UNLISTED)
            .bind(&ids)
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        Ok(retired.into_iter().map(AccountId::new).collect())
    }

    async fn list_accounts(&self) -> Result<Vec<AccountRecord>, StorageError> {
        sqlx::query_as::<_, AccountRow>(sql::LIST_ACCOUNTS)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .into_iter()
            .map(AccountRow::into_record)
            .collect()
    }

    async fn add_purchase(&self, id: &AccountId, purchase: &CreditPurchase) -> Result<(), StorageError> {
        // An unknown account trips credit_purchases_account_id_fkey: NotFound.
        sqlx::query(sql::ADD_PURCHASE)
            .bind(id.as_str())
            .bind(purchase.amount.micros())
            .bind(purchase.purchased_at)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn purchases(&self, id: &AccountId) -> Result<Vec<CreditPurchase>, StorageError> {
        self.require_account(id).await?;
        let rows = sqlx::query_as::<_, PurchaseRow>(sql::PURCHASES)
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        Ok(rows.into_iter().map(CreditPurchase::from).collect())
    }

    async fn total_spend(&self, id: &AccountId) -> Result<Money, StorageError> {
        self.require_account(id).await?;
        let micros: i64 =
            sqlx::query_scalar(sql::TOTAL_SPEND).bind(id.as_str()).fetch_one(&self.pool).await.map_err(classify)?;
        Ok(Money::from_micros(micros))
    }

    async fn spends(&self, id: &AccountId) -> Result<Vec<CreditSpend>, StorageError> {
        self.require_account(id).await?;
        let rows = sqlx::query_as::<_, SpendRow>(sql::DAILY_SPENDS)
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        Ok(rows.into_iter().map(CreditSpend::from).collect())
    }

    async fn set_lock(&self, id: &AccountId, lock: Option<AccountLock>) -> Result<(), StorageError> {
        let (reason, since) = lock.map(|l| (l.reason, l.since)).unzip();
        let done = sqlx::query(sql::SET_LOCK)
            .bind(id.as_str())
            .bind(reason)
            .bind(since)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        if done.rows_affected() == 0 {
            return Err(unknown(id));
        }
        Ok(())
    }

    async fn set_admin_state(
        &self,
        id: &AccountId,
        disabled: bool,
        limit_override: Option<u32>,
    ) -> Result<(), StorageError> {
        let limit = limit_override
            .map(i32::try_from)
            .transpose()
            .map_err(|_| StorageError::Conflict(format!("limit {limit_override:?} is out of range")))?;
        let done = sqlx::query(sql::SET_ADMIN_STATE)
            .bind(id.as_str())
            .bind(disabled)
            .bind(limit)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        if done.rows_affected() == 0 {
            return Err(unknown(id));
        }
        Ok(())
    }
}
