//! The engine's world in a test: the in-memory storage adapter behind every storage port,
//! mockall mocks of fal, the messenger and the clock, and one shared state the mocks read
//! and write, so a test sets the scene, runs a use case and inspects what happened.
//!
//! Storage is `mediagen_memory::MemoryStore`, which the storage contract holds to the SQL
//! adapters' semantics. The engine reaches it through [`Storage`], a thin decorator that
//! records what the engine asked of storage and injects the faults a test switches on.
//! While a test holds the world ([`Harness::world`]) the stored rows are mirrored as
//! plain values (`users`, `jobs`, `accounts`, …) a test may read and edit; when it lets
//! go, its edits are written back, through the ports where a port can make them and as
//! fixtures of the memory store where none can (a job put at fal by hand, say).

use chrono::{TimeDelta, TimeZone, Utc};
use mediagen_domain::catalog::Catalog;
use mediagen_domain::credit::{CreditPurchase, CreditSpend};
use mediagen_domain::insights::OperatorSummary;
use mediagen_domain::quota::{Plan, Plans, UserUsage};
use mediagen_domain::{
    AccountId, ChatId, IdempotencyKey, Job, JobId, JobSpec, Language, Lease, MediaRef, ModelId, ModelKind, Money,
    Prompt, RequestId, Role, Timestamp, User, UserId, UserSettings,
};
use mediagen_engine::{BreakerConfig, Engine, EngineConfig, Ports, RetryPolicy};
use mediagen_memory::MemoryStore;
use mediagen_ports::{
    AccountLock, AccountRecord, AccountStore, AlertLog, CancelOutcome, CancelResult, ClaimRequest, ClaimedJob,
    DeliveredMedia, EnqueueOutcome, EnqueueRequest, Finish, FinishOutcome, GenerationError, GenerationOutput,
    GenerationRequest, JobQueue, KeyStatus, MediaBytes, MediaRecord, MessageRef, MockClock, MockGeneration,
    MockMessaging, ModelUsage, NewUser, OperatorAlert, OutputMedia, PromptCache, QueuePosition, Recipient,
    RemoteHandle, RemoteStatus, Rescued, StorageError, UsageStore, UserNotice, UserSpend, UserStore,
};
use mediagen_ports::{DayCount, JobCounts, JobTiming, ReportStore, SlotInterval, UsageRow};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
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

