//! A scripted world behind mockall mocks of every port: each mock's closure reads and
//! writes one shared state, so a test sets the scene, runs a use case and inspects what
//! the engine asked of each port.

use chrono::{TimeZone, Utc};
use mediagen_domain::catalog::Catalog;
use mediagen_domain::credit::{CreditPurchase, CreditSpend};
use mediagen_domain::insights::OperatorSummary;
use mediagen_domain::quota::Plans;
use mediagen_domain::{
    AccountId, ChatId, IdempotencyKey, Job, JobId, JobSpec, JobState, Language, Lease, MediaRef, ModelId, ModelKind,
    Money, Prompt, RequestId, Role, Timestamp, User, UserId, UserSettings,
};
use mediagen_engine::{BreakerConfig, Engine, EngineConfig, Ports, RetryPolicy};
use mediagen_ports::{
    AccountLock, AccountRecord, CancelOutcome, CancelResult, ClaimRequest, ClaimedJob, DeliveredMedia, EnqueueOutcome,
    EnqueueRequest, Finish, FinishOutcome, GenerationError, GenerationOutput, GenerationRequest, KeyStatus, MediaBytes,
    MediaRecord, MessageRef, MockAccountStore, MockAlertLog, MockClock, MockGeneration, MockJobQueue, MockMessaging,
    MockPromptCache, MockUsageStore, MockUserStore, ModelUsage, OperatorAlert, OutputMedia, QueuePosition, Recipient,
    RemoteHandle, RemoteStatus, Rescued, StorageError, UserNotice,
};
use mediagen_ports::{DayCount, JobCounts, JobTiming, MockReportStore, SlotInterval, UsageRow};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// A fal answer to script: `GenerationError` is not `Clone`, so tests script these.
#[derive(Debug, Clone)]
pub enum Answer {
    Ok,
    Retryable,
    ContentPolicy,
    InvalidInput,
    Locked,
    BadKey,
    OutcomeUnknown,
    Timeout,
    /// fal answered the result with success, but it could not be read (billed).
    Unreadable,
}

impl Answer {
    fn error(&self, account: &AccountId) -> GenerationError {
        match self {
            Answer::Ok => unreachable!("not an error"),
            Answer::Retryable => GenerationError::Retryable("503 Service Unavailable".into()),
            Answer::ContentPolicy => GenerationError::ContentPolicy,
            Answer::InvalidInput => GenerationError::InvalidInput("image could not be loaded".into()),
            Answer::Locked => {
                GenerationError::AccountLocked { account: account.clone(), reason: "User is locked".into() }
            }
            Answer::BadKey => GenerationError::BadKey(account.clone()),
            Answer::OutcomeUnknown => GenerationError::SubmitOutcomeUnknown("connection reset".into()),
            Answer::Timeout => GenerationError::Timeout("start deadline".into()),
            Answer::Unreadable => GenerationError::UnreadableResult("expected value at line 1".into()),
        }
    }
}

