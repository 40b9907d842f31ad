//! `UserStore`: users, their plan, role and settings.

use crate::store::MemoryStore;
use async_trait::async_trait;
use mediagen_domain::{User, UserId, UserSettings};
use mediagen_ports::{NewUser, StorageError, UserStore};

#[async_trait]
impl UserStore for MemoryStore {
    async fn upsert_user(&self, new: &NewUser) -> Result<User, StorageError> {
        let mut t = self.open()?;
        let user = t.users.entry(new.id).or_insert_with(|| User {
            id: new.id,
            language: new.language,
            plan: new.plan.clone(),
            role: new.role,
            blocked: false,
            settings: UserSettings::default(),
        });
        // Configuration decides who is admin; everything else stays as the user left it.
        user.role = new.role;
        Ok(user.clone())
    }

    async fn get_user(&self, id: UserId) -> Result<Option<User>, StorageError> {
        Ok(self.open()?.users.get(&id).cloned())
    }

    async fn update_user(&self, user: &User) -> Result<(), StorageError> {
        let mut t = self.open()?;
        let stored = t.users.get_mut(&user.id).ok_or_else(|| StorageError::NotFound(format!("user {}", user.id)))?;
        *stored = user.clone();
        Ok(())
    }

    async fn list_users(&self) -> Result<Vec<User>, StorageError> {
        Ok(self.open()?.users.values().cloned().collect())
    }
}