/// Everything storage holds (mirrored while a test holds the world), what the engine asked
/// of every port, and the answers and faults a test scripts.
pub struct World {
    /// The scene's start. The engine's clock reads it plus the paused time elapsed since the
    /// harness was made, so back-offs and leases run out as tokio time advances.
    pub now: Timestamp,
    /// Every storage port answers `Unavailable`: the database is down.
    pub storage_down: bool,
    // The stored rows, as plain values while a test holds the world.
    pub users: HashMap<UserId, User>,
    pub jobs: BTreeMap<JobId, Job>,
    /// fal's handle of each job that has one (stored with the job).
    pub handles: HashMap<JobId, RemoteHandle>,
    /// By id.
    pub accounts: Vec<AccountRecord>,
    pub purchases: HashMap<AccountId, Vec<CreditPurchase>>,
    /// Every media record, in the order first saved.
    pub saved_media: Vec<MediaRecord>,
    pub cache: HashMap<String, (String, Timestamp)>,
    pub alert_log: HashSet<(String, String)>,
    /// Jobs a process that died left for the rescue: when the world is let go, each is
    /// stored as given (a `Redeliver` with its settlement) under a lease of the dead
    /// process that has run out, so the engine's `rescue_expired` takes it over.
    pub rescue: Vec<Rescued>,
    // What the engine asked of storage.
    pub upserted: Vec<UserId>,
    pub enqueues: Vec<EnqueueRequest>,
    pub claims: Vec<ClaimRequest>,
    /// Jobs in flight per account (every stored account) when each claim came in.
    pub claim_in_flight: Vec<HashMap<AccountId, u32>>,
    /// Requeues storage took: the job, the reason, and the back-off the engine asked for
    /// (`not_before` minus the requeue's instant; `None` for "at once").
    pub requeues: Vec<(JobId, String, Option<chrono::TimeDelta>)>,
    /// Finishes storage took (an `AlreadyFinished` is not one).
    pub finishes: Vec<(JobId, Finish)>,
    /// Jobs storage recorded as running, once per call it took.
    pub marked_running: Vec<JobId>,
    pub renewals: u32,
    /// What each lease renewal listed (the leases of live tasks).
    pub renewed: Vec<Vec<(JobId, Lease)>>,
    /// Jobs whose submit was recorded as started (`mark_submitting`), in order.
    pub submitting: Vec<JobId>,
    /// Jobs recorded as delivered (`mark_delivered`), in order, once each.
    pub delivered: Vec<JobId>,
    pub set_locks: Vec<(AccountId, Option<AccountLock>)>,
    /// Accounts whose admin state was set.
    pub disabled: Vec<AccountId>,
    // Faults of storage.
    /// Replaces the enqueue's answer; nothing is stored.
    pub enqueue_answer: Option<EnqueueOutcome>,
    /// Every finish answers `AlreadyFinished` (a redelivered completion); nothing is stored.
    pub already_finished: bool,
    /// `mark_submitted` answers this instead of recording: "conflict" or "down".
    pub mark_submitted_fails: Option<&'static str>,
    // Figures storage aggregates, scripted: when set (non-zero, non-empty), the port
    // answers these instead of adding up the stored history, so a test pins exact numbers.
    /// `spends` of an account: this much, spent now.
    pub spend: HashMap<AccountId, Money>,
    /// `usage_by_model`: one row of this fal cost (and charge).
    pub fal_cost_this_month: Money,
    /// `request_count`.
    pub requests_this_month: u64,
    /// `usage_rows`, `requests_by_day`, `job_timings` and `slot_intervals`, filtered by
    /// the period asked.
    pub usage_rows: Vec<UsageRow>,
    pub requests_by_day: Vec<DayCount>,
    pub timings: Vec<JobTiming>,
    pub slot_history: Vec<SlotInterval>,
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
    /// Scheduled summaries sent to the operators, as data.
    pub operator_summaries: Vec<OperatorSummary>,
    // The storage behind the mirrors.
    store: MemoryStore,
    /// Tokio's instant at `now`.
    started: tokio::time::Instant,
    /// The rows as last read, to write back only what a test changed.
    loaded: Rows,
    /// Jobs put in the queue by scenes (their enqueue keys).
    scene_jobs: u64,
}

/// The lease owner of a process that died.
const DEAD_PROCESS: &str = "a-process-that-died";

/// Completes a call of the memory store at once: it never waits (only `wait_for_change`
/// does, which scenes do not call), so scenes set in plain blocks need no `.await`.
fn ready<T>(call: impl Future<Output = T>) -> T {
    let mut call = std::pin::pin!(call);
    match call.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("the in-memory store waited"),
    }
}

/// The stored rows a test may read and edit, as plain values.
#[derive(Default)]
struct Rows {
    users: HashMap<UserId, User>,
    jobs: BTreeMap<JobId, Job>,
    handles: HashMap<JobId, RemoteHandle>,
    accounts: Vec<AccountRecord>,
    purchases: HashMap<AccountId, Vec<CreditPurchase>>,
    saved_media: Vec<MediaRecord>,
    cache: HashMap<String, (String, Timestamp)>,
    alert_log: HashSet<(String, String)>,
}

impl Rows {
    fn load(store: &MemoryStore) -> Self {
        let users = ready(store.list_users()).unwrap().into_iter().map(|u| (u.id, u)).collect();
        let accounts = ready(store.list_accounts()).unwrap();
        let mut purchases = HashMap::new();
        for account in &accounts {
            let bought = ready(store.purchases(&account.id)).unwrap();
            if !bought.is_empty() {
                purchases.insert(account.id.clone(), bought);
            }
        }
        let stored = store.stored_jobs();
        Rows {
            users,
            jobs: stored.iter().map(|s| (s.id(), s.job.clone())).collect(),
            handles: stored.iter().filter_map(|s| Some((s.id(), s.handle.clone()?))).collect(),
            accounts,
            purchases,
            saved_media: store.media(),
            cache: store.cache_entries().into_iter().map(|(key, value, at)| (key, (value, at))).collect(),
            alert_log: store.alerts().into_iter().collect(),
        }
    }
}