/// Everything the ports know and everything the engine asked of them.
pub struct World {
    pub now: Timestamp,
    pub storage_down: bool,
    // Users.
    pub users: HashMap<UserId, User>,
    pub upserted: Vec<UserId>,
    // Queue.
    pub jobs: BTreeMap<JobId, Job>,
    pub handles: HashMap<JobId, RemoteHandle>,
    pub next_job: i64,
    pub enqueues: Vec<EnqueueRequest>,
    /// Replaces the default enqueue (a new job at the end of the queue).
    pub enqueue_answer: Option<EnqueueOutcome>,
    pub claims: Vec<ClaimRequest>,
    /// Jobs in flight per account when each claim came in.
    pub claim_in_flight: Vec<HashMap<AccountId, u32>>,
    pub requeues: Vec<(JobId, String, Option<Timestamp>)>,
    pub finishes: Vec<(JobId, Finish)>,
    /// Every finish answers `AlreadyFinished` (a redelivered completion).
    pub already_finished: bool,
    pub marked_running: Vec<JobId>,
    /// `mark_submitted` answers this instead of recording: "conflict" or "down".
    pub mark_submitted_fails: Option<&'static str>,
    pub rescue: Vec<Rescued>,
    pub renewals: u32,
    /// What each lease renewal listed (the leases of live tasks).
    pub renewed: Vec<Vec<(JobId, Lease)>>,
    /// Writes refused because they came with a lease that is not the job's (fenced off).
    pub fenced: Vec<(JobId, &'static str)>,
    /// The epoch of the latest claim or takeover of each job.
    pub epochs: HashMap<JobId, u64>,
    /// Jobs whose submit was recorded as started (`mark_submitting`), in order.
    pub submitting: Vec<JobId>,
    /// Jobs recorded as delivered (`mark_delivered`), in order.
    pub delivered: Vec<JobId>,
    // Accounts.
    pub accounts: Vec<AccountRecord>,
    pub purchases: HashMap<AccountId, Vec<CreditPurchase>>,
    pub spend: HashMap<AccountId, Money>,
    pub set_locks: Vec<(AccountId, Option<AccountLock>)>,
    pub disabled: Vec<AccountId>,
    // fal.
    pub uploads: Vec<(AccountId, usize)>,
    pub submits: Vec<(AccountId, GenerationRequest)>,
    pub submit_answers: VecDeque<Answer>,
    pub wait_answers: VecDeque<Answer>,
    pub waits: Vec<RemoteHandle>,
    /// The deadline each wait was given.
    pub wait_deadlines: Vec<Timestamp>,
    /// What `key_statuses` answers.
    pub keys: Vec<KeyStatus>,
    /// Keys put back by `enable_key`.
    pub enabled_keys: Vec<(AccountId, String)>,
    pub llm_answer: Answer,
    pub llm_calls: u32,
    pub remote_cancels: Vec<RemoteHandle>,
    pub remote_cancel_answer: CancelOutcome,
    pub status_answers: VecDeque<RemoteStatus>,
    /// Once `status_answers` runs out, fal says IN_QUEUE forever (a stuck endpoint).
    pub stuck_in_queue: bool,
    pub outputs: u32,
    /// Every download of a result fails (the CDN is unreachable).
    pub download_fails: bool,
    // Messaging.
    pub notices: Vec<(Recipient, UserNotice)>,
    pub edits: Vec<(MessageRef, UserNotice)>,
    pub results: Vec<(Recipient, JobId, usize, bool)>,
    pub fetched: Vec<MediaRef>,
    pub operator_alerts: Vec<OperatorAlert>,
    pub next_message: i64,
    // The rest.
    pub cache: HashMap<String, (String, Timestamp)>,
    pub alert_log: HashSet<(String, String)>,
    pub saved_media: Vec<MediaRecord>,
    pub fal_cost_this_month: Money,
    pub requests_this_month: u64,
    // Report history (what `ReportStore` answers, filtered by the asked period).
    pub usage_rows: Vec<UsageRow>,
    pub requests_by_day: Vec<DayCount>,
    pub timings: Vec<JobTiming>,
    pub slot_history: Vec<SlotInterval>,
    /// Scheduled summaries sent to the operators, as data.
    pub operator_summaries: Vec<OperatorSummary>,
}

impl World {
    fn new() -> Self {
        Self {
            now: Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap(),
            storage_down: false,
            users: HashMap::new(),
            upserted: Vec::new(),
            jobs: BTreeMap::new(),
            handles: HashMap::new(),
            next_job: 1,
            enqueues: Vec::new(),
            enqueue_answer: None,
            claims: Vec::new(),
            claim_in_flight: Vec::new(),
            requeues: Vec::new(),
            finishes: Vec::new(),
            already_finished: false,
            marked_running: Vec::new(),
            mark_submitted_fails: None,
            rescue: Vec::new(),
            submitting: Vec::new(),
            delivered: Vec::new(),
            renewals: 0,
            renewed: Vec::new(),
            fenced: Vec::new(),
            epochs: HashMap::new(),
            accounts: Vec::new(),
            purchases: HashMap::new(),
            spend: HashMap::new(),
            set_locks: Vec::new(),
            disabled: Vec::new(),
            uploads: Vec::new(),
            submits: Vec::new(),
            submit_answers: VecDeque::new(),
            wait_answers: VecDeque::new(),
            waits: Vec::new(),
            wait_deadlines: Vec::new(),
            keys: Vec::new(),
            enabled_keys: Vec::new(),
            llm_answer: Answer::Ok,
            llm_calls: 0,
            remote_cancels: Vec::new(),
            remote_cancel_answer: CancelOutcome::Requested,
            status_answers: VecDeque::new(),
            stuck_in_queue: false,
            outputs: 1,
            download_fails: false,
            notices: Vec::new(),
            edits: Vec::new(),
            results: Vec::new(),
            fetched: Vec::new(),
            operator_alerts: Vec::new(),
            next_message: 100,
            cache: HashMap::new(),
            alert_log: HashSet::new(),
            saved_media: Vec::new(),
            fal_cost_this_month: Money::ZERO,
            requests_this_month: 0,
            usage_rows: Vec::new(),
            requests_by_day: Vec::new(),
            timings: Vec::new(),
            slot_history: Vec::new(),
            operator_summaries: Vec::new(),
        }
    }

    /// Adds a fal account with a concurrency limit set by override.
    pub fn account(&mut self, name: &str, limit: u32) -> AccountId {
        let id = AccountId::new(name);
        self.accounts.push(AccountRecord {
            id: id.clone(),
            key_names: vec![format!("{name}-key")],
            disabled: false,
            locked: None,
            limit_override: Some(limit),
            retired_since: None,
        });
        id
    }

