//! The loops: dispatch (claim → upload → enhance → submit → follow), lease heartbeat,
//! rescue of expired leases, operator checks, and the shutdown that ends them.

use crate::alerts::{Alert, day_key};
use crate::stats::bump;
use crate::stored::stored;
use crate::tasks::TaskCounter;
use crate::{EngineConfig, Follower, Operator, Prompts, Shared};
use mediagen_domain::{AccountId, FailureReason, Job, Lease, ModelKind, Timestamp};
use mediagen_ports::{
    AccountCapacity, ClaimRequest, ClaimedJob, Clock, Generation, GenerationError, GenerationRequest, JobQueue,
    Messaging, MessagingError, Rescued, Severity, StorageError, UserNotice,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// The longest pause between two tries of recording fal's acceptance.
const MAX_RECORD_DELAY: Duration = Duration::from_secs(10);

/// Input files larger than this are refused when the model sets no limit of its own.
const DEFAULT_MAX_INPUT_BYTES: u64 = 20 * 1024 * 1024;

/// Where a failed call happened: before submit nothing can have run at fal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Upload,
    Submit,
}

/// Returns when the shutdown signal is raised (or its sender is gone).
async fn signalled(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

pub(crate) fn deadline(now: Timestamp, after: Duration) -> Timestamp {
    chrono::TimeDelta::from_std(after).ok().and_then(|d| now.checked_add_signed(d)).unwrap_or(now)
}

/// The ports dispatch needs.
#[derive(Clone)]
pub struct DispatcherPorts {
    /// Claims, submit markers, requeues, leases and the rescue.
    pub queue: Arc<dyn JobQueue>,
    /// Users' input files, fetched as bytes.
    pub messaging: Arc<dyn Messaging>,
    /// Uploads and submits at fal.
    pub generation: Arc<dyn Generation>,
    /// The instant of every write.
    pub clock: Arc<dyn Clock>,
}

/// Takes queued jobs to fal: claims as slots free up, uploads inputs, submits, hands each
/// accepted job to the [`Follower`]; renews its tasks' leases, rescues expired ones, and
/// drains at shutdown. Owns its tasks, their leases and the draining flag.
#[derive(Clone)]
pub struct Dispatcher {
    pub(crate) inner: Arc<DispatcherInner>,
}

pub(crate) struct DispatcherInner {
    ports: DispatcherPorts,
    config: Arc<EngineConfig>,
    counters: Arc<crate::stats::Counters>,
    wake: Arc<tokio::sync::Notify>,
    follower: Follower,
    operator: Operator,
    prompts: Prompts,
    /// Dispatches and followers in flight.
    tasks: TaskCounter,
    /// Set when the shutdown grace is over: background work stops where it is.
    stop: watch::Sender<bool>,
    /// Set on a shutdown signal: no more claims or rescues.
    draining: AtomicBool,
    /// The leases this process's tasks hold: the only ones the heartbeat renews.
    pub(crate) leases: crate::leases::LiveLeases,
}

impl Dispatcher {
    pub(crate) fn new(
        ports: DispatcherPorts,
        shared: Shared,
        follower: Follower,
        operator: Operator,
        prompts: Prompts,
    ) -> Self {
        let inner = DispatcherInner {
            ports,
            config: shared.config,
            counters: shared.counters,
            wake: shared.wake,
            follower,
            operator,
            prompts,
            tasks: TaskCounter::default(),
            stop: watch::Sender::new(false),
            draining: AtomicBool::new(false),
            leases: crate::leases::LiveLeases::default(),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Runs `work` in the background, counted for shutdown and stopped when the grace ends.
    fn spawn_tracked<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let guard = self.inner.tasks.enter();
        let mut stop = self.inner.stop.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                () = work => {}
                _ = stop.wait_for(|stopped| *stopped) => {}
            }
            drop(guard);
        });
    }

    /// Runs the dispatcher, the lease heartbeat and the rescue of expired leases until
    /// `shutdown` turns true (a dropped sender counts as true).
    ///
    /// Then it stops claiming and rescuing, keeps following jobs already at fal for up
    /// to `shutdown_grace` (renewing their leases), and returns. Whatever is still in
    /// flight keeps its lease until it expires, and the next start (or another process)
    /// rescues it: jobs fal accepted are followed again, never submitted twice.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let config = &self.inner.config;
        tracing::info!(owner = %config.owner, "engine starting");
        self.rescue().await;
        let background = tokio::spawn(self.clone().background());
        self.dispatch_loop(&mut shutdown).await;

        self.inner.draining.store(true, Ordering::SeqCst);
        tracing::info!(in_flight = self.inner.tasks.running(), "shutting down: no more claims");
        if tokio::time::timeout(config.shutdown_grace, self.inner.tasks.idle()).await.is_err() {
            tracing::warn!(left = self.inner.tasks.running(), "grace over; the rest is rescued at the next start");
        }
        self.inner.stop.send_replace(true);
        background.abort();
        // Final progress edits still waiting for their chat's turn get a moment to go out.
        let _ = tokio::time::timeout(config.progress_interval * 2, self.inner.follower.progress_idle()).await;
        tracing::info!("engine stopped");
    }

    /// Claims whenever work may be waiting, until the shutdown signal.
    async fn dispatch_loop(&self, shutdown: &mut watch::Receiver<bool>) {
        let config = &self.inner.config;
        let tick_ms = u64::try_from(config.dispatch_tick.as_millis()).unwrap_or(u64::MAX);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let full = self.claim_round().await;
            if !full {
                let mut failed = false;
                tokio::select! {
                    biased;
                    () = signalled(shutdown) => return,
                    () = self.inner.wake.notified() => {}
                    changed = self.inner.ports.queue.wait_for_change(tick_ms) => failed = changed.is_err(),
                }
                if failed {
                    tokio::select! {
                        () = signalled(shutdown) => return,
                        () = tokio::time::sleep(config.dispatch_tick) => {}
                    }
                }
            }
            // Wake-ups come in bursts: a short gap lets one claim take them all.
            tokio::select! {
                () = signalled(shutdown) => return,
                () = tokio::time::sleep(config.min_claim_gap) => {}
            }
        }
    }

    /// One claim of at most the free capacity; true when it filled its batch (more may wait).
    async fn claim_round(&self) -> bool {
        let inner = &self.inner;
        if inner.draining.load(Ordering::SeqCst) {
            return false;
        }
        let config = &inner.config;
        let ports = &inner.ports;
        let accounts = match self.inner.operator.accounts().await {
            Ok(accounts) => accounts,
            Err(error) => {
                tracing::warn!(%error, "accounts unavailable; no claim");
                return false;
            }
        };
        let capacities = self.inner.operator.capacities(&accounts);
        let in_flight: HashMap<AccountId, u32> = match ports.queue.in_flight_by_account().await {
            Ok(rows) => rows.into_iter().collect(),
            Err(error) => {
                tracing::warn!(%error, "in-flight counts unavailable; no claim");
                return false;
            }
        };
        let max_jobs = free_slots(&capacities, &in_flight, config.overhang).min(config.claim_batch);
        if max_jobs == 0 {
            return false;
        }
        let now = ports.clock.now();
        let request = ClaimRequest {
            owner: config.owner.clone(),
            lease_until: deadline(now, config.lease),
            accounts: capacities,
            overhang: config.overhang,
            max_jobs,
            in_flight_caps: config.plans.iter().map(|p| (p.name.clone(), p.max_in_flight)).collect(),
            now,
        };
        let claimed = match ports.queue.claim(&request).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "claim failed");
                return false;
            }
        };
        let count = u32::try_from(claimed.len()).unwrap_or(u32::MAX);
        for job in claimed {
            let lease = self.hold_lease(&job.job);
            let this = self.clone();
            self.spawn_tracked(async move {
                this.dispatch(job).await;
                drop(lease);
            });
        }
        count >= max_jobs
    }

    /// Takes one claimed job to fal: inputs, prompt, submit; then follows it.
    #[tracing::instrument(skip_all, fields(job_id = %claimed.job.id, account = %claimed.account))]
    async fn dispatch(&self, claimed: ClaimedJob) {
        let ClaimedJob { mut job, account } = claimed;
        let Some(lease) = job.lease.clone() else {
            tracing::error!("claimed without a lease; left for the rescue");
            return;
        };
        let ports = &self.inner.ports;
        let catalog = &self.inner.config.catalog;

        let max_bytes = catalog.get(&job.spec.model).and_then(|m| m.max_input_bytes).unwrap_or(DEFAULT_MAX_INPUT_BYTES);
        let mut input_image_urls = Vec::with_capacity(job.spec.input_media.len());
        for media in &job.spec.input_media {
            // Bytes through the messaging port: a platform URL (with its token) never leaves it.
            let bytes = match ports.messaging.fetch_input(media, max_bytes).await {
                Ok(bytes) => bytes,
                Err(MessagingError::TooLarge(size)) => {
                    let reason = format!("an input file is {size} bytes; the limit is {max_bytes}");
                    return self.inner.follower.end_failed(&job, FailureReason::InvalidInput(reason)).await;
                }
                Err(error) => {
                    return self.inner.follower.retry_or_fail(&job, format!("input file unavailable: {error}")).await;
                }
            };
            match ports.generation.upload(&account, bytes).await {
                Ok(url) => input_image_urls.push(url),
                Err(error) => return self.on_dispatch_error(&job, &account, Stage::Upload, error).await,
            }
        }

        let (prompt, llm_cost) = if job.spec.enhance_prompt {
            self.inner.prompts.prompt_for_job(&job.spec.prompt, &account).await
        } else {
            (job.spec.prompt.as_str().to_owned(), mediagen_domain::Money::ZERO)
        };
        if llm_cost > mediagen_domain::Money::ZERO {
            // Kept with the job: whichever process finishes it charges the rewrite too.
            let add = || ports.queue.add_helper_cost(job.id, &lease, llm_cost, ports.clock.now());
            match stored(&self.inner.config.retry, "add_helper_cost", add).await {
                Ok(()) => {}
                Err(StorageError::Conflict(why)) => {
                    tracing::info!(%why, "job no longer dispatching; not submitted");
                    return;
                }
                // Still charged if this process finishes the job; only a restart loses it.
                Err(error) => tracing::warn!(%error, "the prompt helper's cost was not stored"),
            }
            job.helper_cost = job.helper_cost.saturating_add(llm_cost);
        }
        let request = GenerationRequest {
            model: job.spec.model.clone(),
            kind: job.spec.kind,
            prompt,
            size: job.spec.size,
            num_images: job.spec.num_images,
            seed: job.spec.seed,
            input_image_urls,
            // A `/enhance` job is the LLM call itself.
            llm: (job.spec.kind == ModelKind::Llm).then(|| self.inner.prompts.llm_params()),
        };
        // From here until the handle is stored, fal may hold the job without our knowing:
        // recorded first, so a crash in between ends the job instead of resubmitting it.
        match stored(&self.inner.config.retry, "mark_submitting", || {
            ports.queue.mark_submitting(job.id, &lease, ports.clock.now())
        })
        .await
        {
            Ok(()) => {}
            Err(StorageError::Conflict(why)) => {
                tracing::info!(%why, "job no longer dispatching; not submitted");
                return;
            }
            Err(error) => {
                // Not submitted: the lease lapses with this task and the rescue requeues it.
                tracing::warn!(%error, "could not record the submit; not submitted");
                return;
            }
        }
        let handle = match ports.generation.submit(&account, &request).await {
            Ok(handle) => handle,
            Err(error) => return self.on_dispatch_error(&job, &account, Stage::Submit, error).await,
        };
        self.inner.operator.record_success(&account);
        bump(&self.inner.counters.submitted);
        let accepted_at = ports.clock.now();

        if !self.record_submitted(&job, &lease, &handle).await {
            // Canceled or taken over meanwhile: this submission must not run.
            if let Err(error) = ports.generation.cancel(&handle).await {
                tracing::warn!(%error, "could not cancel an orphaned submission");
            }
            return;
        }
        job.submitted_at = Some(accepted_at);
        self.inner
            .follower
            .report_progress(&job, UserNotice::Generating { job: job.id, model: job.spec.model.clone() });
        self.inner.follower.follow(job, handle).await;
    }

    /// Stores the handle; false when the job is no longer ours to submit (`Conflict`:
    /// canceled or taken over), and then the caller withdraws the submission at fal.
    ///
    /// fal holds the request now and a running model may ignore a cancel, so a database
    /// outage is waited out, never answered with a cancel and a resubmit (two runs, two
    /// bills). Other failures are tried again, more slowly, for as long as the task lives:
    /// if it dies first, the rescue sees the submit marker and never resubmits.
    async fn record_submitted(&self, job: &Job, lease: &Lease, handle: &mediagen_ports::RemoteHandle) -> bool {
        let ports = &self.inner.ports;
        let mut round = 1u32;
        loop {
            let mark = || ports.queue.mark_submitted(job.id, lease, handle, ports.clock.now());
            let recorded = stored(&self.inner.config.retry, "mark_submitted", mark).await;
            match recorded {
                Ok(()) => return true,
                Err(StorageError::Conflict(why)) => {
                    tracing::info!(%why, "job no longer dispatching; submission withdrawn");
                    return false;
                }
                Err(error) => {
                    tracing::error!(round, %error, "could not record fal's acceptance; trying again");
                    tokio::time::sleep(MAX_RECORD_DELAY.min(self.inner.config.retry.delay(round))).await;
                    round = round.saturating_add(1);
                }
            }
        }
    }

    /// A failed upload or submit. Before fal accepted anything, a retry cannot double-run.
    async fn on_dispatch_error(&self, job: &Job, account: &AccountId, stage: Stage, error: GenerationError) {
        tracing::warn!(?stage, %error, "dispatch failed");
        match error {
            GenerationError::AccountLocked { account: locked, reason } => {
                self.inner.operator.lock_account(&locked, &reason).await;
                self.requeue_now(job, "account locked").await;
            }
            GenerationError::BadKey(bad) => {
                self.inner.operator.every_key_refused(&bad).await;
                self.requeue_now(job, "every key of the account refused").await;
            }
            GenerationError::ContentPolicy => self.inner.follower.end_failed(job, FailureReason::ContentPolicy).await,
            GenerationError::InvalidInput(detail) => {
                self.inner.follower.end_failed(job, FailureReason::InvalidInput(detail)).await
            }
            GenerationError::TooLarge { actual, limit } => {
                let detail = format!("an input file is {actual} bytes; the limit is {limit}");
                self.inner.follower.end_failed(job, FailureReason::InvalidInput(detail)).await;
            }
            GenerationError::UnknownModel(model) => {
                let now = self.inner.ports.clock.now();
                let alert = Alert {
                    key: format!("unknown-model:{model}"),
                    period: day_key(now),
                    severity: Severity::Warning,
                    title: format!("fal does not know the model {model}"),
                    body: format!("fal answered 404 for {model}: fix or disable it in the catalog."),
                };
                self.inner.operator.alert_once(alert).await;
                self.inner
                    .follower
                    .end_failed(job, FailureReason::Upstream(format!("unknown model endpoint {model}")))
                    .await;
            }
            GenerationError::Retryable(detail) => {
                self.inner.operator.upstream_failure(account).await;
                self.inner.follower.retry_or_fail(job, detail).await;
            }
            GenerationError::Timeout(detail) if stage == Stage::Upload => {
                self.inner.operator.upstream_failure(account).await;
                self.inner.follower.retry_or_fail(job, detail).await;
            }
            GenerationError::Other(detail) if stage == Stage::Upload => {
                self.inner.operator.upstream_failure(account).await;
                self.inner.follower.retry_or_fail(job, detail.to_string()).await;
            }
            // fal may have accepted the request and has no idempotency key: a resubmit
            // could run (and bill) it twice, so the job fails without charging the user.
            other => {
                self.inner.operator.upstream_failure(account).await;
                // The request reached fal (its answer was lost): count it as billed.
                let reason = FailureReason::Upstream(format!("submit outcome unknown: {other}"));
                self.inner.follower.end_failed_billed(job, reason, true).await;
            }
        }
    }

    /// Back to the queue at once, for another account; not counted as a failure.
    async fn requeue_now(&self, job: &Job, reason: &str) {
        let ports = &self.inner.ports;
        let Some(lease) = &job.lease else { return tracing::error!("requeue without a lease") };
        match stored(&self.inner.config.retry, "requeue", || {
            ports.queue.requeue(job.id, lease, reason, None, ports.clock.now())
        })
        .await
        {
            Ok(_) => self.inner.wake.notify_one(),
            // Left to the rescue: the lease lapses with this task.
            Err(error) => tracing::warn!(%error, "requeue refused"),
        }
    }

    /// Jobs whose lease expired: those at fal are followed (never resubmitted); the rest
    /// went back to the queue.
    pub(crate) async fn rescue(&self) {
        if self.inner.draining.load(Ordering::SeqCst) {
            return;
        }
        let ports = &self.inner.ports;
        let config = &self.inner.config;
        let now = ports.clock.now();
        let rescued = match ports.queue.rescue_expired(&config.owner, deadline(now, config.lease), now).await {
            Ok(rescued) => rescued,
            Err(error) => {
                tracing::warn!(%error, "rescue failed");
                return;
            }
        };
        for item in rescued {
            match item {
                Rescued::Resume(job, handle) => {
                    tracing::info!(job_id = %job.id, "resuming a job at fal");
                    let lease = self.hold_lease(&job);
                    let this = self.clone();
                    self.spawn_tracked(async move {
                        this.inner.follower.follow(job, handle).await;
                        drop(lease);
                    });
                }
                Rescued::Requeued(job) => {
                    tracing::info!(job_id = %job.id, "requeued a job whose dispatcher died");
                    self.inner.wake.notify_one();
                }
                Rescued::SubmitUnknown(job) => {
                    tracing::warn!(job_id = %job.id, "a dispatcher died during a submit; ending the job, not resubmitting");
                    let lease = self.hold_lease(&job);
                    let this = self.clone();
                    self.spawn_tracked(async move {
                        let reason = FailureReason::Upstream("submit outcome unknown: interrupted by a restart".into());
                        // The submit had been sent: fal most likely accepted, ran and billed it.
                        this.inner.follower.end_failed_billed(&job, reason, true).await;
                        drop(lease);
                    });
                }
                Rescued::Redeliver(job, settlement) => {
                    let lease = self.hold_lease(&job);
                    let this = self.clone();
                    self.spawn_tracked(async move {
                        this.inner.follower.redeliver(job, settlement).await;
                        drop(lease);
                    });
                }
            }
        }
    }

    /// Heartbeat and periodic rescue, until aborted at shutdown.
    async fn background(self) {
        let config = &self.inner.config;
        let ports = &self.inner.ports;
        let mut heartbeat = tokio::time::interval((config.lease / 3).max(Duration::from_millis(10)));
        let mut rescue = tokio::time::interval(config.rescue_interval.max(Duration::from_millis(10)));
        for timer in [&mut heartbeat, &mut rescue] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        // The start-up rescue already ran.
        rescue.tick().await;
        loop {
            tokio::select! {
                _ = heartbeat.tick() => {
                    let held = self.inner.leases.snapshot();
                    if held.is_empty() {
                        continue;
                    }
                    let now = ports.clock.now();
                    match ports.queue.renew_leases(&held, deadline(now, config.lease)).await {
                        Ok(renewed) if renewed < held.len() as u64 => {
                            tracing::debug!(renewed, held = held.len(), "some leases were taken over or ended");
                        }
                        Ok(_) => {}
                        Err(error) => tracing::warn!(%error, "lease renewal failed"),
                    }
                }
                _ = rescue.tick() => self.rescue().await,
            }
        }
    }
}

/// Jobs the usable accounts can still take: `limit + overhang - in flight`, summed.
fn free_slots(capacities: &[AccountCapacity], in_flight: &HashMap<AccountId, u32>, overhang: u32) -> u32 {
    capacities
        .iter()
        .filter(|c| c.usable)
        .map(|c| c.limit.saturating_add(overhang).saturating_sub(in_flight.get(&c.account).copied().unwrap_or(0)))
        .fold(0u32, u32::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_slots_count_only_usable_accounts_and_never_go_negative() {
        let cap = |name: &str, limit, usable| AccountCapacity { account: AccountId::new(name), limit, usable };
        let in_flight: HashMap<AccountId, u32> =
            [(AccountId::new("a"), 3), (AccountId::new("b"), 9)].into_iter().collect();
        let caps = [cap("a", 4, true), cap("b", 4, true), cap("c", 10, false), cap("d", 2, true)];
        // a: 4 + 1 - 3; b: over its limit, so none; c: unusable; d: 2 + 1.
        assert_eq!(free_slots(&caps, &in_flight, 1), 2 + 3);
        assert_eq!(free_slots(&caps, &in_flight, 0), 1 + 2);
    }
}