impl World {
    fn new(store: MemoryStore) -> Self {
        Self {
            now: Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap(),
            storage_down: false,
            users: HashMap::new(),
            jobs: BTreeMap::new(),
            handles: HashMap::new(),
            accounts: Vec::new(),
            purchases: HashMap::new(),
            saved_media: Vec::new(),
            cache: HashMap::new(),
            alert_log: HashSet::new(),
            rescue: Vec::new(),
            upserted: Vec::new(),
            enqueues: Vec::new(),
            claims: Vec::new(),
            claim_in_flight: Vec::new(),
            requeues: Vec::new(),
            finishes: Vec::new(),
            marked_running: Vec::new(),
            renewals: 0,
            renewed: Vec::new(),
            submitting: Vec::new(),
            delivered: Vec::new(),
            set_locks: Vec::new(),
            disabled: Vec::new(),
            enqueue_answer: None,
            already_finished: false,
            mark_submitted_fails: None,
            spend: HashMap::new(),
            fal_cost_this_month: Money::ZERO,
            requests_this_month: 0,
            usage_rows: Vec::new(),
            requests_by_day: Vec::new(),
            timings: Vec::new(),
            slot_history: Vec::new(),
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
            operator_summaries: Vec::new(),
            store,
            started: tokio::time::Instant::now(),
            loaded: Rows::default(),
            scene_jobs: 0,
        }
    }