    /// Adds a regular user on the default (free) plan.
    pub fn user(&mut self, id: i64) -> UserId {
        let user = User {
            id: UserId(id),
            language: Language::Ru,
            plan: "free".into(),
            role: Role::User,
            blocked: false,
            settings: UserSettings::default(),
        };
        self.users.insert(user.id, user);
        UserId(id)
    }

    /// Puts a queued job of `user` in the queue with a hold of `hold`.
    pub fn queued_job(&mut self, user: i64, hold: Money) -> JobId {
        let id = JobId(self.next_job);
        self.next_job += 1;
        let job = Job {
            id,
            user: UserId(user),
            chat: ChatId(user),
            spec: spec("a red fox in the snow"),
            state: JobState::Queued,
            hold,
            attempts: 0,
            created_at: self.now,
            updated_at: self.now,
            lease: None,
            submitted_at: None,
            helper_cost: Money::ZERO,
        };
        self.jobs.insert(id, job);
        id
    }

    pub fn job(&self, id: JobId) -> &Job {
        &self.jobs[&id]
    }

    pub fn finishes_of(&self, id: JobId) -> Vec<&Finish> {
        self.finishes.iter().filter(|(j, _)| *j == id).map(|(_, f)| f).collect()
    }

    /// Submissions of generation jobs (prompt-helper calls left out).
    pub fn job_submits(&self) -> Vec<&(AccountId, GenerationRequest)> {
        self.submits.iter().filter(|(_, r)| r.kind != ModelKind::Llm).collect()
    }

    fn in_flight(&self, account: &AccountId) -> u32 {
        self.jobs.values().filter(|j| j.state.account() == Some(account)).count() as u32
    }

    fn claim(&mut self, request: &ClaimRequest) -> Vec<ClaimedJob> {
        self.claims.push(request.clone());
        let in_flight = self.accounts.iter().map(|a| (a.id.clone(), self.in_flight(&a.id))).collect();
        self.claim_in_flight.push(in_flight);
        let mut claimed = Vec::new();
        let queued: Vec<JobId> =
            self.jobs.values().filter(|j| j.state == JobState::Queued).map(|j| j.id).collect::<Vec<_>>();
        for id in queued {
            if claimed.len() as u32 >= request.max_jobs {
                break;
            }
            let free =
                request.accounts.iter().find(|a| a.usable && self.in_flight(&a.account) < a.limit + request.overhang);
            let Some(account) = free.map(|a| a.account.clone()) else { break };
            let epoch = self.take_lease(id, &request.owner);
            let job = self.jobs.get_mut(&id).unwrap();
            job.state = JobState::Dispatching { account: account.clone() };
            job.lease = Some(Lease { owner: request.owner.clone(), epoch });
            claimed.push(ClaimedJob { job: job.clone(), account });
        }
        claimed
    }

    /// A new lease epoch for `job`, as a claim or a takeover starts.
    fn take_lease(&mut self, job: JobId, owner: &str) -> u64 {
        let epoch = self.epochs.entry(job).or_insert(0);
        *epoch += 1;
        let epoch = *epoch;
        if let Some(entry) = self.jobs.get_mut(&job) {
            entry.lease = Some(Lease { owner: owner.to_owned(), epoch });
        }
        epoch
    }

    /// Refuses (and records) a write whose lease is not the job's, as storage does.
    fn check_lease(&mut self, job: JobId, lease: Option<&Lease>, write: &'static str) -> Result<(), StorageError> {
        let current = self.jobs.get(&job).and_then(|j| j.lease.clone());
        match lease {
            Some(lease) if current.as_ref() != Some(lease) => {
                self.fenced.push((job, write));
                Err(StorageError::Conflict(format!("job {job} is under {current:?}, not {lease}")))
            }
            _ => Ok(()),
        }
    }

    /// Puts `job` at fal under `req-from-before` on `account` and hands it to the start-up
    /// rescue, as a process that died while following it would have left it.
    pub fn left_at_fal_by_a_dead_process(&mut self, job: JobId, account: &AccountId) {
        let request_id = RequestId::new("req-from-before");
        self.jobs.get_mut(&job).unwrap().state =
            JobState::Submitted { account: account.clone(), request_id: request_id.clone() };
        let handle = RemoteHandle {
            account: account.clone(),
            model: ModelId::new("fal-ai/nano-banana"),
            request_id,
            status_url: "s".into(),
            response_url: "r".into(),
            cancel_url: "c".into(),
        };
        let rescued = self.job(job).clone();
        self.rescue.push(Rescued::Resume(rescued, handle));
    }

    /// Hands a job to the rescue: it is taken over under a new epoch, as storage would.
    pub fn rescue_as(&mut self, owner: &str, item: Rescued) -> Rescued {
        let with_lease = |w: &mut World, job: Job| {
            w.take_lease(job.id, owner);
            Job { lease: w.jobs.get(&job.id).and_then(|j| j.lease.clone()), ..job }
        };
        match item {
            Rescued::Resume(job, handle) => Rescued::Resume(with_lease(self, job), handle),
            Rescued::SubmitUnknown(job) => Rescued::SubmitUnknown(with_lease(self, job)),
            Rescued::Redeliver(job, settlement) => Rescued::Redeliver(with_lease(self, job), settlement),
            Rescued::Requeued(job) => Rescued::Requeued(job),
        }
    }

