//! The adapter's row types and their conversion to domain values. sqlx derives stay here:
//! nothing outside this crate sees a row.
//!
//! Instants are stored as INTEGER microseconds since the Unix epoch (UTC), JSON as TEXT and
//! booleans as INTEGER 0/1 (see `migrations-sqlite/0001_initial.sql`).

use crate::error::{corrupt, encode};
use mediagen_domain::credit::{CreditPurchase, CreditSpend};
use mediagen_domain::{
    AccountId, ChatId, FailureReason, Job, JobId, JobSpec, JobState, Language, Lease, ModelId, Money, RequestId, Role,
    Timestamp, User, UserId, UserSettings,
};
use mediagen_ports::{
    AccountLock, AccountRecord, DayCount, JobTiming, MediaRecord, ModelUsage, RemoteHandle, SlotInterval, StorageError,
    UserSpend,
};

/// An instant as stored: microseconds since 1970-01-01 UTC. Finer digits are dropped
/// (PostgreSQL keeps microseconds too).
pub(crate) fn micros(at: Timestamp) -> i64 {
    at.timestamp_micros()
}

/// A stored instant back as a timestamp.
pub(crate) fn instant(micros: i64) -> Result<Timestamp, StorageError> {
    chrono::DateTime::from_timestamp_micros(micros).ok_or_else(|| corrupt(format!("instant {micros}")))
}

/// A value as stored JSON text.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> Result<String, StorageError> {
    serde_json::to_string(value).map_err(encode)
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StorageError> {
    serde_json::from_str(text).map_err(corrupt)
}

/// A row of `users`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UserRow {
    id: i64,
    language: String,
    plan: String,
    role: String,
    blocked: i64,
    settings: String,
}

