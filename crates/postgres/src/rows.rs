//! The adapter's row types and their conversion to domain values. sqlx derives stay here:
//! nothing outside this crate sees a row.

use crate::error::corrupt;
use chrono::{DateTime, Utc};
use mediagen_domain::credit::{CreditPurchase, CreditSpend};
use mediagen_domain::{
    AccountId, ChatId, FailureReason, Job, JobId, JobSpec, JobState, Language, Lease, ModelId, Money, RequestId, Role,
    User, UserId, UserSettings,
};
use mediagen_ports::{AccountLock, AccountRecord, MediaRecord, ModelUsage, RemoteHandle, StorageError, UserSpend};

/// A row of `users`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UserRow {
    id: i64,
    language: String,
    plan: String,
    role: String,
    blocked: bool,
    settings: serde_json::Value,
}

impl UserRow {
    pub(crate) fn into_user(self) -> Result<User, StorageError> {
        Ok(User {
            id: UserId(self.id),
            language: self.language.parse().map_err(corrupt)?,
            plan: self.plan,
            role: parse_role(&self.role)?,
            blocked: self.blocked,
            settings: serde_json::from_value::<UserSettings>(self.settings).map_err(corrupt)?,
        })
    }
}

/// The stored spelling of a role (`users_role_check`).
pub(crate) fn role_name(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Admin => "admin",
    }
}

fn parse_role(text: &str) -> Result<Role, StorageError> {
    match text {
        "user" => Ok(Role::User),
        "admin" => Ok(Role::Admin),
        other => Err(corrupt(format!("role {other:?}"))),
    }
}

/// The stored spelling of a language (`users_language_check`).
pub(crate) fn language_code(language: Language) -> &'static str {
    language.code()
}

/// A row of `jobs` (the columns of `job_columns!`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct JobRow {
    pub(crate) id: i64,
    pub(crate) user_id: i64,
    chat_id: i64,
    spec: serde_json::Value,
    state: String,
    failure: Option<serde_json::Value>,
    pub(crate) account_id: Option<String>,
    request_id: Option<String>,
    remote_model: Option<String>,
    status_url: Option<String>,
    response_url: Option<String>,
    cancel_url: Option<String>,
    hold_micros: i64,
    attempts: i32,
    pub(crate) lease_owner: Option<String>,
    lease_epoch: i64,
    submitted_at: Option<DateTime<Utc>>,
    helper_cost_micros: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl JobRow {
    /// The domain state, rebuilt from the state name and the columns it needs.
    pub(crate) fn state(&self) -> Result<JobState, StorageError> {
        let account = || {
            self.account_id
                .clone()
                .map(AccountId::new)
                .ok_or_else(|| corrupt(format!("job {} has no account", self.id)))
        };
        let request_id = || {
            self.request_id
                .clone()
                .map(RequestId::new)
                .ok_or_else(|| corrupt(format!("job {} has no request id", self.id)))
        };
        Ok(match self.state.as_str() {
            "queued" => JobState::Queued,
            "dispatching" => JobState::Dispatching { account: account()? },
            "submitted" => JobState::Submitted { account: account()?, request_id: request_id()? },
            "running" => JobState::Running { account: account()?, request_id: request_id()? },
            "succeeded" => JobState::Succeeded,
            "failed" => {
                let failure =
                    self.failure.clone().ok_or_else(|| corrupt(format!("failed job {} has no reason", self.id)))?;
                JobState::Failed { reason: serde_json::from_value::<FailureReason>(failure).map_err(corrupt)? }
            }
            "canceled" => JobState::Canceled,
            other => return Err(corrupt(format!("job state {other:?}"))),
        })
    }

    /// The hold taken at enqueue.
    pub(crate) fn hold(&self) -> Money {
        Money::from_micros(self.hold_micros)
    }

    /// fal's handle, once fal accepted the job.
    pub(crate) fn handle(&self) -> Option<RemoteHandle> {
        Some(RemoteHandle {
            account: AccountId::new(self.account_id.clone()?),
            model: ModelId::new(self.remote_model.clone()?),
            request_id: RequestId::new(self.request_id.clone()?),
            status_url: self.status_url.clone()?,
            response_url: self.response_url.clone()?,
            cancel_url: self.cancel_url.clone()?,
        })
    }

    /// The lease on the job, when a process holds one.
    pub(crate) fn lease(&self) -> Option<Lease> {
        let epoch = u64::try_from(self.lease_epoch).ok()?;
        Some(Lease { owner: self.lease_owner.clone()?, epoch })
    }

    pub(crate) fn into_job(self) -> Result<Job, StorageError> {
        let state = self.state()?;
        let lease = self.lease();
        Ok(Job {
            id: JobId(self.id),
            user: UserId(self.user_id),
            chat: ChatId(self.chat_id),
            spec: serde_json::from_value::<JobSpec>(self.spec).map_err(corrupt)?,
            state,
            hold: Money::from_micros(self.hold_micros),
            attempts: u32::try_from(self.attempts).map_err(corrupt)?,
            created_at: self.created_at,
            updated_at: self.updated_at,
            lease,
            submitted_at: self.submitted_at,
            helper_cost: Money::from_micros(self.helper_cost_micros),
        })
    }
}