    fn handle(&mut self, account: &AccountId, request: &GenerationRequest) -> RemoteHandle {
        let n = self.submits.len();
        let prefix = if request.kind == ModelKind::Llm { "llm" } else { "req" };
        RemoteHandle {
            account: account.clone(),
            model: request.model.clone(),
            request_id: RequestId::new(format!("{prefix}-{n}")),
            status_url: format!("https://queue.fal.run/{prefix}-{n}/status"),
            response_url: format!("https://queue.fal.run/{prefix}-{n}"),
            cancel_url: format!("https://queue.fal.run/{prefix}-{n}/cancel"),
        }
    }
}

pub fn spec(prompt: &str) -> JobSpec {
    JobSpec {
        model: ModelId::new("fal-ai/nano-banana"),
        kind: ModelKind::TextToImage,
        prompt: Prompt::parse(prompt).unwrap(),
        size: None,
        num_images: 1,
        input_media: Vec::new(),
        seed: None,
        enhance_prompt: false,
    }
}

/// The nano-banana list price of one image.
/// The token counts the mock prompt helper reports: far below the intake estimate
/// (which assumes the longest answer), so a charge at the real price differs from the hold.
pub const LLM_USAGE: mediagen_ports::TokenUsage = mediagen_ports::TokenUsage { input_tokens: 120, output_tokens: 40 };

pub fn one_image() -> Money {
    Money::from_micros(39_000)
}

fn down() -> StorageError {
    StorageError::Unavailable("connection refused".into())
}

/// The shared world and the engine wired to it.
pub struct Harness {
    pub world: Arc<Mutex<World>>,
    pub config: EngineConfig,
}

impl Harness {
    pub fn new() -> Self {
        let mut config = EngineConfig::new(Catalog::builtin(), Plans::default(), "test-owner");
        config.retry = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            jitter: 0.0,
        };
        config.breaker = BreakerConfig { failure_threshold: 5, cool_down: Duration::from_secs(60) };
        config.progress_interval = Duration::from_secs(1);
        config.status_poll = None;
        config.shutdown_grace = Duration::from_secs(5);
        // Scheduled summaries are off unless a test turns them on.
        config.insights.daily_report_at = None;
        config.insights.weekly_report_at = None;
        Self { world: Arc::new(Mutex::new(World::new())), config }
    }

    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    pub fn engine(&self) -> Engine {
        Engine::new(self.ports(), self.config.clone())
    }

    /// Starts `run`; the returned closure-like handle stops it.
    /// A fresh engine run for `secs` of paused time, then shut down: one stretch of a
    /// process's life. Returns the engine, for its counters.
    pub async fn run_for(&self, secs: u64) -> Engine {
        let engine = self.engine();
        let running = self.start(&engine);
        advance(secs).await;
        running.shutdown().await;
        engine
    }

    pub fn start(&self, engine: &Engine) -> Running {
        let (stop, signal) = watch::channel(false);
        let engine = engine.clone();
        let task = tokio::spawn(async move { engine.run(signal).await });
        Running { stop, task }
    }

    fn ports(&self) -> Ports {
        Ports {
            generation: Arc::new(self.generation()),
            messaging: Arc::new(self.messaging()),
            queue: Arc::new(self.queue()),
            users: Arc::new(self.users()),
            accounts: Arc::new(self.accounts()),
            prompt_cache: Arc::new(self.prompt_cache()),
            alerts: Arc::new(self.alert_log()),
            usage: Arc::new(self.usage()),
            reports: Arc::new(self.reports()),
            clock: Arc::new(self.clock()),
        }
    }

    fn clock(&self) -> MockClock {
        let world = Arc::clone(&self.world);
        let mut clock = MockClock::new();
        clock.expect_now().returning(move || world.lock().unwrap().now);
        clock
    }

    fn users(&self) -> MockUserStore {
        let mut users = MockUserStore::new();
        let world = Arc::clone(&self.world);
        users.expect_get_user().returning(move |id| {
            let w = world.lock().unwrap();
            if w.storage_down {
                return Err(down());
            }
            Ok(w.users.get(&id).cloned())
        });
        let world = Arc::clone(&self.world);
        users.expect_upsert_user().returning(move |new| {
            let mut w = world.lock().unwrap();
            let user = User {
                id: new.id,
                language: new.language,
                plan: new.plan.clone(),
                role: new.role,
                blocked: false,
                settings: UserSettings::default(),
            };
            w.upserted.push(new.id);
            w.users.insert(new.id, user.clone());
            Ok(user)
        });
        users
    }