    /// What the engine's clock reads: the scene's start plus the paused time since.
    pub fn clock(&self) -> Timestamp {
        let elapsed = tokio::time::Instant::now() - self.started;
        self.now + TimeDelta::from_std(elapsed).unwrap()
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

    /// Puts a queued job of `user` (stored first if new) in the queue with a hold of
    /// `hold`, through the enqueue port (quotas aside).
    pub fn queued_job(&mut self, user: i64, hold: Money) -> JobId {
        if !self.users.contains_key(&UserId(user)) {
            self.user(user);
        }
        self.write_back();
        self.scene_jobs += 1;
        let roomy =
            Plan { name: "scene".into(), daily_jobs: None, monthly_spend: None, max_in_flight: 100, max_queued: 100 };
        let request = EnqueueRequest {
            key: IdempotencyKey::new(format!("scene:{}", self.scene_jobs)),
            user: UserId(user),
            chat: ChatId(user),
            spec: spec("a red fox in the snow"),
            hold,
            plan: roomy,
            role: Role::Admin,
            now: self.clock(),
        };
        let id = match ready(self.store.enqueue(&request)).unwrap() {
            EnqueueOutcome::Enqueued(job, _) => job.id,
            other => panic!("a scene's job was not queued: {other:?}"),
        };
        self.reload();
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

    /// fal's handle for the next submission of `request` on `account`.
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

    /// Puts `job` at fal under `req-from-before` on `account` and leaves it to the start-up
    /// rescue, as a process that died while following it would have.
    pub fn left_at_fal_by_a_dead_process(&mut self, job: JobId, account: &AccountId) {
        let request_id = RequestId::new("req-from-before");
        self.jobs.get_mut(&job).unwrap().state =
            mediagen_domain::JobState::Submitted { account: account.clone(), request_id: request_id.clone() };
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

    /// Reads the stored rows into the mirrors.
    fn reload(&mut self) {
        let rows = Rows::load(&self.store);
        self.users = rows.users.clone();
        self.jobs = rows.jobs.clone();
        self.handles = rows.handles.clone();
        self.accounts = rows.accounts.clone();
        self.purchases = rows.purchases.clone();
        self.saved_media = rows.saved_media.clone();
        self.cache = rows.cache.clone();
        self.alert_log = rows.alert_log.clone();
        self.loaded = rows;
    }

    /// Writes what the test changed in the mirrors into storage, then reads it back.
    fn write_back(&mut self) {
        let now = self.clock();
        let store = self.store.clone();
        let loaded = std::mem::take(&mut self.loaded);
        for (id, user) in &self.users {
            match loaded.users.get(id) {
                Some(old) if old == user => {}
                old => {
                    if old.is_none() {
                        let new =
                            NewUser { id: *id, language: user.language, plan: user.plan.clone(), role: user.role };
                        ready(store.upsert_user(&new)).unwrap();
                    }
                    ready(store.update_user(user)).unwrap();
                }
            }
        }
        assert!(loaded.users.keys().all(|id| self.users.contains_key(id)), "a scene cannot remove users");
        for account in &self.accounts {
            let old = loaded.accounts.iter().find(|a| a.id == account.id);
            if old == Some(account) {
                continue;
            }
            if old.is_none_or(|old| old.key_names != account.key_names) {
                ready(store.upsert_account(&account.id, &account.key_names)).unwrap();
            }
            if old.and_then(|old| old.locked.clone()) != account.locked {
                ready(store.set_lock(&account.id, account.locked.clone())).unwrap();
            }
            if old.is_none_or(|old| (old.disabled, old.limit_override) != (account.disabled, account.limit_override)) {
                ready(store.set_admin_state(&account.id, account.disabled, account.limit_override)).unwrap();
            }
            let retired = old.and_then(|old| old.retired_since);
            assert_eq!(account.retired_since, retired, "accounts retire through `retire_unlisted`");
        }
        for (id, bought) in &self.purchases {
            let mut known = loaded.purchases.get(id).cloned().unwrap_or_default();
            for purchase in bought {
                match known.iter().position(|p| p == purchase) {
                    Some(at) => drop(known.remove(at)),
                    None => ready(store.add_purchase(id, purchase)).unwrap(),
                }
            }
            assert!(known.is_empty(), "a scene cannot remove purchases");
        }
        for (id, job) in &self.jobs {
            let handle = self.handles.get(id);
            if loaded.jobs.get(id) == Some(job) && loaded.handles.get(id) == handle {
                continue;
            }
            // A job edited by hand (put in flight, at fal, finished) as a fixture.
            let mut stored = store.stored_job(*id).unwrap_or_else(|| panic!("job {id} was never queued"));
            if let Some(account) = job.state.account() {
                stored.account = Some(account.clone());
            }
            if job.state.is_terminal() && stored.finished_at.is_none() {
                stored.finished_at = Some(now);
                stored.delivered_at = job.lease.is_none().then_some(now);
            }
            stored.job = job.clone();
            stored.handle = handle.cloned();
            store.put_job(stored);
        }
        for record in self.saved_media.iter().filter(|r| !loaded.saved_media.contains(r)) {
            ready(store.save_media(record)).unwrap();
        }
        for (key, entry) in self.cache.iter().filter(|(key, entry)| loaded.cache.get(*key) != Some(entry)) {
            ready(store.cache_put(key, &entry.0, entry.1)).unwrap();
        }
        for (key, period) in self.alert_log.iter().filter(|k| !loaded.alert_log.contains(*k)) {
            ready(store.record_alert(key, period, now)).unwrap();
        }
        for item in std::mem::take(&mut self.rescue) {
            left_for_rescue(&store, item, now);
        }
        self.reload();
    }
}

/// Stores a job as a process that died left it: under its lease, which ran out at `now`.
fn left_for_rescue(store: &MemoryStore, item: Rescued, now: Timestamp) {
    let (job, handle, settlement, submit_started) = match item {
        Rescued::Resume(job, handle) => (job, Some(handle), None, false),
        Rescued::SubmitUnknown(job) => (job, None, None, true),
        Rescued::Redeliver(job, settlement) => (job, None, Some(settlement), false),
        Rescued::Requeued(job) => (job, None, None, false),
    };
    let mut stored = store.stored_job(job.id).unwrap_or_else(|| panic!("job {} was never queued", job.id));
    stored.epoch += 1;
    stored.job = Job { lease: Some(Lease { owner: DEAD_PROCESS.into(), epoch: stored.epoch }), ..job };
    stored.lease_until = Some(now);
    if let Some(account) = stored.job.state.account() {
        stored.account = Some(account.clone());
    }
    if let Some(handle) = handle {
        stored.account = Some(handle.account.clone());
        stored.handle = Some(handle);
    }
    stored.submit_started_at = submit_started.then_some(now);
    if stored.job.state.is_terminal() {
        stored.finished_at.get_or_insert(now);
        stored.delivered_at = None;
    }
    let id = stored.id();
    store.put_job(stored);
    if let Some(settlement) = settlement {
        store.put_settlement(id, settlement, now);
    }
}

/// The world while a test holds it: the stored rows are read in when it is taken and the
/// test's edits written back when it is let go.
pub struct WorldGuard<'a>(MutexGuard<'a, World>);

impl Deref for WorldGuard<'_> {
    type Target = World;
    fn deref(&self) -> &World {
        &self.0
    }
}

impl DerefMut for WorldGuard<'_> {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.0
    }
}

