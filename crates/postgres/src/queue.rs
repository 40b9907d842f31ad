//! The durable job queue: enqueue under the quota, fair claims under account limits,
//! leases, and the ledger entries written in the same transaction as each state change.

use crate::error::classify;
use crate::rows::{CandidateRow, JobRow, PositionRow, UsageRow, count_u32};
use crate::sql;
use crate::store::PgStore;
use async_trait::async_trait;
use mediagen_domain::job::settle;
use mediagen_domain::quota::{self, UserUsage};
use mediagen_domain::scheduler::{self, AccountSlots, QueuedJob, SchedulerInput, UserLoad};
use mediagen_domain::{
    AccountId, IdempotencyKey, Job, JobEvent, JobId, JobState, Lease, Money, Settlement, SettlementPolicy, Timestamp,
    UserId,
};
use mediagen_ports::storage_rules::{self, check_dispatching, check_finisher, check_held, check_settlement, conflict};
use mediagen_ports::{
    CancelResult, ClaimRequest, ClaimedJob, EnqueueOutcome, EnqueueRequest, Finish, FinishOutcome, JobQueue,
    MediaRecord, QueuePosition, RemoteHandle, Rescued, StorageError,
};
use sqlx::PgConnection;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// One row of `job_events`.
struct Event<'a> {
    job: i64,
    event: &'static str,
    from: Option<&'a str>,
    to: &'a str,
    account: Option<&'a str>,
    request_id: Option<&'a str>,
    owner: Option<&'a str>,
    detail: Option<&'a str>,
    at: Timestamp,
}

impl<'a> Event<'a> {
    fn new(job: i64, event: &'static str, from: Option<&'a str>, to: &'a str, at: Timestamp) -> Self {
        Event { job, event, from, to, account: None, request_id: None, owner: None, detail: None, at }
    }

    async fn record(self, conn: &mut PgConnection) -> Result<(), StorageError> {
        sqlx::query(sql::INSERT_EVENT)
            .bind(self.job)
            .bind(self.event)
            .bind(self.from)
            .bind(self.to)
            .bind(self.account)
            .bind(self.request_id)
            .bind(self.owner)
            .bind(self.detail)
            .bind(self.at)
            .execute(conn)
            .await
            .map_err(classify)?;
        Ok(())
    }
}

/// Queues `pg_notify`; PostgreSQL delivers it when (and only if) the transaction commits.
async fn notify(conn: &mut PgConnection, what: &str, job: i64) -> Result<(), StorageError> {
    sqlx::query(sql::NOTIFY).bind(format!("{what} {job}")).execute(conn).await.map_err(classify)?;
    Ok(())
}

/// The job, locked until the transaction ends.
async fn lock_job(conn: &mut PgConnection, job: JobId) -> Result<JobRow, StorageError> {
    sqlx::query_as::<_, JobRow>(sql::LOCK_JOB)
        .bind(job.0)
        .fetch_optional(conn)
        .await
        .map_err(classify)?
        .ok_or_else(|| StorageError::NotFound(format!("job {job}")))
}

async fn job_by_key(conn: &mut PgConnection, key: &IdempotencyKey) -> Result<Option<JobRow>, StorageError> {
    sqlx::query_as::<_, JobRow>(sql::JOB_BY_KEY).bind(key.as_str()).fetch_optional(conn).await.map_err(classify)
}

async fn usage(conn: &mut PgConnection, user: UserId, now: Timestamp) -> Result<UserUsage, StorageError> {
    let row = sqlx::query_as::<_, UsageRow>(sql::USER_USAGE)
        .bind(user.0)
        .bind(quota::day_start(now))
        .bind(quota::month_start(now))
        .fetch_one(conn)
        .await
        .map_err(classify)?;
    let spend = Money::from_micros(row.charged_this_month.saturating_add(row.active_holds));
    Ok(UserUsage {
        jobs_today: count_u32(row.jobs_today),
        spend_this_month: spend,
        in_flight: count_u32(row.in_flight),
        queued: count_u32(row.queued),
    })
}

async fn position(conn: &mut PgConnection, job: JobId) -> Result<Option<PositionRow>, StorageError> {
    sqlx::query_as::<_, PositionRow>(sql::QUEUE_POSITION).bind(job.0).fetch_optional(conn).await.map_err(classify)
}