    fn queue(&self) -> MockJobQueue {
        let mut queue = MockJobQueue::new();
        let world = Arc::clone(&self.world);
        queue.expect_enqueue().returning(move |request| {
            let mut w = world.lock().unwrap();
            if w.storage_down {
                return Err(down());
            }
            w.enqueues.push(request.clone());
            if let Some(answer) = w.enqueue_answer.clone() {
                return Ok(answer);
            }
            let id = JobId(w.next_job);
            w.next_job += 1;
            let job = Job {
                id,
                user: request.user,
                chat: request.chat,
                spec: request.spec.clone(),
                state: JobState::Queued,
                hold: request.hold,
                attempts: 0,
                created_at: request.now,
                updated_at: request.now,
                lease: None,
                submitted_at: None,
                helper_cost: Money::ZERO,
            };
            w.jobs.insert(id, job.clone());
            let total = w.jobs.values().filter(|j| j.state == JobState::Queued).count() as u32;
            Ok(EnqueueOutcome::Enqueued(job, QueuePosition { position: total, total }))
        });
        let world = Arc::clone(&self.world);
        queue.expect_claim().returning(move |request| Ok(world.lock().unwrap().claim(request)));
        let world = Arc::clone(&self.world);
        queue.expect_add_helper_cost().returning(move |job, lease, cost, _| {
            let mut w = world.lock().unwrap();
            w.check_lease(job, Some(lease), "add_helper_cost")?;
            let entry = w.jobs.get_mut(&job).ok_or_else(|| StorageError::NotFound(job.to_string()))?;
            entry.helper_cost = entry.helper_cost.checked_add(cost).unwrap();
            Ok(())
        });
        let world = Arc::clone(&self.world);
        queue.expect_get_job().returning(move |job| Ok(world.lock().unwrap().jobs.get(&job).cloned()));
        let world = Arc::clone(&self.world);
        queue.expect_in_flight_by_account().returning(move || {
            let w = world.lock().unwrap();
            Ok(w.accounts.iter().map(|a| (a.id.clone(), w.in_flight(&a.id))).collect())
        });
        let world = Arc::clone(&self.world);
        queue.expect_mark_submitted().returning(move |job, lease, handle, now| {
            let mut w = world.lock().unwrap();
            match w.mark_submitted_fails {
                Some("conflict") => return Err(StorageError::Conflict("canceled meanwhile".into())),
                Some(_) => return Err(down()),
                None => {}
            }
            w.check_lease(job, Some(lease), "mark_submitted")?;
            let entry = w.jobs.get_mut(&job).ok_or_else(|| StorageError::NotFound(job.to_string()))?;
            match &entry.state {
                JobState::Dispatching { account } if *account == handle.account => {
                    entry.state =
                        JobState::Submitted { account: account.clone(), request_id: handle.request_id.clone() };
                    entry.attempts += 1;
                    entry.submitted_at = Some(now);
                    w.handles.insert(job, handle.clone());
                    Ok(())
                }
                other => Err(StorageError::Conflict(format!("job is {other}"))),
            }
        });
        let world = Arc::clone(&self.world);
        queue.expect_mark_submitting().returning(move |job, lease, _now| {
            let mut w = world.lock().unwrap();
            if w.storage_down {
                return Err(down());
            }
            w.check_lease(job, Some(lease), "mark_submitting")?;
            let entry = w.jobs.get(&job).ok_or_else(|| StorageError::NotFound(job.to_string()))?;
            if !matches!(entry.state, JobState::Dispatching { .. }) {
                return Err(StorageError::Conflict(format!("job is {}", entry.state)));
            }
            w.submitting.push(job);
            Ok(())
        });
        let world = Arc::clone(&self.world);
        queue.expect_mark_delivered().returning(move |job, lease, _now| {
            let mut w = world.lock().unwrap();
            if w.delivered.contains(&job) {
                return Ok(());
            }
            w.check_lease(job, lease.as_ref(), "mark_delivered")?;
            let entry = w.jobs.get(&job).ok_or_else(|| StorageError::NotFound(job.to_string()))?;
            if !entry.state.is_terminal() {
                return Err(StorageError::Conflict(format!("job is {}", entry.state)));
            }
            w.delivered.push(job);
            if let Some(entry) = w.jobs.get_mut(&job) {
                entry.lease = None;
            }
            Ok(())
        });
        let world = Arc::clone(&self.world);
        queue.expect_mark_running().returning(move |job, lease, _| {
            let mut w = world.lock().unwrap();
            w.check_lease(job, Some(lease), "mark_running")?;
            w.marked_running.push(job);
            let entry = w.jobs.get_mut(&job).unwrap();
            if let JobState::Submitted { account, request_id } = &entry.state {
                entry.state = JobState::Running { account: account.clone(), request_id: request_id.clone() };
            }
            Ok(())
        });
        let world = Arc::clone(&self.world);
        queue.expect_requeue().returning(move |job, lease, reason, not_before, _now| {
            let mut w = world.lock().unwrap();
            w.check_lease(job, Some(lease), "requeue")?;
            w.requeues.push((job, reason.to_owned(), not_before));
            let entry = w.jobs.get_mut(&job).unwrap();
            if !entry.state.is_in_flight() {
                return Err(StorageError::Conflict(format!("job is {}", entry.state)));
            }
            entry.state = JobState::Queued;
            entry.lease = None;
            entry.submitted_at = None;
            Ok(entry.clone())
        });
        let world = Arc::clone(&self.world);
        queue.expect_finish().returning(move |job, finish| {
            let mut w = world.lock().unwrap();
            if finish.lease.is_none() && finish.state != JobState::Canceled {
                return Err(StorageError::Conflict(format!("job {job}: only a cancel finishes without a lease")));
            }
            w.check_lease(job, finish.lease.as_ref(), "finish")?;
            let already = w.already_finished;
            let entry = w.jobs.get_mut(&job).ok_or_else(|| StorageError::NotFound(job.to_string()))?;
            if already || entry.state.is_terminal() {
                return Ok(FinishOutcome::AlreadyFinished(entry.clone()));
            }
            entry.state = finish.state.clone();
            let done = entry.clone();
            w.finishes.push((job, finish.clone()));
            Ok(FinishOutcome::Finished(done))
        });
        let world = Arc::clone(&self.world);
        queue.expect_cancel().returning(move |job, user, _now| {
            let mut w = world.lock().unwrap();
            let handle = w.handles.get(&job).cloned();
            let entry = w
                .jobs
                .get_mut(&job)
                .filter(|j| j.user == user)
                .ok_or_else(|| StorageError::NotFound(job.to_string()))?;
            Ok(match entry.state.clone() {
                JobState::Queued => {
                    entry.state = JobState::Canceled;
                    CancelResult::Canceled(entry.clone())
                }
                state if state.is_terminal() => CancelResult::AlreadyFinished(entry.clone()),
                _ => CancelResult::InFlight(entry.clone(), handle),
            })
        });
        let world = Arc::clone(&self.world);
        queue.expect_renew_leases().returning(move |held, _| {
            let mut w = world.lock().unwrap();
            w.renewals += 1;
            w.renewed.push(held.to_vec());
            let current =
                held.iter().filter(|(job, lease)| w.jobs.get(job).and_then(|j| j.lease.as_ref()) == Some(lease));
            Ok(current.count() as u64)
        });
        let world = Arc::clone(&self.world);
        queue.expect_rescue_expired().returning(move |owner, _, _| {
            let mut w = world.lock().unwrap();
            let items = std::mem::take(&mut w.rescue);
            Ok(items.into_iter().map(|item| w.rescue_as(owner, item)).collect())
        });
        queue.expect_wait_for_change().returning(|_| Ok(false));
        queue
    }

