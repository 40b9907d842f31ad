//! What a front end reads and changes about users, for them and for the operator: who is
//! writing, their settings, usage and history, blocks and plans. Front ends render these;
//! they never reach storage themselves.

use mediagen_domain::quota::UserUsage;
use mediagen_domain::{Job, JobId, User, UserId};
use mediagen_ports::{Clock, JobQueue, MediaRecord, NewUser, StorageError, UsageStore, UserStore};
use std::sync::Arc;

/// The ports the user directory reads and writes.
#[derive(Clone)]
pub struct PeoplePorts {
    /// Users, their plans and settings.
    pub users: Arc<dyn UserStore>,
    /// Their usage and their jobs.
    pub queue: Arc<dyn JobQueue>,
    /// The results their jobs delivered.
    pub usage: Arc<dyn UsageStore>,
    /// "Today" and "this month" for usage.
    pub clock: Arc<dyn Clock>,
}

/// The users: who is writing, their settings, usage and history, and the operator's
/// changes to them. Holds no state of its own.
#[derive(Clone)]
pub struct People {
    inner: Arc<PeoplePorts>,
}

impl People {
    pub(crate) fn new(ports: PeoplePorts) -> Self {
        Self { inner: Arc::new(ports) }
    }

    /// The user writing, created on first contact with the default plan (an existing
    /// one keeps their plan, settings and block).
    ///
    /// # Errors
    /// The storage error when the user cannot be read or written.
    pub async fn user_on_contact(&self, new: &NewUser) -> Result<User, StorageError> {
        self.inner.users.upsert_user(new).await
    }

    /// Stores a user's changed settings or language.
    ///
    /// # Errors
    /// The storage error when it cannot be written.
    pub async fn save_user(&self, user: &User) -> Result<(), StorageError> {
        self.inner.users.update_user(user).await
    }

    /// Applies an operator's change (block, unblock, plan) to a user who wrote before.
    ///
    /// # Errors
    /// `NotFound` for a user who never wrote to the bot; otherwise the storage error.
    pub async fn change_user(&self, id: UserId, change: impl FnOnce(&mut User) + Send) -> Result<(), StorageError> {
        let users = &self.inner.users;
        let Some(mut user) = users.get_user(id).await? else {
            return Err(StorageError::NotFound(format!("user {id} has never written to the bot")));
        };
        change(&mut user);
        users.update_user(&user).await
    }

    /// Every user (for a broadcast).
    ///
    /// # Errors
    /// The storage error when they cannot be read.
    pub async fn users(&self) -> Result<Vec<User>, StorageError> {
        self.inner.users.list_users().await
    }

    /// What a user used against their plan today and this month.
    ///
    /// # Errors
    /// The storage error when it cannot be read.
    pub async fn usage_of(&self, user: UserId) -> Result<UserUsage, StorageError> {
        self.inner.queue.user_usage(user, self.inner.clock.now()).await
    }

    /// A user's latest jobs, newest first.
    ///
    /// # Errors
    /// The storage error when they cannot be read.
    pub async fn recent_jobs(&self, user: UserId, limit: u32) -> Result<Vec<Job>, StorageError> {
        self.inner.queue.recent_jobs(user, limit).await
    }

    /// A job, only when it belongs to `user` (a button press names a job; anyone could forge it).
    pub async fn job_of(&self, user: UserId, job: JobId) -> Option<Job> {
        self.inner.queue.get_job(job).await.ok().flatten().filter(|j| j.user == user)
    }

    /// The results a job delivered, with their platform file ids.
    ///
    /// # Errors
    /// The storage error when they cannot be read.
    pub async fn results_of(&self, job: JobId) -> Result<Vec<MediaRecord>, StorageError> {
        self.inner.usage.media_for_job(job).await
    }
}
