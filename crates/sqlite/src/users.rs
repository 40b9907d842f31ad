//! `UserStore`: users, their plan, role and settings.

use crate::error::classify;
use crate::rows::{UserRow, json, language_code, micros, role_name};
use crate::sql;
use crate::store::SqliteStore;
use async_trait::async_trait;
use chrono::Utc;
use mediagen_domain::{User, UserId, UserSettings};
use mediagen_ports::{NewUser, StorageError, UserStore};

#[async_trait]
impl UserStore for SqliteStore {
    async fn upsert_user(&self, new: &NewUser) -> Result<User, StorageError> {
        sqlx::query_as::<_, UserRow>(sql::UPSERT_USER)
            .bind(new.id.0)
            .bind(language_code(new.language))
            .bind(&new.plan)
            .bind(role_name(new.role))
            .bind(json(&UserSettings::default())?)
            .bind(micros(Utc::now()))
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?
            .into_user()
    }

    async fn get_user(&self, id: UserId) -> Result<Option<User>, StorageError> {
        let row = sqlx::query_as::<_, UserRow>(sql::GET_USER)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.map(UserRow::into_user).transpose()
    }

    async fn update_user(&self, user: &User) -> Result<(), StorageError> {
        let done = sqlx::query(sql::UPDATE_USER)
            .bind(user.id.0)
            .bind(language_code(user.language))
            .bind(&user.plan)
            .bind(role_name(user.role))
            .bind(user.blocked)
            .bind(json(&user.settings)?)
            .bind(micros(Utc::now()))
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound(format!("user {}", user.id)));
        }
        Ok(())
    }

    async fn list_users(&self) -> Result<Vec<User>, StorageError> {
        sqlx::query_as::<_, UserRow>(sql::LIST_USERS)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .into_iter()
            .map(UserRow::into_user)
            .collect()
    }
}