    fn accounts(&self) -> MockAccountStore {
        let mut accounts = MockAccountStore::new();
        let world = Arc::clone(&self.world);
        accounts.expect_list_accounts().returning(move || Ok(world.lock().unwrap().accounts.clone()));
        let world = Arc::clone(&self.world);
        accounts
            .expect_purchases()
            .returning(move |id| Ok(world.lock().unwrap().purchases.get(id).cloned().unwrap_or_default()));
        let world = Arc::clone(&self.world);
        accounts.expect_spends().returning(move |id| {
            let w = world.lock().unwrap();
            Ok(w.spend.get(id).map(|amount| vec![CreditSpend { amount: *amount, spent_at: w.now }]).unwrap_or_default())
        });
        let world = Arc::clone(&self.world);
        accounts.expect_set_lock().returning(move |id, lock| {
            let mut w = world.lock().unwrap();
            w.set_locks.push((id.clone(), lock.clone()));
            if let Some(account) = w.accounts.iter_mut().find(|a| a.id == *id) {
                account.locked = lock;
            }
            Ok(())
        });
        let world = Arc::clone(&self.world);
        accounts.expect_set_admin_state().returning(move |id, disabled, _| {
            let mut w = world.lock().unwrap();
            w.disabled.push(id.clone());
            if let Some(account) = w.accounts.iter_mut().find(|a| a.id == *id) {
                account.disabled = disabled;
            }
            Ok(())
        });
        accounts
    }