impl UserRow {
    pub(crate) fn into_user(self) -> Result<User, StorageError> {
        Ok(User {
            id: UserId(self.id),
            language: self.language.parse().map_err(corrupt)?,
            plan: self.plan,
            role: parse_role(&self.role)?,
            blocked: self.blocked != 0,
            settings: from_json::<UserSettings>(&self.settings)?,
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
    spec: String,
    state: String,
    failure: Option<String>,
    pub(crate) account_id: Option<String>,
    request_id: Option<String>,
    remote_model: Option<String>,
    status_url: Option<String>,
    response_url: Option<String>,
    cancel_url: Option<String>,
    hold_micros: i64,
    attempts: i64,
    pub(crate) lease_owner: Option<String>,
    lease_epoch: i64,
    submitted_at: Option<i64>,
    helper_cost_micros: i64,
    created_at: i64,
    updated_at: i64,
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
                    self.failure.as_deref().ok_or_else(|| corrupt(format!("failed job {} has no reason", self.id)))?;
                JobState::Failed { reason: from_json::<FailureReason>(failure)? }
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
            spec: from_json::<JobSpec>(&self.spec)?,
            state,
            hold: Money::from_micros(self.hold_micros),
            attempts: u32::try_from(self.attempts).map_err(corrupt)?,
            created_at: instant(self.created_at)?,
            updated_at: instant(self.updated_at)?,
            lease,
            submitted_at: self.submitted_at.map(instant).transpose()?,
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

/// A claim candidate: a queued job with its user's load and cap.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CandidateRow {
    pub(crate) id: i64,
    pub(crate) user_id: i64,
    pub(crate) enqueued_at: i64,
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
    key_names: String,
    disabled: i64,
    lock_reason: Option<String>,
    locked_since: Option<i64>,
    limit_override: Option<i64>,
    retired_at: Option<i64>,
}

impl AccountRow {
    pub(crate) fn into_record(self) -> Result<AccountRecord, StorageError> {
        let locked = match (self.lock_reason, self.locked_since) {
            (Some(reason), Some(since)) => Some(AccountLock { reason, since: instant(since)? }),
            _ => None,
        };
        Ok(AccountRecord {
            id: AccountId::new(self.id),
            key_names: from_json(&self.key_names)?,
            disabled: self.disabled != 0,
            locked,
            limit_override: self.limit_override.map(u32::try_from).transpose().map_err(corrupt)?,
            retired_since: self.retired_at.map(instant).transpose()?,
        })
    }
}

/// A row of `credit_purchases`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PurchaseRow {
    amount_micros: i64,
    purchased_at: i64,
}

impl PurchaseRow {
    pub(crate) fn into_purchase(self) -> Result<CreditPurchase, StorageError> {
        Ok(CreditPurchase { amount: Money::from_micros(self.amount_micros), purchased_at: instant(self.purchased_at)? })
    }
}

/// A day's fal spend of one account.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SpendRow {
    amount_micros: i64,
    spent_at: i64,
}

impl SpendRow {
    pub(crate) fn into_spend(self) -> Result<CreditSpend, StorageError> {
        Ok(CreditSpend { amount: Money::from_micros(self.amount_micros), spent_at: instant(self.spent_at)? })
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

/// One line of `ReportStore::usage_rows`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ReportUsageRow {
    day: i64,
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

impl ReportUsageRow {
    pub(crate) fn into_row(self) -> Result<mediagen_ports::UsageRow, StorageError> {
        Ok(mediagen_ports::UsageRow {
            day: instant(self.day)?.date_naive(),
            user: UserId(self.user_id),
            model: ModelId::new(self.model),
            account: self.account_id.map(AccountId::new),
            jobs: u64::try_from(self.jobs).map_err(corrupt)?,
            succeeded: u64::try_from(self.succeeded).map_err(corrupt)?,
            failed: u64::try_from(self.failed).map_err(corrupt)?,
            canceled: u64::try_from(self.canceled).map_err(corrupt)?,
            user_charged: Money::from_micros(self.user_charged),
            user_refunded: Money::from_micros(self.user_refunded),
            fal_cost: Money::from_micros(self.fal_cost),
        })
    }
}

/// One day of `ReportStore::requests_by_day`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DayCountRow {
    day: i64,
    count: i64,
}

impl DayCountRow {
    pub(crate) fn into_count(self) -> Result<DayCount, StorageError> {
        Ok(DayCount { day: instant(self.day)?.date_naive(), count: u64::try_from(self.count).map_err(corrupt)? })
    }
}

/// One job of `ReportStore::job_timings`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct JobTimingRow {
    id: i64,
    user_id: i64,
    model: String,
    state: String,
    enqueued_at: i64,
    finished_at: Option<i64>,
    first_claimed_at: Option<i64>,
}

impl JobTimingRow {
    pub(crate) fn into_timing(self) -> Result<JobTiming, StorageError> {
        Ok(JobTiming {
            job: JobId(self.id),
            user: UserId(self.user_id),
            model: ModelId::new(self.model),
            state: self.state,
            enqueued_at: instant(self.enqueued_at)?,
            first_claimed_at: self.first_claimed_at.map(instant).transpose()?,
            finished_at: self.finished_at.map(instant).transpose()?,
        })
    }
}

/// One interval of `ReportStore::slot_intervals`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SlotIntervalRow {
    job_id: i64,
    account_id: Option<String>,
    model: String,
    claimed_at: i64,
    released_at: Option<i64>,
    released_to: Option<String>,
}

impl SlotIntervalRow {
    pub(crate) fn into_interval(self) -> Result<SlotInterval, StorageError> {
        let account =
            self.account_id.ok_or_else(|| corrupt(format!("a claim of job {} names no account", self.job_id)))?;
        Ok(SlotInterval {
            job: JobId(self.job_id),
            account: AccountId::new(account),
            model: ModelId::new(self.model),
            claimed_at: instant(self.claimed_at)?,
            released_at: self.released_at.map(instant).transpose()?,
            released_to: self.released_to,
        })
    }
}

/// A count that fits a `u32` (queue lengths, job counts); saturates rather than fails.
pub(crate) fn count_u32(count: i64) -> u32 {
    u32::try_from(count.max(0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip_at_microsecond_precision() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-25T12:00:00.123456789Z").unwrap().to_utc();
        let stored = micros(at);
        assert_eq!(stored, 1_795_608_000_123_456);
        assert_eq!(instant(stored).unwrap().to_rfc3339(), "2026-11-25T12:00:00.123456+00:00");
        let before_1970 = chrono::DateTime::parse_from_rfc3339("1969-12-31T23:59:59Z").unwrap().to_utc();
        assert_eq!(instant(micros(before_1970)).unwrap(), before_1970);
    }
}
