//! The durable queue's semantics in memory: enqueue under the quota, fair claims under
//! account limits, fenced leases, and the ledger rows and events written with each state
//! change (the SQLite adapter's `queue.rs`, statement for statement).

use crate::rows::{EntryKind, EventRecord, LedgerEntry, StoredJob, stamp};
use crate::store::{MemoryStore, Tables};
use async_trait::async_trait;
use mediagen_domain::job::settle;
use mediagen_domain::quota::{self, UserUsage};
use mediagen_domain::scheduler::{self, AccountSlots, QueuedJob, SchedulerInput, UserLoad};
use mediagen_domain::{
    AccountId, Job, JobEvent, JobId, JobState, Lease, Money, Role, Settlement, SettlementPolicy, Timestamp, UserId,
};
use mediagen_ports::storage_rules::{self, check_dispatching, check_finisher, check_held, check_settlement, conflict};
use mediagen_ports::{
    CancelResult, ClaimRequest, ClaimedJob, EnqueueOutcome, EnqueueRequest, Finish, FinishOutcome, JobQueue,
    MediaRecord, QueuePosition, RemoteHandle, Rescued, StorageError,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// A count as the ports report it: saturates rather than fails.
fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `UserUsage` as the SQL adapters count it: jobs created since the start of the UTC day,
/// the month's charges plus the holds of every job not yet settled, in flight and queued.
fn usage(t: &Tables, user: UserId, now: Timestamp) -> UserUsage {
    let (day, month) = (quota::day_start(now), quota::month_start(now));
    let (mut jobs_today, mut in_flight, mut queued) = (0usize, 0usize, 0usize);
    let mut holds = Money::ZERO;
    for row in t.jobs.values().filter(|row| row.job.user == user) {
        if row.job.created_at >= day {
            jobs_today += 1;
        }
        if row.job.state == JobState::Queued {
            queued += 1;
            holds = holds.saturating_add(row.job.hold);
        } else if row.job.state.is_in_flight() {
            in_flight += 1;
            holds = holds.saturating_add(row.job.hold);
        }
    }
    let charged = Money::saturating_sum(
        t.ledger.iter().filter(|e| e.user == user && e.kind == EntryKind::Charge && e.at >= month).map(|e| e.amount),
    );
    UserUsage {
        jobs_today: count_u32(jobs_today),
        spend_this_month: charged.saturating_add(holds),
        in_flight: count_u32(in_flight),
        queued: count_u32(queued),
    }
}

/// The place of a queued job: FIFO by enqueue time, the same approximation of the
/// scheduler as the SQL adapters'.
fn place(t: &Tables, row: &StoredJob) -> QueuePosition {
    let key = (row.enqueued_at, row.id());
    let queued = t.jobs.values().filter(|q| q.job.state == JobState::Queued);
    let (mut position, mut total) = (0usize, 0usize);
    for q in queued {
        total += 1;
        if (q.enqueued_at, q.id()) <= key {
            position += 1;
        }
    }
    QueuePosition { position: count_u32(position), total: count_u32(total) }
}

/// Jobs in flight per account, by the account they hold a slot of.
fn in_flight_by_account(t: &Tables) -> BTreeMap<AccountId, u32> {
    let mut counts: BTreeMap<AccountId, u32> = BTreeMap::new();
    for account in t.jobs.values().filter_map(|row| row.job.state.account()) {
        *counts.entry(account.clone()).or_default() += 1;
    }
    counts
}

/// The settlement the ledger recorded for a finished job.
fn settlement_of(t: &Tables, job: JobId) -> Settlement {
    let rows = t.ledger.iter().filter(|e| e.job == job).map(|e| (e.kind.as_str().to_owned(), e.amount.micros()));
    storage_rules::settlement_from_ledger(rows)
}

/// A media size as the SQL adapters accept it (a signed 64-bit column).
fn check_media(records: &[MediaRecord]) -> Result<(), StorageError> {
    for record in records {
        if record.size_bytes.is_some_and(|size| i64::try_from(size).is_err()) {
            return Err(StorageError::Conflict(format!("media size {:?} is out of range", record.size_bytes)));
        }
    }
    Ok(())
}

/// Inserts or completes the media record of `job` and `record.fal_url` (checked by
/// [`check_media`] first).
pub(crate) fn save_media_row(t: &mut Tables, job: JobId, record: &MediaRecord) {
    if let Some(existing) = t.media.iter_mut().find(|m| m.job == job && m.fal_url == record.fal_url) {
        existing.telegram_file_id = record.telegram_file_id.clone().or(existing.telegram_file_id.take());
        existing.size_bytes = record.size_bytes.or(existing.size_bytes);
        existing.content_type = record.content_type.clone().or(existing.content_type.take());
        return;
    }
    t.media.push(MediaRecord { job, ..record.clone() });
}

/// Checks and saves a media record of an existing job (the `UsageStore` port's write).
pub(crate) fn save_media(t: &mut Tables, record: &MediaRecord) -> Result<(), StorageError> {
    check_media(std::slice::from_ref(record))?;
    t.job(record.job).map_err(|_| StorageError::NotFound("a referenced row is missing (foreign key)".into()))?;
    save_media_row(t, record.job, record);
    Ok(())
}

/// Writes a terminal state, its event, its settlement and its media; returns the job.
fn finish_row(
    t: &mut Tables,
    id: JobId,
    state: &JobState,
    settlement: &Settlement,
    media: &[MediaRecord],
    now: Timestamp,
) -> Result<Job, StorageError> {
    let row = t.job(id)?;
    let (from, user, account) = (row.job.state.clone(), row.job.user, row.account.clone());
    if t.ledger.iter().any(|e| e.job == id && e.kind != EntryKind::Hold) {
        return Err(StorageError::Conflict("the job's ledger entry already exists (ledger_job_kind_key)".into()));
    }
    check_media(media)?;

    let row = t.job_mut(id)?;
    row.job.state = state.clone();
    row.not_before = None;
    row.submit_started_at = None;
    // The lease stays as the delivery lease; a job nobody holds counts as told at once.
    row.delivered_at = row.job.lease.is_none().then_some(now);
    row.finished_at = Some(now);
    row.job.updated_at = now;
    let job = row.job.clone();
    let entries = [
        (EntryKind::Charge, None, settlement.user_charge),
        (EntryKind::Refund, None, settlement.user_refund),
        (EntryKind::FalCost, account.clone(), settlement.fal_cost),
    ];
    for (kind, account, amount) in entries {
        t.ledger.push(LedgerEntry { job: id, user, account, kind, amount, at: now });
    }
    for record in media {
        save_media_row(t, id, record);
    }
    let mut event = EventRecord::new(id, state.name(), Some(from.name()), state.name(), now);
    event.account = account;
    if let JobState::Failed { reason } = state {
        event.detail = Some(reason.to_string());
    }
    t.events.push(event);
    Ok(job)
}

/// Puts an in-flight job back in the queue; returns it.
fn requeue_row(
    t: &mut Tables,
    id: JobId,
    reason: &str,
    not_before: Option<Timestamp>,
    now: Timestamp,
) -> Result<Job, StorageError> {
    let row = t.job_mut(id)?;
    let from = row.job.state.clone();
    from.apply(JobEvent::Requeued).map_err(|e| conflict(id, e))?;
    let account = row.account.take();
    let owner = row.job.lease.as_ref().map(|l| l.owner.clone());
    row.job.state = JobState::Queued;
    row.handle = None;
    row.release();
    row.submit_started_at = None;
    row.job.submitted_at = None;
    row.not_before = not_before;
    row.job.updated_at = now;
    let job = row.job.clone();
    let mut event = EventRecord::new(id, "requeued", Some(from.name()), "queued", now);
    event.account = account;
    event.request_id = from.request_id().cloned();
    event.owner = owner;
    event.detail = Some(reason.to_owned());
    t.events.push(event);
    Ok(job)
}

/// Gives the job's lease to `new_owner` under a new epoch; returns the job.
fn take_over(
    t: &mut Tables,
    id: JobId,
    new_owner: &str,
    until: Timestamp,
    now: Timestamp,
) -> Result<Job, StorageError> {
    let row = t.job_mut(id)?;
    row.lease_to(new_owner, until);
    row.job.updated_at = now;
    Ok(row.job.clone())
}

#[async_trait]
impl JobQueue for MemoryStore {
    async fn enqueue(&self, request: &EnqueueRequest) -> Result<EnqueueOutcome, StorageError> {
        let now = stamp(request.now);
        let outcome = {
            let mut t = self.open()?;
            if !t.users.contains_key(&request.user) {
                return Err(StorageError::NotFound(format!("user {}", request.user)));
            }
            if let Some(existing) = t.keys.get(&request.key) {
                return Ok(EnqueueOutcome::Duplicate(t.job(*existing)?.job.clone()));
            }
            let usage = usage(&t, request.user, now);
            if let Err(refusal) = quota::check(&request.plan, request.role, &usage, request.hold, now) {
                return Ok(EnqueueOutcome::Refused(refusal));
            }
            if request.hold.is_negative() {
                return Err(StorageError::Conflict("a hold cannot be negative (jobs_hold_check)".into()));
            }

            t.last_job += 1;
            let id = JobId(t.last_job);
            let job = Job {
                id,
                user: request.user,
                chat: request.chat,
                spec: request.spec.clone(),
                state: JobState::Queued,
                hold: request.hold,
                attempts: 0,
                created_at: now,
                updated_at: now,
                lease: None,
                submitted_at: None,
                helper_cost: Money::ZERO,
            };
            let row = StoredJob {
                job: job.clone(),
                key: request.key.clone(),
                account: None,
                handle: None,
                epoch: 0,
                lease_until: None,
                not_before: None,
                enqueued_at: now,
                finished_at: None,
                submit_started_at: None,
                delivered_at: None,
            };
            t.jobs.insert(id, row);
            t.keys.insert(request.key.clone(), id);
            let hold = LedgerEntry {
                job: id,
                user: request.user,
                account: None,
                kind: EntryKind::Hold,
                amount: request.hold,
                at: now,
            };
            t.ledger.push(hold);
            t.events.push(EventRecord::new(id, "enqueued", None, "queued", now));
            let position = place(&t, t.job(id)?);
            EnqueueOutcome::Enqueued(job, position)
        };
        self.changed();
        Ok(outcome)
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedJob>, StorageError> {
        let (now, lease_until) = (stamp(request.now), stamp(request.lease_until));
        let mut t = self.open()?;
        if request.max_jobs == 0 || request.accounts.is_empty() {
            return Ok(Vec::new());
        }
        let unknown: BTreeSet<&str> = request
            .accounts
            .iter()
            .filter(|a| !t.accounts.contains_key(&a.account))
            .map(|a| a.account.as_str())
            .collect();
        if !unknown.is_empty() {
            return Err(StorageError::NotFound(format!("accounts {unknown:?}")));
        }

        let in_flight = in_flight_by_account(&t);
        let accounts: Vec<AccountSlots> = request
            .accounts
            .iter()
            .map(|a| AccountSlots {
                account: a.account.clone(),
                limit: a.limit,
                in_flight: in_flight.get(&a.account).copied().unwrap_or(0),
                usable: a.usable,
            })
            .collect();
        let free: u64 = accounts.iter().map(|a| u64::from(a.free_slots(request.overhang))).sum();
        if free == 0 {
            return Ok(Vec::new());
        }

        // A plan listed twice gets its smallest cap.
        let mut caps: BTreeMap<&str, u32> = BTreeMap::new();
        for (plan, cap) in &request.in_flight_caps {
            caps.entry(plan.as_str()).and_modify(|c| *c = (*c).min(*cap)).or_insert(*cap);
        }
        let mut load: HashMap<UserId, u32> = HashMap::new();
        for row in t.jobs.values().filter(|row| row.job.state.is_in_flight()) {
            *load.entry(row.job.user).or_default() += 1;
        }
        let queue: Vec<QueuedJob> = t
            .jobs
            .values()
            .filter(|row| row.job.state == JobState::Queued && row.not_before.is_none_or(|nb| nb <= now))
            .map(|row| QueuedJob { job: row.id(), user: row.job.user, enqueued_at: row.enqueued_at })
            .collect();
        let mut users: BTreeMap<UserId, UserLoad> = BTreeMap::new();
        for queued in &queue {
            let Some(user) = t.users.get(&queued.user) else { continue };
            let cap = if user.role == Role::Admin { None } else { caps.get(user.plan.as_str()).copied() };
            let in_flight = load.get(&user.id).copied().unwrap_or(0);
            users.entry(user.id).or_insert(UserLoad { user: user.id, in_flight, cap });
        }
        let input = SchedulerInput {
            accounts,
            overhang: request.overhang,
            queue,
            users: users.into_values().collect(),
            max_assignments: Some(request.max_jobs),
        };

        // In the scheduler's order: the order to submit in.
        let mut claimed = Vec::new();
        for a in scheduler::schedule(&input) {
            let state = JobState::Queued.apply(JobEvent::Claimed(a.account.clone())).map_err(|e| conflict(a.job, e))?;
            let row = t.job_mut(a.job)?;
            row.job.state = state;
            row.account = Some(a.account.clone());
            row.lease_to(&request.owner, lease_until);
            row.not_before = None;
            row.job.updated_at = now;
            let job = row.job.clone();
            let mut event = EventRecord::new(a.job, "claimed", Some("queued"), "dispatching", now);
            event.account = Some(a.account.clone());
            event.owner = Some(request.owner.clone());
            t.events.push(event);
            claimed.push(ClaimedJob { job, account: a.account });
        }
        Ok(claimed)
    }

    async fn mark_submitted(
        &self,
        job: JobId,
        lease: &Lease,
        handle: &RemoteHandle,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        let now = stamp(now);
        let mut t = self.open()?;
        let row = t.job(job)?;
        let state = row.job.state.clone();
        check_dispatching(job, &state, row.job.lease.as_ref(), lease)?;
        if state.account() != Some(&handle.account) {
            return Err(conflict(job, format!("claimed for {:?}, submitted on {}", state.account(), handle.account)));
        }
        let next = state.apply(JobEvent::Submitted(handle.request_id.clone())).map_err(|e| conflict(job, e))?;
        let row = t.job_mut(job)?;
        row.job.state = next;
        row.handle = Some(handle.clone());
        row.job.attempts = row.job.attempts.saturating_add(1);
        row.submit_started_at = None;
        row.job.submitted_at = Some(now);
        row.job.updated_at = now;
        let mut event = EventRecord::new(job, "submitted", Some("dispatching"), "submitted", now);
        event.account = Some(handle.account.clone());
        event.request_id = Some(handle.request_id.clone());
        event.owner = Some(lease.owner.clone());
        t.events.push(event);
        Ok(())
    }

    async fn mark_submitting(&self, job: JobId, lease: &Lease, now: Timestamp) -> Result<(), StorageError> {
        let now = stamp(now);
        let mut t = self.open()?;
        let row = t.job_mut(job)?;
        check_dispatching(job, &row.job.state, row.job.lease.as_ref(), lease)?;
        row.submit_started_at = Some(now);
        row.job.updated_at = now;
        Ok(())
    }

    async fn add_helper_cost(
        &self,
        job: JobId,
        lease: &Lease,
        cost: Money,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        storage_rules::check_helper_cost(job, cost)?;
        let now = stamp(now);
        let mut t = self.open()?;
        let row = t.job_mut(job)?;
        check_dispatching(job, &row.job.state, row.job.lease.as_ref(), lease)?;
        row.job.helper_cost = row.job.helper_cost.checked_add(cost).map_err(|e| conflict(job, e))?;
        row.job.updated_at = now;
        Ok(())
    }

    async fn mark_running(&self, job: JobId, lease: &Lease, now: Timestamp) -> Result<(), StorageError> {
        let now = stamp(now);
        let mut t = self.open()?;
        let row = t.job(job)?;
        let state = row.job.state.clone();
        let next = state.apply(JobEvent::Started).map_err(|e| conflict(job, e))?;
        check_held(job, row.job.lease.as_ref(), lease)?;
        if matches!(state, JobState::Running { .. }) {
            return Ok(()); // Already recorded: status polls repeat.
        }
        let row = t.job_mut(job)?;
        row.job.state = next;
        row.job.updated_at = now;
        let mut event = EventRecord::new(job, "started", Some(state.name()), "running", now);
        event.account = row.account.clone();
        event.request_id = state.request_id().cloned();
        event.owner = row.job.lease.as_ref().map(|l| l.owner.clone());
        t.events.push(event);
        Ok(())
    }

    async fn requeue(
        &self,
        job: JobId,
        lease: &Lease,
        reason: &str,
        not_before: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Job, StorageError> {
        let now = stamp(now);
        let requeued = {
            let mut t = self.open()?;
            let row = t.job(job)?;
            row.job.state.apply(JobEvent::Requeued).map_err(|e| conflict(job, e))?;
            check_held(job, row.job.lease.as_ref(), lease)?;
            requeue_row(&mut t, job, reason, not_before.map(stamp), now)?
        };
        self.changed();
        Ok(requeued)
    }

    async fn finish(&self, job: JobId, finish: &Finish) -> Result<FinishOutcome, StorageError> {
        let now = stamp(finish.now);
        let outcome = {
            let mut t = self.open()?;
            let row = t.job(job)?;
            let Some(event) = finish.state.terminal_event() else {
                return Err(conflict(job, format!("{} is not a terminal state", finish.state)));
            };
            check_finisher(job, row.job.lease.as_ref(), finish)?;
            let state = row.job.state.clone();
            if state.is_terminal() {
                return Ok(FinishOutcome::AlreadyFinished(row.job.clone()));
            }
            state.apply(event).map_err(|e| conflict(job, e))?;
            check_settlement(job, row.job.hold, &finish.settlement)?;
            finish_row(&mut t, job, &finish.state, &finish.settlement, &finish.media, now)?
        };
        self.changed();
        Ok(FinishOutcome::Finished(outcome))
    }

    async fn mark_delivered(&self, job: JobId, lease: Option<Lease>, now: Timestamp) -> Result<(), StorageError> {
        let now = stamp(now);
        let mut t = self.open()?;
        let row = t.job_mut(job)?;
        let deliverer = lease.is_none() || row.delivered_at.is_some() || row.job.lease == lease;
        if row.finished_at.is_some() && deliverer {
            row.delivered_at = row.delivered_at.or(Some(now));
            row.release();
            return Ok(());
        }
        if !row.job.state.is_terminal() {
            return Err(conflict(job, format!("it is {}, not finished", row.job.state)));
        }
        Err(conflict(job, format!("its delivery is under {:?}, not {lease:?}", row.job.lease)))
    }

    async fn cancel(&self, job: JobId, user: UserId, now: Timestamp) -> Result<CancelResult, StorageError> {
        let now = stamp(now);
        let canceled = {
            let mut t = self.open()?;
            let row = t.job(job)?;
            if row.job.user != user {
                return Err(StorageError::NotFound(format!("job {job} of user {user}")));
            }
            let state = row.job.state.clone();
            if state.is_terminal() {
                return Ok(CancelResult::AlreadyFinished(row.job.clone()));
            }
            if state.is_in_flight() {
                let handle = state.request_id().and(row.handle.clone());
                return Ok(CancelResult::InFlight(row.job.clone(), handle));
            }
            let canceled = state.apply(JobEvent::Canceled).map_err(|e| conflict(job, e))?;
            // Never sent to fal: the whole hold goes back.
            let settlement = settle(&canceled, row.job.hold, Money::ZERO, false, SettlementPolicy::default());
            check_settlement(job, row.job.hold, &settlement)?;
            finish_row(&mut t, job, &canceled, &settlement, &[], now)?
        };
        self.changed();
        Ok(CancelResult::Canceled(canceled))
    }

    async fn renew_leases(&self, held: &[(JobId, Lease)], until: Timestamp) -> Result<u64, StorageError> {
        if held.is_empty() {
            return Ok(0);
        }
        let until = stamp(until);
        let mut t = self.open()?;
        let mut renewed = BTreeSet::new();
        for (id, lease) in held {
            let Some(row) = t.jobs.get_mut(id) else { continue };
            if row.job.lease.as_ref() == Some(lease) && row.leased_stage() {
                row.lease_until = Some(until);
                renewed.insert(*id);
            }
        }
        Ok(renewed.len() as u64)
    }

    async fn rescue_expired(
        &self,
        new_owner: &str,
        lease_until: Timestamp,
        now: Timestamp,
    ) -> Result<Vec<Rescued>, StorageError> {
        let (until, now) = (stamp(lease_until), stamp(now));
        let rescued = {
            let mut t = self.open()?;
            let mut expired: Vec<(Timestamp, JobId)> = t
                .jobs
                .values()
                .filter(|row| row.leased_stage())
                .filter_map(|row| row.lease_until.filter(|end| *end <= now).map(|end| (end, row.id())))
                .collect();
            expired.sort();
            let mut rescued = Vec::with_capacity(expired.len());
            for (_, id) in expired {
                let row = t.job(id)?;
                let state = row.job.state.clone();
                let (account, handle, submit_started) =
                    (row.account.clone(), row.handle.clone(), row.submit_started_at.is_some());
                let owner = row.job.lease.as_ref().map_or("?", |l| l.owner.as_str());
                let detail = format!("lease of {owner} expired");
                if state.is_terminal() {
                    // Settled, but the user may never have been told: the new owner delivers it.
                    let job = take_over(&mut t, id, new_owner, until, now)?;
                    rescued.push(Rescued::Redeliver(job, settlement_of(&t, id)));
                    continue;
                }
                if submit_started && handle.is_none() {
                    // fal may have accepted it: a resubmit could run it twice. The new owner ends it.
                    let job = take_over(&mut t, id, new_owner, until, now)?;
                    let mut event = EventRecord::new(id, "rescued", Some(state.name()), state.name(), now);
                    event.account = account;
                    event.owner = Some(new_owner.to_owned());
                    event.detail = Some(format!("{detail} during its submit"));
                    t.events.push(event);
                    rescued.push(Rescued::SubmitUnknown(job));
                    continue;
                }
                match (state.request_id(), handle) {
                    // fal has it: resubmitting would run (and bill) it twice. Follow it instead.
                    (Some(request_id), Some(handle)) => {
                        let job = take_over(&mut t, id, new_owner, until, now)?;
                        let mut event = EventRecord::new(id, "rescued", Some(state.name()), state.name(), now);
                        event.account = account;
                        event.request_id = Some(request_id.clone());
                        event.owner = Some(new_owner.to_owned());
                        event.detail = Some(detail);
                        t.events.push(event);
                        rescued.push(Rescued::Resume(job, handle));
                    }
                    _ => rescued.push(Rescued::Requeued(requeue_row(&mut t, id, &detail, None, now)?)),
                }
            }
            rescued
        };
        if rescued.iter().any(|r| matches!(r, Rescued::Requeued(_))) {
            self.changed();
        }
        Ok(rescued)
    }

    async fn queue_position(&self, job: JobId) -> Result<Option<QueuePosition>, StorageError> {
        let t = self.open()?;
        let row = t.job(job)?;
        Ok((row.job.state == JobState::Queued).then(|| place(&t, row)))
    }

    async fn get_job(&self, job: JobId) -> Result<Option<Job>, StorageError> {
        Ok(self.open()?.jobs.get(&job).map(|row| row.job.clone()))
    }

    async fn remote_handle(&self, job: JobId) -> Result<Option<RemoteHandle>, StorageError> {
        Ok(self.open()?.jobs.get(&job).and_then(|row| row.handle.clone()))
    }

    async fn recent_jobs(&self, user: UserId, limit: u32) -> Result<Vec<Job>, StorageError> {
        let t = self.open()?;
        let mut jobs: Vec<&Job> = t.jobs.values().map(|row| &row.job).filter(|job| job.user == user).collect();
        jobs.sort_by_key(|job| std::cmp::Reverse((job.created_at, job.id)));
        Ok(jobs.into_iter().take(limit as usize).cloned().collect())
    }

    async fn user_usage(&self, user: UserId, now: Timestamp) -> Result<UserUsage, StorageError> {
        let t = self.open()?;
        Ok(usage(&t, user, stamp(now)))
    }

    async fn in_flight_by_account(&self) -> Result<Vec<(AccountId, u32)>, StorageError> {
        let t = self.open()?;
        Ok(in_flight_by_account(&t).into_iter().collect())
    }

    async fn queued_count(&self) -> Result<u32, StorageError> {
        let t = self.open()?;
        Ok(count_u32(t.jobs.values().filter(|row| row.job.state == JobState::Queued).count()))
    }

    async fn wait_for_change(&self, timeout_ms: u64) -> Result<bool, StorageError> {
        self.wait(Duration::from_millis(timeout_ms)).await
    }
}