    fn generation(&self) -> MockGeneration {
        let mut generation = MockGeneration::new();
        let world = Arc::clone(&self.world);
        generation.expect_upload().returning(move |account, media| {
            let mut w = world.lock().unwrap();
            w.uploads.push((account.clone(), media.bytes.len()));
            Ok(format!("https://v3.fal.media/files/upload-{}.png", w.uploads.len()))
        });
        let world = Arc::clone(&self.world);
        generation.expect_submit().returning(move |account, request| {
            let mut w = world.lock().unwrap();
            let answer = if request.kind == ModelKind::Llm {
                w.llm_calls += 1;
                w.llm_answer.clone()
            } else {
                w.submit_answers.pop_front().unwrap_or(Answer::Ok)
            };
            let handle = w.handle(account, request);
            w.submits.push((account.clone(), request.clone()));
            if matches!(answer, Answer::BadKey) {
                // As the adapter does: every key of the account is set aside.
                let now = w.now;
                w.keys.iter_mut().filter(|k| k.account == *account).for_each(|k| k.refused_since = Some(now));
            }
            match answer {
                Answer::Ok => Ok(handle),
                other => Err(other.error(account)),
            }
        });
        let world = Arc::clone(&self.world);
        generation.expect_status().returning(move |_| {
            let mut w = world.lock().unwrap();
            let otherwise =
                if w.stuck_in_queue { RemoteStatus::InQueue { position: Some(0) } } else { RemoteStatus::InProgress };
            Ok(w.status_answers.pop_front().unwrap_or(otherwise))
        });
        let world = Arc::clone(&self.world);
        generation.expect_wait().returning(move |handle, deadline| {
            let mut w = world.lock().unwrap();
            w.wait_deadlines.push(deadline);
            if handle.request_id.as_str().starts_with("llm") {
                return Ok(GenerationOutput {
                    text: Some("A red fox in fresh snow, golden hour, shallow depth of field".into()),
                    usage: Some(LLM_USAGE),
                    ..GenerationOutput::default()
                });
            }
            w.waits.push(handle.clone());
            match w.wait_answers.pop_front().unwrap_or(Answer::Ok) {
                Answer::Ok => Ok(GenerationOutput {
                    media: (0..w.outputs)
                        .map(|i| OutputMedia {
                            url: format!("https://v3.fal.media/files/{}-{i}.png", handle.request_id),
                            content_type: Some("image/png".into()),
                            width: Some(1024),
                            height: Some(1024),
                            file_size: Some(4),
                        })
                        .collect(),
                    ..GenerationOutput::default()
                }),
                other => Err(other.error(&handle.account)),
            }
        });
        let world = Arc::clone(&self.world);
        generation.expect_cancel().returning(move |handle| {
            let mut w = world.lock().unwrap();
            w.remote_cancels.push(handle.clone());
            Ok(w.remote_cancel_answer)
        });
        let world = Arc::clone(&self.world);
        generation.expect_key_statuses().returning(move || world.lock().unwrap().keys.clone());
        generation.expect_probe_refused_keys().returning(Vec::new);
        let world = Arc::clone(&self.world);
        generation.expect_enable_key().returning(move |account, key| {
            let mut w = world.lock().unwrap();
            let Some(found) = w.keys.iter_mut().find(|k| k.account == *account && k.key == key) else { return false };
            found.refused_since = None;
            w.enabled_keys.push((account.clone(), key.to_owned()));
            true
        });
        let world = Arc::clone(&self.world);
        generation.expect_download().returning(move |media| {
            if world.lock().unwrap().download_fails {
                return Err(GenerationError::Retryable("connection reset by the CDN".into()));
            }
            Ok(MediaBytes { bytes: vec![1, 2, 3, 4], content_type: "image/png".into(), file_name: media.url.clone() })
        });
        generation
    }

    fn messaging(&self) -> MockMessaging {
        let mut messaging = MockMessaging::new();
        let world = Arc::clone(&self.world);
        messaging.expect_send_notice().returning(move |to, notice| {
            let mut w = world.lock().unwrap();
            w.notices.push((to, notice.clone()));
            w.next_message += 1;
            Ok(MessageRef { chat: to.chat, message_id: w.next_message })
        });
        let world = Arc::clone(&self.world);
        messaging.expect_edit_notice().returning(move |message, _, notice| {
            world.lock().unwrap().edits.push((message.clone(), notice.clone()));
            Ok(())
        });
        let world = Arc::clone(&self.world);
        messaging.expect_send_results().returning(move |to, job, media, as_file| {
            let mut w = world.lock().unwrap();
            w.results.push((to, job, media.len(), as_file));
            let delivered = (0..media.len())
                .map(|i| DeliveredMedia {
                    message: MessageRef { chat: to.chat, message_id: 500 + i as i64 },
                    file_id: format!("tg-file-{job}-{i}"),
                })
                .collect();
            Ok(delivered)
        });
        let world = Arc::clone(&self.world);
        messaging.expect_notify_operators().returning(move |alert| {
            world.lock().unwrap().operator_alerts.push(alert.clone());
            Ok(())
        });
        let world = Arc::clone(&self.world);
        messaging.expect_notify_operators_summary().returning(move |summary| {
            world.lock().unwrap().operator_summaries.push(summary.clone());
            Ok(())
        });
        let world = Arc::clone(&self.world);
        messaging.expect_fetch_input().returning(move |media, _max| {
            world.lock().unwrap().fetched.push(media.clone());
            Ok(MediaBytes { bytes: vec![7; 16], content_type: "image/jpeg".into(), file_name: "input.jpg".into() })
        });
        messaging
    }