/// What the usage query returns.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UsageRow {
    pub(crate) jobs_today: i64,
    pub(crate) charged_this_month: i64,
    pub(crate) active_holds: i64,
    pub(crate) in_flight: i64,
    pub(crate) queued: i64,
}

/// A claim candidate: a queued job, locked, with its user's load and cap.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CandidateRow {
    pub(crate) id: i64,
    pub(crate) user_id: i64,
    pub(crate) enqueued_at: DateTime<Utc>,
    pub(crate) in_flight: i64,
    pub(crate) cap: Option<i64>,
}

/// What the queue-position query returns.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PositionRow {
    pub(crate) state: String,
    pub(crate) position: i64,
    pub(crate) total: i64,
}

/// A row of `accounts`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AccountRow {
    id: String,
    key_names: Vec<String>,
    disabled: bool,
    lock_reason: Option<String>,
    locked_since: Option<DateTime<Utc>>,
    limit_override: Option<i32>,
    retired_at: Option<DateTime<Utc>>,
}

impl AccountRow {
    pub(crate) fn into_record(self) -> Result<AccountRecord, StorageError> {
        let locked = match (self.lock_reason, self.locked_since) {
            (Some(reason), Some(since)) => Some(AccountLock { reason, since }),
            _ => None,
        };
        Ok(AccountRecord {
            id: AccountId::new(self.id),
            key_names: self.key_names,
            disabled: self.disabled,
            locked,
            limit_override: self.limit_override.map(u32::try_from).transpose().map_err(corrupt)?,
            retired_since: self.retired_at,
        })
    }
}

/// A row of `credit_purchases`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PurchaseRow {
    amount_micros: i64,
    purchased_at: DateTime<Utc>,
}

impl From<PurchaseRow> for CreditPurchase {
    fn from(row: PurchaseRow) -> Self {
        CreditPurchase { amount: Money::from_micros(row.amount_micros), purchased_at: row.purchased_at }
    }
}

/// A day's fal spend of one account.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SpendRow {
    amount_micros: i64,
    spent_at: DateTime<Utc>,
}

impl From<SpendRow> for CreditSpend {
    fn from(row: SpendRow) -> Self {
        CreditSpend { amount: Money::from_micros(row.amount_micros), spent_at: row.spent_at }
    }
}

/// A row of `media`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct MediaRow {
    job_id: i64,
    fal_url: String,
    telegram_file_id: Option<String>,
    size_bytes: Option<i64>,
    content_type: Option<String>,
}

impl MediaRow {
    pub(crate) fn into_record(self) -> Result<MediaRecord, StorageError> {
        Ok(MediaRecord {
            job: JobId(self.job_id),
            fal_url: self.fal_url,
            telegram_file_id: self.telegram_file_id,
            size_bytes: self.size_bytes.map(u64::try_from).transpose().map_err(corrupt)?,
            content_type: self.content_type,
        })
    }
}

/// One model's line of the usage report.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ModelUsageRow {
    model: String,
    succeeded: i64,
    failed: i64,
    user_charged: i64,
    fal_cost: i64,
}

impl ModelUsageRow {
    pub(crate) fn into_usage(self) -> Result<ModelUsage, StorageError> {
        Ok(ModelUsage {
            model: ModelId::new(self.model),
            succeeded: u64::try_from(self.succeeded).map_err(corrupt)?,
            failed: u64::try_from(self.failed).map_err(corrupt)?,
            user_charged: Money::from_micros(self.user_charged),
            fal_cost: Money::from_micros(self.fal_cost),
        })
    }
}

/// One user's line of the usage report.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UserSpendRow {
    user_id: i64,
    jobs: i64,
    charged: i64,
    fal_cost: i64,
}

impl UserSpendRow {
    pub(crate) fn into_spend(self) -> Result<UserSpend, StorageError> {
        Ok(UserSpend {
            user: UserId(self.user_id),
            jobs: u64::try_from(self.jobs).map_err(corrupt)?,
            charged: Money::from_micros(self.charged),
            fal_cost: Money::from_micros(self.fal_cost),
        })
    }
}

/// A count that fits a `u32` (queue lengths, job counts); saturates rather than fails.
pub(crate) fn count_u32(count: i64) -> u32 {
    u32::try_from(count.max(0)).unwrap_or(u32::MAX)
}