/// Writes a terminal state, its event, its settlement and its media, in the caller's
/// transaction; returns the updated row.
async fn write_finish(
    conn: &mut PgConnection,
    row: &JobRow,
    state: &JobState,
    settlement: &Settlement,
    media: &[MediaRecord],
    now: Timestamp,
) -> Result<JobRow, StorageError> {
    let job = JobId(row.id);
    let from = row.state()?;
    let failure = match state {
        JobState::Failed { reason } => {
            Some(serde_json::to_value(reason).map_err(|e| StorageError::Other(anyhow::Error::new(e)))?)
        }
        _ => None,
    };
    let updated = sqlx::query_as::<_, JobRow>(sql::FINISH)
        .bind(job.0)
        .bind(state.name())
        .bind(failure)
        .bind(now)
        .fetch_one(&mut *conn)
        .await
        .map_err(classify)?;
    sqlx::query(sql::SETTLE)
        .bind(job.0)
        .bind(row.user_id)
        .bind(settlement.user_charge.micros())
        .bind(settlement.user_refund.micros())
        .bind(row.account_id.as_deref())
        .bind(settlement.fal_cost.micros())
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(classify)?;
    for record in media {
        save_media(&mut *conn, job, record).await?;
    }
    let detail = match state {
        JobState::Failed { reason } => Some(reason.to_string()),
        _ => None,
    };
    let mut event = Event::new(job.0, state.name(), Some(from.name()), state.name(), now);
    event.account = row.account_id.as_deref();
    event.detail = detail.as_deref();
    event.record(&mut *conn).await?;
    notify(conn, "finished", job.0).await?;
    Ok(updated)
}

/// Inserts or completes a media record of `job`.
pub(crate) async fn save_media(conn: &mut PgConnection, job: JobId, record: &MediaRecord) -> Result<(), StorageError> {
    let size = record
        .size_bytes
        .map(i64::try_from)
        .transpose()
        .map_err(|_| StorageError::Conflict(format!("media size {:?} is out of range", record.size_bytes)))?;
    sqlx::query(sql::SAVE_MEDIA)
        .bind(job.0)
        .bind(&record.fal_url)
        .bind(record.telegram_file_id.as_deref())
        .bind(size)
        .bind(record.content_type.as_deref())
        .execute(conn)
        .await
        .map_err(classify)?;
    Ok(())
}

/// Gives the job's lease to `new_owner` in the caller's transaction.
async fn take_over(
    conn: &mut PgConnection,
    job: JobId,
    new_owner: &str,
    lease_until: Timestamp,
    now: Timestamp,
) -> Result<JobRow, StorageError> {
    sqlx::query_as::<_, JobRow>(sql::TAKE_OVER)
        .bind(job.0)
        .bind(new_owner)
        .bind(lease_until)
        .bind(now)
        .fetch_one(conn)
        .await
        .map_err(classify)
}

/// The settlement the ledger recorded for a finished job.
async fn settlement_of(conn: &mut PgConnection, job: JobId) -> Result<Settlement, StorageError> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as(sql::SETTLEMENT_OF).bind(job.0).fetch_all(conn).await.map_err(classify)?;
    Ok(storage_rules::settlement_from_ledger(rows))
}

/// Puts an in-flight job back in the queue in the caller's transaction.
async fn write_requeue(
    conn: &mut PgConnection,
    row: &JobRow,
    reason: &str,
    not_before: Option<Timestamp>,
    now: Timestamp,
) -> Result<JobRow, StorageError> {
    let job = JobId(row.id);
    let from = row.state()?;
    from.apply(JobEvent::Requeued).map_err(|e| conflict(job, e))?;
    let updated = sqlx::query_as::<_, JobRow>(sql::REQUEUE)
        .bind(job.0)
        .bind(not_before)
        .bind(now)
        .fetch_one(&mut *conn)
        .await
        .map_err(classify)?;
    let mut event = Event::new(job.0, "requeued", Some(from.name()), "queued", now);
    event.account = row.account_id.as_deref();
    event.request_id = from.request_id().map(|r| r.as_str());
    event.owner = row.lease_owner.as_deref();
    event.detail = Some(reason);
    event.record(&mut *conn).await?;
    notify(conn, "requeued", job.0).await?;
    Ok(updated)
}