    fn prompt_cache(&self) -> MockPromptCache {
        let mut cache = MockPromptCache::new();
        let world = Arc::clone(&self.world);
        cache.expect_cache_get().returning(move |key, now| {
            let w = world.lock().unwrap();
            Ok(w.cache.get(key).filter(|(_, expires)| *expires > now).map(|(value, _)| value.clone()))
        });
        let world = Arc::clone(&self.world);
        cache.expect_cache_put().returning(move |key, value, expires_at| {
            world.lock().unwrap().cache.insert(key.to_owned(), (value.to_owned(), expires_at));
            Ok(())
        });
        cache
    }

    fn alert_log(&self) -> MockAlertLog {
        let mut log = MockAlertLog::new();
        let world = Arc::clone(&self.world);
        log.expect_record_alert().returning(move |key, period, _| {
            Ok(world.lock().unwrap().alert_log.insert((key.to_owned(), period.to_owned())))
        });
        log
    }

    fn reports(&self) -> MockReportStore {
        let mut reports = MockReportStore::new();
        let world = Arc::clone(&self.world);
        reports.expect_usage_rows().returning(move |from, to| {
            let midnight = |d: chrono::NaiveDate| d.and_hms_opt(0, 0, 0).unwrap().and_utc();
            let w = world.lock().unwrap();
            Ok(w.usage_rows
                .iter()
                .filter(|r| midnight(r.day) >= midnight(from.date_naive()) && midnight(r.day) < to)
                .cloned()
                .collect())
        });
        let world = Arc::clone(&self.world);
        reports.expect_requests_by_day().returning(move |from, to| {
            let w = world.lock().unwrap();
            Ok(w.requests_by_day
                .iter()
                .filter(|d| d.day >= from.date_naive() && d.day.and_hms_opt(0, 0, 0).unwrap().and_utc() < to)
                .copied()
                .collect())
        });
        let world = Arc::clone(&self.world);
        reports.expect_job_counts().returning(move || {
            let w = world.lock().unwrap();
            let mut counts = JobCounts::default();
            for job in w.jobs.values() {
                match job.state.name() {
                    "queued" => counts.queued += 1,
                    "dispatching" => counts.dispatching += 1,
                    "submitted" => counts.submitted += 1,
                    "running" => counts.running += 1,
                    "succeeded" => counts.succeeded += 1,
                    "failed" => counts.failed += 1,
                    _ => counts.canceled += 1,
                }
            }
            Ok(counts)
        });
        let world = Arc::clone(&self.world);
        reports.expect_job_timings().returning(move |from, to| {
            let w = world.lock().unwrap();
            Ok(w.timings
                .iter()
                .filter(|t| t.enqueued_at < to && t.finished_at.is_none_or(|f| f > from))
                .cloned()
                .collect())
        });
        let world = Arc::clone(&self.world);
        reports.expect_slot_intervals().returning(move |from, to| {
            let w = world.lock().unwrap();
            Ok(w.slot_history
                .iter()
                .filter(|s| s.claimed_at < to && s.released_at.is_none_or(|r| r > from))
                .cloned()
                .collect())
        });
        reports
    }

    fn usage(&self) -> MockUsageStore {
        let mut usage = MockUsageStore::new();
        let world = Arc::clone(&self.world);
        usage.expect_save_media().returning(move |record| {
            world.lock().unwrap().saved_media.push(record.clone());
            Ok(())
        });
        let world = Arc::clone(&self.world);
        usage.expect_media_for_job().returning(move |job| {
            Ok(world.lock().unwrap().saved_media.iter().filter(|r| r.job == job).cloned().collect())
        });
        let world = Arc::clone(&self.world);
        usage.expect_usage_by_model().returning(move |_, _| {
            let w = world.lock().unwrap();
            Ok(vec![ModelUsage {
                model: ModelId::new("fal-ai/nano-banana"),
                succeeded: 10,
                failed: 0,
                user_charged: w.fal_cost_this_month,
                fal_cost: w.fal_cost_this_month,
            }])
        });
        let world = Arc::clone(&self.world);
        usage.expect_request_count().returning(move |_, _| Ok(world.lock().unwrap().requests_this_month));
        usage
    }
}

/// A running engine and the switch that stops it.
pub struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Raises the shutdown signal and waits for `run` to return.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        self.task.await.unwrap();
    }
}

/// Lets paused time run for `secs` seconds (every timer due in that span fires).
pub async fn advance(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

/// An intake request for `prompt` by `user`.
pub fn request(user: i64, prompt: &str) -> mediagen_engine::IntakeRequest {
    mediagen_engine::IntakeRequest {
        key: IdempotencyKey::new(format!("tg:{user}:{prompt}")),
        user: UserId(user),
        chat: ChatId(user),
        language: Language::En,
        model: None,
        prompt: prompt.into(),
        size: None,
        num_images: 1,
        input_media: Vec::new(),
        seed: None,
        enhance: Some(false),
    }
}