impl Drop for WorldGuard<'_> {
    fn drop(&mut self) {
        // A failed assertion is reported as it is, not as a second panic while writing.
        if !std::thread::panicking() {
            self.0.write_back();
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

/// The token counts the mock prompt helper reports: far below the intake estimate
/// (which assumes the longest answer), so a charge at the real price differs from the hold.
pub const LLM_USAGE: mediagen_ports::TokenUsage = mediagen_ports::TokenUsage { input_tokens: 120, output_tokens: 40 };

/// The nano-banana list price of one image.
pub fn one_image() -> Money {
    Money::from_micros(39_000)
}

/// The storage the engine sees: the memory store, with what the engine asked recorded in
/// the world and the faults the world switches on injected before the store is reached.
#[derive(Clone)]
struct Storage {
    store: MemoryStore,
    world: Arc<Mutex<World>>,
}

fn down() -> StorageError {
    StorageError::Unavailable("connection refused".into())
}

impl Storage {
    /// The world as the ports see it (no mirrors read or written).
    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    /// `Unavailable` while the database is down.
    fn up(&self) -> Result<(), StorageError> {
        if self.world().storage_down { Err(down()) } else { Ok(()) }
    }
}

#[async_trait::async_trait]
impl UserStore for Storage {
    async fn upsert_user(&self, new: &NewUser) -> Result<User, StorageError> {
        self.up()?;
        self.world().upserted.push(new.id);
        self.store.upsert_user(new).await
    }

    async fn get_user(&self, id: UserId) -> Result<Option<User>, StorageError> {
        self.up()?;
        self.store.get_user(id).await
    }

    async fn update_user(&self, user: &User) -> Result<(), StorageError> {
        self.up()?;
        self.store.update_user(user).await
    }

    async fn list_users(&self) -> Result<Vec<User>, StorageError> {
        self.up()?;
        self.store.list_users().await
    }
}

#[async_trait::async_trait]
impl JobQueue for Storage {
    async fn enqueue(&self, request: &EnqueueRequest) -> Result<EnqueueOutcome, StorageError> {
        self.up()?;
        let answer = {
            let mut w = self.world();
            w.enqueues.push(request.clone());
            w.enqueue_answer.clone()
        };
        match answer {
            Some(answer) => Ok(answer),
            None => self.store.enqueue(request).await,
        }
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedJob>, StorageError> {
        self.up()?;
        let in_flight: HashMap<AccountId, u32> = self.store.in_flight_by_account().await?.into_iter().collect();
        let accounts = self.store.list_accounts().await?;
        {
            let mut w = self.world();
            w.claims.push(request.clone());
            let counts = accounts.into_iter().map(|a| (a.id.clone(), in_flight.get(&a.id).copied().unwrap_or(0)));
            w.claim_in_flight.push(counts.collect());
        }
        self.store.claim(request).await
    }

    async fn mark_submitted(
        &self,
        job: JobId,
        lease: &Lease,
        handle: &RemoteHandle,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        self.up()?;
        match self.world().mark_submitted_fails {
            Some("conflict") => return Err(StorageError::Conflict("canceled meanwhile".into())),
            Some(_) => return Err(down()),
            None => {}
        }
        self.store.mark_submitted(job, lease, handle, now).await
    }

    async fn mark_submitting(&self, job: JobId, lease: &Lease, now: Timestamp) -> Result<(), StorageError> {
        self.up()?;
        self.store.mark_submitting(job, lease, now).await?;
        self.world().submitting.push(job);
        Ok(())
    }

    async fn add_helper_cost(
        &self,
        job: JobId,
        lease: &Lease,
        cost: Money,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        self.up()?;
        self.store.add_helper_cost(job, lease, cost, now).await
    }

    async fn mark_running(&self, job: JobId, lease: &Lease, now: Timestamp) -> Result<(), StorageError> {
        self.up()?;
        self.store.mark_running(job, lease, now).await?;
        self.world().marked_running.push(job);
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
        self.up()?;
        let requeued = self.store.requeue(job, lease, reason, not_before, now).await?;
        let mut w = self.world();
        w.requeues.push((job, reason.to_owned(), not_before.map(|at| at - now)));
        Ok(requeued)
    }

    async fn finish(&self, job: JobId, finish: &Finish) -> Result<FinishOutcome, StorageError> {
        self.up()?;
        if self.world().already_finished {
            let stored = self.store.get_job(job).await?;
            return Ok(FinishOutcome::AlreadyFinished(stored.ok_or_else(|| StorageError::NotFound(job.to_string()))?));
        }
        let outcome = self.store.finish(job, finish).await?;
        if matches!(outcome, FinishOutcome::Finished(_)) {
            self.world().finishes.push((job, finish.clone()));
        }
        Ok(outcome)
    }

    async fn mark_delivered(&self, job: JobId, lease: Option<Lease>, now: Timestamp) -> Result<(), StorageError> {
        self.up()?;
        self.store.mark_delivered(job, lease, now).await?;
        let mut w = self.world();
        if !w.delivered.contains(&job) {
            w.delivered.push(job);
        }
        Ok(())
    }

    async fn cancel(&self, job: JobId, user: UserId, now: Timestamp) -> Result<CancelResult, StorageError> {
        self.up()?;
        self.store.cancel(job, user, now).await
    }

    async fn renew_leases(&self, held: &[(JobId, Lease)], until: Timestamp) -> Result<u64, StorageError> {
        self.up()?;
        {
            let mut w = self.world();
            w.renewals += 1;
            w.renewed.push(held.to_vec());
        }
        self.store.renew_leases(held, until).await
    }

    async fn rescue_expired(
        &self,
        new_owner: &str,
        lease_until: Timestamp,
        now: Timestamp,
    ) -> Result<Vec<Rescued>, StorageError> {
        self.up()?;
        self.store.rescue_expired(new_owner, lease_until, now).await
    }

    async fn queue_position(&self, job: JobId) -> Result<Option<QueuePosition>, StorageError> {
        self.up()?;
        self.store.queue_position(job).await
    }

    async fn get_job(&self, job: JobId) -> Result<Option<Job>, StorageError> {
        self.up()?;
        self.store.get_job(job).await
    }

    async fn remote_handle(&self, job: JobId) -> Result<Option<RemoteHandle>, StorageError> {
        self.up()?;
        self.store.remote_handle(job).await
    }

    async fn recent_jobs(&self, user: UserId, limit: u32) -> Result<Vec<Job>, StorageError> {
        self.up()?;
        self.store.recent_jobs(user, limit).await
    }

    async fn user_usage(&self, user: UserId, now: Timestamp) -> Result<UserUsage, StorageError> {
        self.up()?;
        self.store.user_usage(user, now).await
    }

    async fn in_flight_by_account(&self) -> Result<Vec<(AccountId, u32)>, StorageError> {
        self.up()?;
        self.store.in_flight_by_account().await
    }

    async fn queued_count(&self) -> Result<u32, StorageError> {
        self.up()?;
        self.store.queued_count().await
    }

    async fn wait_for_change(&self, timeout_ms: u64) -> Result<bool, StorageError> {
        self.up()?;
        self.store.wait_for_change(timeout_ms).await
    }
}

#[async_trait::async_trait]
impl AccountStore for Storage {
    async fn upsert_account(&self, id: &AccountId, key_names: &[String]) -> Result<AccountRecord, StorageError> {
        self.up()?;
        self.store.upsert_account(id, key_names).await
    }

    async fn retire_unlisted(&self, configured: &[AccountId], now: Timestamp) -> Result<Vec<AccountId>, StorageError> {
        self.up()?;
        self.store.retire_unlisted(configured, now).await
    }

    async fn list_accounts(&self) -> Result<Vec<AccountRecord>, StorageError> {
        self.up()?;
        self.store.list_accounts().await
    }

    async fn add_purchase(&self, id: &AccountId, purchase: &CreditPurchase) -> Result<(), StorageError> {
        self.up()?;
        self.store.add_purchase(id, purchase).await
    }

    async fn purchases(&self, id: &AccountId) -> Result<Vec<CreditPurchase>, StorageError> {
        self.up()?;
        self.store.purchases(id).await
    }

    async fn total_spend(&self, id: &AccountId) -> Result<Money, StorageError> {
        self.up()?;
        self.store.total_spend(id).await
    }

    async fn spends(&self, id: &AccountId) -> Result<Vec<CreditSpend>, StorageError> {
        self.up()?;
        let scripted = {
            let w = self.world();
            w.spend.get(id).map(|amount| vec![CreditSpend { amount: *amount, spent_at: w.clock() }])
        };
        match scripted {
            Some(spends) => Ok(spends),
            None => self.store.spends(id).await,
        }
    }

    async fn set_lock(&self, id: &AccountId, lock: Option<AccountLock>) -> Result<(), StorageError> {
        self.up()?;
        self.world().set_locks.push((id.clone(), lock.clone()));
        self.store.set_lock(id, lock).await
    }

    async fn set_admin_state(
        &self,
        id: &AccountId,
        disabled: bool,
        limit_override: Option<u32>,
    ) -> Result<(), StorageError> {
        self.up()?;
        self.world().disabled.push(id.clone());
        self.store.set_admin_state(id, disabled, limit_override).await
    }
}

#[async_trait::async_trait]
impl PromptCache for Storage {
    async fn cache_get(&self, key: &str, now: Timestamp) -> Result<Option<String>, StorageError> {
        self.up()?;
        self.store.cache_get(key, now).await
    }

    async fn cache_put(&self, key: &str, value: &str, expires_at: Timestamp) -> Result<(), StorageError> {
        self.up()?;
        self.store.cache_put(key, value, expires_at).await
    }
}

#[async_trait::async_trait]
impl AlertLog for Storage {
    async fn record_alert(&self, key: &str, period: &str, now: Timestamp) -> Result<bool, StorageError> {
        self.up()?;
        self.store.record_alert(key, period, now).await
    }
}

#[async_trait::async_trait]
impl UsageStore for Storage {
    async fn save_media(&self, record: &MediaRecord) -> Result<(), StorageError> {
        self.up()?;
        self.store.save_media(record).await
    }

    async fn media_for_job(&self, job: JobId) -> Result<Vec<MediaRecord>, StorageError> {
        self.up()?;
        self.store.media_for_job(job).await
    }

    async fn usage_by_model(&self, from: Timestamp, to: Timestamp) -> Result<Vec<ModelUsage>, StorageError> {
        self.up()?;
        let scripted = self.world().fal_cost_this_month;
        if scripted == Money::ZERO {
            return self.store.usage_by_model(from, to).await;
        }
        Ok(vec![ModelUsage {
            model: ModelId::new("fal-ai/nano-banana"),
            succeeded: 10,
            failed: 0,
            user_charged: scripted,
            fal_cost: scripted,
        }])
    }

    async fn usage_by_user(&self, from: Timestamp, to: Timestamp) -> Result<Vec<UserSpend>, StorageError> {
        self.up()?;
        self.store.usage_by_user(from, to).await
    }

    async fn request_count(&self, from: Timestamp, to: Timestamp) -> Result<u64, StorageError> {
        self.up()?;
        let scripted = self.world().requests_this_month;
        if scripted == 0 { self.store.request_count(from, to).await } else { Ok(scripted) }
    }
}

#[async_trait::async_trait]
impl ReportStore for Storage {
    async fn usage_rows(&self, from: Timestamp, to: Timestamp) -> Result<Vec<UsageRow>, StorageError> {
        self.up()?;
        let scripted = {
            let w = self.world();
            let midnight = |d: chrono::NaiveDate| d.and_hms_opt(0, 0, 0).unwrap().and_utc();
            let period = |r: &&UsageRow| midnight(r.day) >= midnight(from.date_naive()) && midnight(r.day) < to;
            (!w.usage_rows.is_empty()).then(|| w.usage_rows.iter().filter(period).cloned().collect())
        };
        match scripted {
            Some(rows) => Ok(rows),
            None => self.store.usage_rows(from, to).await,
        }
    }

    async fn requests_by_day(&self, from: Timestamp, to: Timestamp) -> Result<Vec<DayCount>, StorageError> {
        self.up()?;
        let scripted = {
            let w = self.world();
            let period =
                |d: &&DayCount| d.day >= from.date_naive() && d.day.and_hms_opt(0, 0, 0).unwrap().and_utc() < to;
            (!w.requests_by_day.is_empty()).then(|| w.requests_by_day.iter().filter(period).copied().collect())
        };
        match scripted {
            Some(days) => Ok(days),
            None => self.store.requests_by_day(from, to).await,
        }
    }

    async fn job_counts(&self) -> Result<JobCounts, StorageError> {
        self.up()?;
        self.store.job_counts().await
    }

    async fn job_timings(&self, from: Timestamp, to: Timestamp) -> Result<Vec<JobTiming>, StorageError> {
        self.up()?;
        let scripted = {
            let w = self.world();
            let alive = |t: &&JobTiming| t.enqueued_at < to && t.finished_at.is_none_or(|f| f > from);
            (!w.timings.is_empty()).then(|| w.timings.iter().filter(alive).cloned().collect())
        };
        match scripted {
            Some(timings) => Ok(timings),
            None => self.store.job_timings(from, to).await,
        }
    }

    async fn slot_intervals(&self, from: Timestamp, to: Timestamp) -> Result<Vec<SlotInterval>, StorageError> {
        self.up()?;
        let scripted = {
            let w = self.world();
            let overlaps = |s: &&SlotInterval| s.claimed_at < to && s.released_at.is_none_or(|r| r > from);
            (!w.slot_history.is_empty()).then(|| w.slot_history.iter().filter(overlaps).cloned().collect())
        };
        match scripted {
            Some(slots) => Ok(slots),
            None => self.store.slot_intervals(from, to).await,
        }
    }
}

/// The shared world and the engine wired to it.
pub struct Harness {
    /// The shared state; tests take it through [`Harness::world`], which reads the stored
    /// rows in and writes their edits back.
    pub world: Arc<Mutex<World>>,
    pub config: EngineConfig,
    store: MemoryStore,
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
        let store = MemoryStore::new();
        Self { world: Arc::new(Mutex::new(World::new(store.clone()))), config, store }
    }

    /// The world, with the stored rows read in; the test's edits are stored when it is let go.
    pub fn world(&self) -> WorldGuard<'_> {
        let mut world = WorldGuard(self.world.lock().unwrap());
        world.0.reload();
        world
    }

    pub fn engine(&self) -> Engine {
        Engine::new(self.ports(), self.config.clone())
    }

    /// A fresh engine run for `secs` of paused time, then shut down: one stretch of a
    /// process's life. Returns the engine, for its counters.
    pub async fn run_for(&self, secs: u64) -> Engine {
        let engine = self.engine();
        let running = self.start(&engine);
        advance(secs).await;
        running.shutdown().await;
        engine
    }

    /// Starts `run`; the returned handle stops it.
    pub fn start(&self, engine: &Engine) -> Running {
        let (stop, signal) = watch::channel(false);
        let engine = engine.clone();
        let task = tokio::spawn(async move { engine.run(signal).await });
        Running { stop, task }
    }

    fn ports(&self) -> Ports {
        let storage = Arc::new(Storage { store: self.store.clone(), world: Arc::clone(&self.world) });
        Ports {
            generation: Arc::new(self.generation()),
            messaging: Arc::new(self.messaging()),
            queue: storage.clone(),
            users: storage.clone(),
            accounts: storage.clone(),
            prompt_cache: storage.clone(),
            alerts: storage.clone(),
            usage: storage.clone(),
            reports: storage,
            clock: Arc::new(self.clock()),
        }
    }

    fn clock(&self) -> MockClock {
        let world = Arc::clone(&self.world);
        let mut clock = MockClock::new();
        clock.expect_now().returning(move || world.lock().unwrap().clock());
        clock
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