#[async_trait]
impl JobQueue for PgStore {
    #[tracing::instrument(skip_all, fields(user = %request.user, key = %request.key))]
    async fn enqueue(&self, request: &EnqueueRequest) -> Result<EnqueueOutcome, StorageError> {
        let mut tx = self.begin().await?;
        let result = async {
            // Every enqueue of this user waits here, so the usage read below stays true until
            // commit: two requests cannot both pass a cap of one.
            let locked: Option<i64> = sqlx::query_scalar(sql::LOCK_USER)
                .bind(request.user.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(classify)?;
            if locked.is_none() {
                return Err(StorageError::NotFound(format!("user {}", request.user)));
            }
            if let Some(existing) = job_by_key(&mut tx, &request.key).await? {
                return Ok(EnqueueOutcome::Duplicate(existing.into_job()?));
            }
            let usage = usage(&mut tx, request.user, request.now).await?;
            if let Err(refusal) = quota::check(&request.plan, request.role, &usage, request.hold, request.now) {
                return Ok(EnqueueOutcome::Refused(refusal));
            }

            let spec = serde_json::to_value(&request.spec).map_err(|e| StorageError::Other(anyhow::Error::new(e)))?;
            let inserted = sqlx::query_as::<_, JobRow>(sql::INSERT_JOB)
                .bind(request.key.as_str())
                .bind(request.user.0)
                .bind(request.chat.0)
                .bind(request.spec.model.as_str())
                .bind(spec)
                .bind(request.hold.micros())
                .bind(request.now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(classify)?;
            let Some(row) = inserted else {
                // The key was committed by another transaction since our read (another user
                // sending the same key): the job is theirs, read it back.
                let existing = job_by_key(&mut tx, &request.key)
                    .await?
                    .ok_or_else(|| StorageError::Conflict(format!("idempotency key {} vanished", request.key)))?;
                return Ok(EnqueueOutcome::Duplicate(existing.into_job()?));
            };

            sqlx::query(sql::INSERT_HOLD)
                .bind(row.id)
                .bind(request.user.0)
                .bind(request.hold.micros())
                .bind(request.now)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            Event::new(row.id, "enqueued", None, "queued", request.now).record(&mut tx).await?;
            notify(&mut tx, "enqueued", row.id).await?;
            let place = position(&mut tx, JobId(row.id))
                .await?
                .ok_or_else(|| StorageError::Conflict(format!("job {} vanished", row.id)))?;
            let position = QueuePosition { position: count_u32(place.position), total: count_u32(place.total) };
            Ok(EnqueueOutcome::Enqueued(row.into_job()?, position))
        }
        .await;
        Self::conclude(tx, result).await
    }

    #[tracing::instrument(skip_all, fields(owner = %request.owner))]
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedJob>, StorageError> {
        if request.max_jobs == 0 || request.accounts.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let result = async {
            // See sql::CLAIM_LOCK for why claims are serialized.
            sqlx::query(sql::CLAIM_LOCK).bind(sql::CLAIM_LOCK_KEY).execute(&mut *tx).await.map_err(classify)?;

            let in_flight: HashMap<String, i64> = sqlx::query_as::<_, (Option<String>, i64)>(sql::IN_FLIGHT_BY_ACCOUNT)
                .fetch_all(&mut *tx)
                .await
                .map_err(classify)?
                .into_iter()
                .filter_map(|(account, count)| Some((account?, count)))
                .collect();
            let accounts: Vec<AccountSlots> = request
                .accounts
                .iter()
                .map(|a| AccountSlots {
                    account: a.account.clone(),
                    limit: a.limit,
                    in_flight: count_u32(in_flight.get(a.account.as_str()).copied().unwrap_or(0)),
                    usable: a.usable,
                })
                .collect();
            let free: u64 = accounts.iter().map(|a| u64::from(a.free_slots(request.overhang))).sum();
            let budget = free.min(u64::from(request.max_jobs));
            if budget == 0 {
                return Ok(Vec::new());
            }

            let (plans, caps): (Vec<String>, Vec<i64>) =
                request.in_flight_caps.iter().map(|(plan, cap)| (plan.clone(), i64::from(*cap))).unzip();
            let candidates = sqlx::query_as::<_, CandidateRow>(sql::CLAIM_CANDIDATES)
                .bind(plans)
                .bind(caps)
                .bind(request.now)
                .bind(i64::try_from(budget).unwrap_or(i64::MAX))
                .fetch_all(&mut *tx)
                .await
                .map_err(classify)?;
            if candidates.is_empty() {
                return Ok(Vec::new());
            }

            let mut users: BTreeMap<i64, UserLoad> = BTreeMap::new();
            for c in &candidates {
                users.entry(c.user_id).or_insert(UserLoad {
                    user: UserId(c.user_id),
                    in_flight: count_u32(c.in_flight),
                    cap: c.cap.map(count_u32),
                });
            }
            let input = SchedulerInput {
                accounts,
                overhang: request.overhang,
                queue: candidates
                    .iter()
                    .map(|c| QueuedJob { job: JobId(c.id), user: UserId(c.user_id), enqueued_at: c.enqueued_at })
                    .collect(),
                users: users.into_values().collect(),
                max_assignments: Some(request.max_jobs),
            };
            let assignments = scheduler::schedule(&input);
            if assignments.is_empty() {
                return Ok(Vec::new());
            }
            for a in &assignments {
                // Every candidate is queued (locked, re-checked by the lock); the domain has the last word.
                JobState::Queued.apply(JobEvent::Claimed(a.account.clone())).map_err(|e| conflict(a.job, e))?;
            }

            let ids: Vec<i64> = assignments.iter().map(|a| a.job.0).collect();
            let account_ids: Vec<String> = assignments.iter().map(|a| a.account.as_str().to_owned()).collect();
            let rows = sqlx::query_as::<_, JobRow>(sql::CLAIM_JOBS)
                .bind(&ids)
                .bind(&account_ids)
                .bind(&request.owner)
                .bind(request.lease_until)
                .bind(request.now)
                .fetch_all(&mut *tx)
                .await
                .map_err(classify)?;
            if rows.len() != ids.len() {
                return Err(StorageError::Conflict(format!("claimed {} of {} locked jobs", rows.len(), ids.len())));
            }
            sqlx::query(sql::CLAIM_EVENTS)
                .bind(&ids)
                .bind(&account_ids)
                .bind(&request.owner)
                .bind(request.now)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;

            // In the scheduler's order: the order to submit in.
            let mut by_id: HashMap<i64, JobRow> = rows.into_iter().map(|row| (row.id, row)).collect();
            let mut claimed = Vec::with_capacity(assignments.len());
            for a in assignments {
                let row = by_id.remove(&a.job.0).ok_or_else(|| conflict(a.job, "claimed row missing"))?;
                claimed.push(ClaimedJob { job: row.into_job()?, account: a.account });
            }
            Ok(claimed)
        }
        .await;
        let claimed = Self::conclude(tx, result).await?;
        tracing::debug!(claimed = claimed.len(), "claimed jobs");
        Ok(claimed)
    }

    #[tracing::instrument(skip_all, fields(job_id = %job))]
    async fn mark_submitted(
        &self,
        job: JobId,
        lease: &Lease,
        handle: &RemoteHandle,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        let mut tx = self.begin().await?;
        let result = async {
            let row = lock_job(&mut tx, job).await?;
            let state = row.state()?;
            check_dispatching(job, &state, row.lease().as_ref(), lease)?;
            if state.account() != Some(&handle.account) {
                return Err(conflict(
                    job,
                    format!("claimed for {:?}, submitted on {}", state.account(), handle.account),
                ));
            }
            state.apply(JobEvent::Submitted(handle.request_id.clone())).map_err(|e| conflict(job, e))?;
            sqlx::query(sql::MARK_SUBMITTED)
                .bind(job.0)
                .bind(handle.request_id.as_str())
                .bind(handle.model.as_str())
                .bind(&handle.status_url)
                .bind(&handle.response_url)
                .bind(&handle.cancel_url)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            let mut event = Event::new(job.0, "submitted", Some("dispatching"), "submitted", now);
            event.account = Some(handle.account.as_str());
            event.request_id = Some(handle.request_id.as_str());
            event.owner = Some(&lease.owner);
            event.record(&mut tx).await
        }
        .await;
        Self::conclude(tx, result).await
    }

    #[tracing::instrument(skip_all, fields(job_id = %job))]
    async fn mark_submitting(&self, job: JobId, lease: &Lease, now: Timestamp) -> Result<(), StorageError> {
        let mut tx = self.begin().await?;
        let result = async {
            let row = lock_job(&mut tx, job).await?;
            check_dispatching(job, &row.state()?, row.lease().as_ref(), lease)?;
            sqlx::query(sql::MARK_SUBMITTING).bind(job.0).bind(now).execute(&mut *tx).await.map_err(classify)?;
            Ok(())
        }
        .await;
        Self::conclude(tx, result).await
    }

    #[tracing::instrument(skip_all, fields(job_id = %job))]
    async fn add_helper_cost(
        &self,
        job: JobId,
        lease: &Lease,
        cost: Money,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        storage_rules::check_helper_cost(job, cost)?;
        let mut tx = self.begin().await?;
        let result = async {
            let row = lock_job(&mut tx, job).await?;
            check_dispatching(job, &row.state()?, row.lease().as_ref(), lease)?;
            let query = sqlx::query(sql::ADD_HELPER_COST).bind(job.0).bind(cost.micros()).bind(now);
            query.execute(&mut *tx).await.map_err(classify)?;
            Ok(())
        }
        .await;
        Self::conclude(tx, result).await
    }

    #[tracing::instrument(skip_all, fields(job_id = %job))]
    async fn mark_delivered(&self, job: JobId, lease: Option<Lease>, now: Timestamp) -> Result<(), StorageError> {
        let lease = lease.as_ref();
        let epoch = lease.map(|l| i64::try_from(l.epoch).unwrap_or(i64::MAX));
        let done = sqlx::query(sql::MARK_DELIVERED)
            .bind(job.0)
            .bind(now)
            .bind(lease.map(|l| l.owner.as_str()))
            .bind(epoch)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        let row = sqlx::query_as::<_, JobRow>(sql::GET_JOB)
            .bind(job.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?
            .ok_or_else(|| StorageError::NotFound(format!("job {job}")))?;
        let state = row.state()?;
        if !state.is_terminal() {
            return Err(conflict(job, format!("it is {state}, not finished")));
        }
        Err(conflict(job, format!("its delivery is under {:?}, not {lease:?}", row.lease())))
    }

    #[tracing::instrument(skip_all, fields(job_id = %job))]
    async fn mark_running(&self, job: JobId, lease: &Lease, now: Timestamp) -> Result<(), StorageError> {
        let mut tx = self.begin().await?;
        let result = async {
            let row = lock_job(&mut tx, job).await?;
            let state = row.state()?;
            state.apply(JobEvent::Started).map_err(|e| conflict(job, e))?;
            check_held(job, row.lease().as_ref(), lease)?;
            if matches!(state, JobState::Running { .. }) {
                return Ok(()); // Already recorded: status polls repeat.
            }
            sqlx::query(sql::MARK_RUNNING).bind(job.0).bind(now).execute(&mut *tx).await.map_err(classify)?;
            let mut event = Event::new(job.0, "started", Some(state.name()), "running", now);
            event.account = row.account_id.as_deref();
            event.request_id = state.request_id().map(|r| r.as_str());
            event.owner = row.lease_owner.as_deref();
            event.record(&mut tx).await
        }
        .await;
        Self::conclude(tx, result).await
    }

    #[tracing::instrument(skip_all, fields(job_id = %job))]
    async fn requeue(
        &self,
        job: JobId,
        lease: &Lease,
        reason: &str,
        not_before: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Job, StorageError> {
        let mut tx = self.begin().await?;
        let result = async {
            let row = lock_job(&mut tx, job).await?;
            let state = row.state()?;
            state.apply(JobEvent::Requeued).map_err(|e| conflict(job, e))?;
            check_held(job, row.lease().as_ref(), lease)?;
            write_requeue(&mut tx, &row, reason, not_before, now).await
        }
        .await;
        Self::conclude(tx, result).await?.into_job()
    }

    #[tracing::instrument(skip_all, fields(job_id = %job, state = %finish.state))]
    async fn finish(&self, job: JobId, finish: &Finish) -> Result<FinishOutcome, StorageError> {
        let mut tx = self.begin().await?;
        let result = async {
            let row = lock_job(&mut tx, job).await?;
            let Some(event) = finish.state.terminal_event() else {
                return Err(conflict(job, format!("{} is not a terminal state", finish.state)));
            };
            check_finisher(job, row.lease().as_ref(), finish)?;
            let state = row.state()?;
            if state.is_terminal() {
                return Ok(FinishOutcome::AlreadyFinished(row.into_job()?));
            }
            state.apply(event).map_err(|e| conflict(job, e))?;
            check_settlement(job, row.hold(), &finish.settlement)?;
            let updated =
                write_finish(&mut tx, &row, &finish.state, &finish.settlement, &finish.media, finish.now).await?;
            Ok(FinishOutcome::Finished(updated.into_job()?))
        }
        .await;
        Self::conclude(tx, result).await
    }

    #[tracing::instrument(skip_all, fields(job_id = %job))]
    async fn cancel(&self, job: JobId, user: UserId, now: Timestamp) -> Result<CancelResult, StorageError> {
        let mut tx = self.begin().await?;
        let result = async {
            let row = lock_job(&mut tx, job).await?;
            if row.user_id != user.0 {
                return Err(StorageError::NotFound(format!("job {job} of user {user}")));
            }
            let state = row.state()?;
            if state.is_terminal() {
                return Ok(CancelResult::AlreadyFinished(row.into_job()?));
            }
            if state.is_in_flight() {
                let handle = state.request_id().and_then(|_| row.handle());
                return Ok(CancelResult::InFlight(row.into_job()?, handle));
            }
            let canceled = state.apply(JobEvent::Canceled).map_err(|e| conflict(job, e))?;
            // Never sent to fal: the whole hold goes back.
            let settlement = settle(&canceled, row.hold(), Money::ZERO, false, SettlementPolicy::default());
            check_settlement(job, row.hold(), &settlement)?;
            let updated = write_finish(&mut tx, &row, &canceled, &settlement, &[], now).await?;
            Ok(CancelResult::Canceled(updated.into_job()?))
        }
        .await;
        Self::conclude(tx, result).await
    }

    async fn renew_leases(&self, held: &[(JobId, Lease)], until: Timestamp) -> Result<u64, StorageError> {
        if held.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = held.iter().map(|(job, _)| job.0).collect();
        let owners: Vec<&str> = held.iter().map(|(_, lease)| lease.owner.as_str()).collect();
        let epochs: Vec<i64> = held.iter().map(|(_, lease)| i64::try_from(lease.epoch).unwrap_or(i64::MAX)).collect();
        let done = sqlx::query(sql::RENEW_LEASES)
            .bind(&ids)
            .bind(&owners)
            .bind(&epochs)
            .bind(until)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected())
    }

    #[tracing::instrument(skip_all, fields(new_owner = %new_owner))]
    async fn rescue_expired(
        &self,
        new_owner: &str,
        lease_until: Timestamp,
        now: Timestamp,
    ) -> Result<Vec<Rescued>, StorageError> {
        let mut tx = self.begin().await?;
        let result = async {
            let expired = sqlx::query_as::<_, JobRow>(sql::EXPIRED_LEASES)
                .bind(now)
                .fetch_all(&mut *tx)
                .await
                .map_err(classify)?;
            let mut rescued = Vec::with_capacity(expired.len());
            for row in expired {
                let job = JobId(row.id);
                let state = row.state()?;
                let detail = format!("lease of {} expired", row.lease_owner.as_deref().unwrap_or("?"));
                if state.is_terminal() {
                    // Settled, but the user may never have been told: the new owner delivers it.
                    let updated = take_over(&mut tx, job, new_owner, lease_until, now).await?;
                    let settlement = settlement_of(&mut tx, job).await?;
                    rescued.push(Rescued::Redeliver(updated.into_job()?, settlement));
                    continue;
                }
                let submit_started: bool =
                    sqlx::query_scalar(sql::SUBMIT_STARTED).bind(job.0).fetch_one(&mut *tx).await.map_err(classify)?;
                if submit_started {
                    // fal may have accepted it: a resubmit could run it twice. The new owner ends it.
                    let updated = take_over(&mut tx, job, new_owner, lease_until, now).await?;
                    let mut event = Event::new(job.0, "rescued", Some(state.name()), state.name(), now);
                    event.account = row.account_id.as_deref();
                    event.owner = Some(new_owner);
                    let detail = format!("{detail} during its submit");
                    event.detail = Some(&detail);
                    event.record(&mut tx).await?;
                    rescued.push(Rescued::SubmitUnknown(updated.into_job()?));
                    continue;
                }
                match (state.request_id(), row.handle()) {
                    // fal has it: resubmitting would run (and bill) it twice. Follow it instead.
                    (Some(request_id), Some(handle)) => {
                        let updated = take_over(&mut tx, job, new_owner, lease_until, now).await?;
                        let mut event = Event::new(job.0, "rescued", Some(state.name()), state.name(), now);
                        event.account = row.account_id.as_deref();
                        event.request_id = Some(request_id.as_str());
                        event.owner = Some(new_owner);
                        event.detail = Some(&detail);
                        event.record(&mut tx).await?;
                        rescued.push(Rescued::Resume(updated.into_job()?, handle));
                    }
                    _ => {
                        let updated = write_requeue(&mut tx, &row, &detail, None, now).await?;
                        rescued.push(Rescued::Requeued(updated.into_job()?));
                    }
                }
            }
            Ok(rescued)
        }
        .await;
        let rescued = Self::conclude(tx, result).await?;
        if !rescued.is_empty() {
            tracing::info!(rescued = rescued.len(), "took over jobs with expired leases");
        }
        Ok(rescued)
    }

    async fn queue_position(&self, job: JobId) -> Result<Option<QueuePosition>, StorageError> {
        let mut conn = self.pool.acquire().await.map_err(classify)?;
        let place = position(&mut conn, job).await?.ok_or_else(|| StorageError::NotFound(format!("job {job}")))?;
        if place.state != "queued" {
            return Ok(None);
        }
        Ok(Some(QueuePosition { position: count_u32(place.position), total: count_u32(place.total) }))
    }

    async fn get_job(&self, job: JobId) -> Result<Option<Job>, StorageError> {
        let row =
            sqlx::query_as::<_, JobRow>(sql::GET_JOB).bind(job.0).fetch_optional(&self.pool).await.map_err(classify)?;
        row.map(JobRow::into_job).transpose()
    }

    async fn remote_handle(&self, job: JobId) -> Result<Option<RemoteHandle>, StorageError> {
        let row =
            sqlx::query_as::<_, JobRow>(sql::GET_JOB).bind(job.0).fetch_optional(&self.pool).await.map_err(classify)?;
        Ok(row.and_then(|row| row.handle()))
    }

    async fn recent_jobs(&self, user: UserId, limit: u32) -> Result<Vec<Job>, StorageError> {
        sqlx::query_as::<_, JobRow>(sql::RECENT_JOBS)
            .bind(user.0)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .into_iter()
            .map(JobRow::into_job)
            .collect()
    }

    async fn user_usage(&self, user: UserId, now: Timestamp) -> Result<UserUsage, StorageError> {
        let mut conn = self.pool.acquire().await.map_err(classify)?;
        usage(&mut conn, user, now).await
    }

    async fn in_flight_by_account(&self) -> Result<Vec<(AccountId, u32)>, StorageError> {
        let rows = sqlx::query_as::<_, (Option<String>, i64)>(sql::IN_FLIGHT_BY_ACCOUNT)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        Ok(rows.into_iter().filter_map(|(account, n)| Some((AccountId::new(account?), count_u32(n)))).collect())
    }

    async fn queued_count(&self) -> Result<u32, StorageError> {
        let n: i64 = sqlx::query_scalar(sql::QUEUED_COUNT).fetch_one(&self.pool).await.map_err(classify)?;
        Ok(count_u32(n))
    }

    async fn wait_for_change(&self, timeout_ms: u64) -> Result<bool, StorageError> {
        // Register before anything else, so a notification that lands meanwhile still counts.
        let notified = self.changes.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !self.changes.listening.load(Ordering::Acquire) {
            // The listener is reconnecting: tell a dead database from a quiet one.
            sqlx::query("SELECT 1").execute(&self.pool).await.map_err(classify)?;
        }
        Ok(tokio::time::timeout(Duration::from_millis(timeout_ms), notified).await.is_ok())
    }
}
