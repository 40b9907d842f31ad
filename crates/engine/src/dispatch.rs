//! The loops: dispatch (claim → upload → enhance → submit → follow), lease heartbeat,
//! rescue of expired leases, operator checks, and the shutdown that ends them.

use crate::Engine;
use crate::alerts::{Alert, day_key};
use crate::breaker::Trip;
use crate::stats::bump;
use mediagen_domain::{AccountId, FailureReason, Job, Timestamp};
use mediagen_ports::{
    AccountCapacity, ClaimRequest, ClaimedJob, GenerationError, GenerationRequest, MessagingError, Rescued, Severity,
    StorageError, UserNotice,
};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;

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

fn deadline(now: Timestamp, after: Duration) -> Timestamp {
    chrono::TimeDelta::from_std(after).ok().and_then(|d| now.checked_add_signed(d)).unwrap_or(now)
}

impl Engine {
    /// Runs the dispatcher, the lease heartbeat, the rescue of expired leases and the
    /// operator checks until `shutdown` turns true (a dropped sender counts as true).
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
        let _ = tokio::time::timeout(config.progress_interval * 2, self.inner.throttle.idle()).await;
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
        let config = &inner.config;
        let ports = &inner.ports;
        let accounts = match self.accounts().await {
            Ok(accounts) => accounts,
            Err(error) => {
                tracing::warn!(%error, "accounts unavailable; no claim");
                return false;
            }
        };
        let capacities = self.capacities(&accounts);
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
            let this = self.clone();
            self.spawn_tracked(async move { this.dispatch(job).await });
        }
        count >= max_jobs
    }

    /// Takes one claimed job to fal: inputs, prompt, submit; then follows it.
    #[tracing::instrument(skip_all, fields(job_id = %claimed.job.id, account = %claimed.account))]
    async fn dispatch(&self, claimed: ClaimedJob) {
        let ClaimedJob { job, account } = claimed;
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
                    return self.end_failed(&job, FailureReason::InvalidInput(reason)).await;
                }
                Err(error) => return self.retry_or_fail(&job, format!("input file unavailable: {error}")).await,
            };
            match ports.generation.upload(&account, bytes).await {
                Ok(url) => input_image_urls.push(url),
                Err(error) => return self.on_dispatch_error(&job, &account, Stage::Upload, error).await,
            }
        }

        let (prompt, llm_cost) = if job.spec.enhance_prompt {
            self.prompt_for_job(&job.spec.prompt, &account).await
        } else {
            (job.spec.prompt.as_str().to_owned(), mediagen_domain::Money::ZERO)
        };
        let request = GenerationRequest {
            model: job.spec.model.clone(),
            kind: job.spec.kind,
            prompt,
            size: job.spec.size,
            num_images: job.spec.num_images,
            seed: job.spec.seed,
            input_image_urls,
            llm: None,
        };
        // From here until the handle is stored, fal may hold the job without our knowing:
        // recorded first, so a crash in between ends the job instead of resubmitting it.
        match ports.queue.mark_submitting(job.id, &self.inner.config.owner, ports.clock.now()).await {
            Ok(()) => {}
            Err(StorageError::Conflict(why)) => {
                tracing::info!(%why, "job no longer dispatching; not submitted");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "could not record the submit; not submitted");
                return self.requeue_now(&job, "storage unavailable before submit").await;
            }
        }
        let handle = match ports.generation.submit(&account, &request).await {
            Ok(handle) => handle,
            Err(error) => return self.on_dispatch_error(&job, &account, Stage::Submit, error).await,
        };
        self.inner.breakers.record_success(&account);
        bump(&self.inner.counters.submitted);

        if let Some(moved_on) = self.record_submitted(&job, &handle).await {
            // Canceled or taken over meanwhile, or not recorded: this submission must not run.
            if let Err(error) = ports.generation.cancel(&handle).await {
                tracing::warn!(%error, "could not cancel an orphaned submission");
            }
            if !moved_on {
                // Still ours, and this process renews its lease: back to the queue, not stuck.
                self.requeue_now(&job, "submission withdrawn: its handle could not be stored").await;
            }
            return;
        }
        self.inner.llm_costs.lock().unwrap().insert(job.id, llm_cost);
        self.report_progress(&job, UserNotice::Generating { job: job.id, model: job.spec.model.clone() });
        self.follow(job, handle).await;
    }

    /// Stores the handle. `None` when stored; else `Some(moved_on)`: `true` when the job is
    /// no longer ours to submit (`Conflict`: canceled or taken over), `false` when the handle
    /// could not be stored after a few tries and the job is still ours.
    ///
    /// Only a stored handle makes a rescue resume the job instead of resubmitting it, so a
    /// submission whose handle cannot be stored is withdrawn at fal by the caller, and the
    /// job goes back to the queue.
    async fn record_submitted(&self, job: &Job, handle: &mediagen_ports::RemoteHandle) -> Option<bool> {
        let ports = &self.inner.ports;
        let owner = &self.inner.config.owner;
        for attempt in 1..=3u32 {
            match ports.queue.mark_submitted(job.id, owner, handle, ports.clock.now()).await {
                Ok(()) => return None,
                Err(StorageError::Conflict(why)) => {
                    tracing::info!(%why, "job no longer dispatching; submission withdrawn");
                    return Some(true);
                }
                Err(error) => {
                    tracing::error!(attempt, %error, "could not record the submission");
                    tokio::time::sleep(self.inner.config.retry.delay(attempt)).await;
                }
            }
        }
        Some(false)
    }

    /// A failed upload or submit. Before fal accepted anything, a retry cannot double-run.
    async fn on_dispatch_error(&self, job: &Job, account: &AccountId, stage: Stage, error: GenerationError) {
        tracing::warn!(?stage, %error, "dispatch failed");
        match error {
            GenerationError::AccountLocked { account: locked, reason } => {
                self.lock_account(&locked, &reason).await;
                self.requeue_now(job, "account locked").await;
            }
            GenerationError::BadKey(bad) => {
                self.disable_account(&bad).await;
                self.requeue_now(job, "key refused").await;
            }
            GenerationError::ContentPolicy => self.end_failed(job, FailureReason::ContentPolicy).await,
            GenerationError::InvalidInput(detail) => self.end_failed(job, FailureReason::InvalidInput(detail)).await,
            GenerationError::TooLarge { actual, limit } => {
                let detail = format!("an input file is {actual} bytes; the limit is {limit}");
                self.end_failed(job, FailureReason::InvalidInput(detail)).await;
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
                self.alert_once(alert).await;
                self.end_failed(job, FailureReason::Upstream(format!("unknown model endpoint {model}"))).await;
            }
            GenerationError::Retryable(detail) => {
                self.upstream_failure(account).await;
                self.retry_or_fail(job, detail).await;
            }
            GenerationError::Timeout(detail) if stage == Stage::Upload => {
                self.upstream_failure(account).await;
                self.retry_or_fail(job, detail).await;
            }
            GenerationError::Other(detail) if stage == Stage::Upload => {
                self.upstream_failure(account).await;
                self.retry_or_fail(job, detail.to_string()).await;
            }
            // fal may have accepted the request and has no idempotency key: a resubmit
            // could run (and bill) it twice, so the job fails without charging the user.
            other => {
                self.upstream_failure(account).await;
                self.end_failed(job, FailureReason::Upstream(format!("submit outcome unknown: {other}"))).await;
            }
        }
    }

    /// Counts an upstream failure against the account's breaker; alerts when it opens.
    pub(crate) async fn upstream_failure(&self, account: &AccountId) {
        if self.inner.breakers.record_failure(account) != Trip::Opened {
            return;
        }
        bump(&self.inner.counters.breaker_trips);
        self.inner.wake.notify_one();
        let breaker = self.inner.config.breaker;
        let now = self.inner.ports.clock.now();
        let alert = Alert {
            key: format!("breaker:{account}"),
            period: day_key(now),
            severity: Severity::Warning,
            title: format!("fal account {account} paused after {} failures in a row", breaker.failure_threshold),
            body: format!(
                "Upstream failures on account {account}: it takes no work for {} s, then gets one trial.",
                breaker.cool_down.as_secs()
            ),
        };
        self.alert_once(alert).await;
    }

    /// Back to the queue at once, for another account; not counted as a failure.
    async fn requeue_now(&self, job: &Job, reason: &str) {
        let ports = &self.inner.ports;
        match self.stored("requeue", || ports.queue.requeue(job.id, reason, None, ports.clock.now())).await {
            Ok(_) => self.inner.wake.notify_one(),
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
                    let this = self.clone();
                    self.spawn_tracked(async move { this.follow(job, handle).await });
                }
                Rescued::Requeued(job) => {
                    tracing::info!(job_id = %job.id, "requeued a job whose dispatcher died");
                    self.inner.wake.notify_one();
                }
                Rescued::SubmitUnknown(job) => {
                    tracing::warn!(job_id = %job.id, "a dispatcher died during a submit; ending the job, not resubmitting");
                    let this = self.clone();
                    self.spawn_tracked(async move {
                        let reason = FailureReason::Upstream("submit outcome unknown: interrupted by a restart".into());
                        this.end_failed(&job, reason).await;
                    });
                }
                Rescued::Redeliver(job, settlement) => {
                    let this = self.clone();
                    self.spawn_tracked(async move { this.redeliver(job, settlement).await });
                }
            }
        }
    }

    /// Heartbeat, periodic rescue, operator checks and scheduled reports, until aborted at shutdown.
    async fn background(self) {
        let config = &self.inner.config;
        let ports = &self.inner.ports;
        let mut heartbeat = tokio::time::interval((config.lease / 3).max(Duration::from_millis(10)));
        let mut rescue = tokio::time::interval(config.rescue_interval.max(Duration::from_millis(10)));
        let mut checks = tokio::time::interval(config.operator_checks.max(Duration::from_millis(10)));
        let mut reports = tokio::time::interval(config.report_tick.max(Duration::from_millis(10)));
        for timer in [&mut heartbeat, &mut rescue, &mut checks, &mut reports] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        // The start-up rescue already ran.
        rescue.tick().await;
        loop {
            tokio::select! {
                _ = heartbeat.tick() => {
                    let now = ports.clock.now();
                    if let Err(error) = ports.queue.renew_leases(&config.owner, deadline(now, config.lease)).await {
                        tracing::warn!(%error, "lease renewal failed");
                    }
                }
                _ = rescue.tick() => self.rescue().await,
                _ = checks.tick() => self.operator_checks().await,
                _ = reports.tick() => self.scheduled_reports().await,
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
