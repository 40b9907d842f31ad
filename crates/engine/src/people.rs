//! What a front end reads and changes about users, for them and for the operator: who is
//! writing, their settings, usage and history, blocks and plans, and the operator's
//! figures. Front ends render these; they never reach storage themselves.

use crate::Engine;
use crate::operator::AccountOverview;
use mediagen_domain::discount::DiscountTier;
use mediagen_domain::quota::{UserUsage, day_start, month_start};
use mediagen_domain::{Job, JobId, Money, User, UserId};
use mediagen_ports::{MediaRecord, ModelUsage, NewUser, StorageError};

/// The operator's figures for today and the month so far (`/stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorStats {
    /// Jobs, charges and fal's cost per model since midnight UTC.
    pub today: Vec<ModelUsage>,
    /// The same since the first of the month.
    pub month: Vec<ModelUsage>,
    /// Requests sent to fal this month (what the volume discount counts).
    pub month_requests: u64,
    /// The volume tier those requests reach.
    pub tier: DiscountTier,
    /// fal's list cost this month.
    pub fal_month_list: Money,
    /// That cost after the tier's discount.
    pub fal_month_discounted: Money,
    /// Users with a job this month.
    pub active_users: usize,
    /// Jobs waiting now.
    pub queued: u32,
    /// Every account, with its limit and jobs in flight.
    pub accounts: Vec<AccountOverview>,
    /// Prompt cache hits and misses since this process started.
    pub cache_hits: u64,
    /// See `cache_hits`.
    pub cache_misses: u64,
}

impl Engine {
    /// The user writing, created on first contact with the default plan (an existing
    /// one keeps their plan, settings and block).
    ///
    /// # Errors
    /// The storage error when the user cannot be read or written.
    pub async fn user_on_contact(&self, new: &NewUser) -> Result<User, StorageError> {
        self.inner.ports.users.upsert_user(new).await
    }

    /// Stores a user's changed settings or language.
    ///
    /// # Errors
    /// The storage error when it cannot be written.
    pub async fn save_user(&self, user: &User) -> Result<(), StorageError> {
        self.inner.ports.users.update_user(user).await
    }

    /// Applies an operator's change (block, unblock, plan) to a user who wrote before.
    ///
    /// # Errors
    /// `NotFound` for a user who never wrote to the bot; otherwise the storage error.
    pub async fn change_user(&self, id: UserId, change: impl FnOnce(&mut User) + Send) -> Result<(), StorageError> {
        let users = &self.inner.ports.users;
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
        self.inner.ports.users.list_users().await
    }

    /// What a user used against their plan today and this month.
    ///
    /// # Errors
    /// The storage error when it cannot be read.
    pub async fn usage_of(&self, user: UserId) -> Result<UserUsage, StorageError> {
        self.inner.ports.queue.user_usage(user, self.inner.ports.clock.now()).await
    }

    /// A user's latest jobs, newest first.
    ///
    /// # Errors
    /// The storage error when they cannot be read.
    pub async fn recent_jobs(&self, user: UserId, limit: u32) -> Result<Vec<Job>, StorageError> {
        self.inner.ports.queue.recent_jobs(user, limit).await
    }

    /// A job, only when it belongs to `user` (a button press names a job; anyone could forge it).
    pub async fn job_of(&self, user: UserId, job: JobId) -> Option<Job> {
        self.inner.ports.queue.get_job(job).await.ok().flatten().filter(|j| j.user == user)
    }

    /// The results a job delivered, with their platform file ids.
    ///
    /// # Errors
    /// The storage error when they cannot be read.
    pub async fn results_of(&self, job: JobId) -> Result<Vec<MediaRecord>, StorageError> {
        self.inner.ports.usage.media_for_job(job).await
    }

    /// The operator's figures: usage today and this month, the volume tier and what it
    /// saves, the queue and the accounts.
    ///
    /// # Errors
    /// The first storage error met.
    pub async fn operator_stats(&self) -> Result<OperatorStats, StorageError> {
        let ports = &self.inner.ports;
        let now = ports.clock.now();
        let (day, month) = (day_start(now), month_start(now));
        let today = ports.usage.usage_by_model(day, now).await?;
        let month_usage = ports.usage.usage_by_model(month, now).await?;
        let active_users = ports.usage.usage_by_user(month, now).await?.len();
        let queued = ports.queue.queued_count().await?;
        let accounts = self.accounts_overview().await?;
        let month_requests = ports.usage.request_count(month, now).await?;
        let tier = self.inner.config.catalog.volume_discounts().tier_for(month_requests).clone();
        let fal_month_list = Money::saturating_sum(month_usage.iter().map(|m| m.fal_cost));
        let stats = self.stats();
        Ok(OperatorStats {
            today,
            month: month_usage,
            month_requests,
            fal_month_discounted: tier.apply(fal_month_list),
            tier,
            fal_month_list,
            active_users,
            queued,
            accounts,
            cache_hits: stats.cache_hits,
            cache_misses: stats.cache_misses,
        })
    }
}
