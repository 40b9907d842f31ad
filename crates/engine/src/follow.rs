//! Following a job at fal to its end: progress, result download, settlement, delivery,
//! and what each failure means for the job and the user's credit.

use crate::progress::{ProgressMessage, ProgressMessages, Throttle};
use crate::stats::bump;
use crate::stored::stored;
use crate::{Operator, Prompts, Shared};
use mediagen_domain::JobId;
use mediagen_domain::catalog::PriceRequest;
use mediagen_domain::insights::JobOutcome;
use mediagen_domain::job::settle;
use mediagen_domain::{FailureReason, Job, JobState, Language, ModelKind, Money, Settlement, Timestamp};
use mediagen_ports::{
    CancelOutcome, Clock, Finish, FinishOutcome, Generation, GenerationError, GenerationOutput, JobQueue, MediaBytes,
    MediaRecord, Messaging, MessagingError, OutputMedia, Recipient, RemoteHandle, RemoteStatus, ResultMedia,
    StorageError, UsageStore, UserNotice, UserStore,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Tries of a download or a delivery.
const ATTEMPTS: u32 = 3;

/// The ports following a job needs.
#[derive(Clone)]
pub struct FollowerPorts {
    /// Finishing, requeueing and marking jobs.
    pub queue: Arc<dyn JobQueue>,
    /// The user's language and delivery settings.
    pub users: Arc<dyn UserStore>,
    /// Media records of delivered results.
    pub usage: Arc<dyn UsageStore>,
    /// Progress edits, final notices and results.
    pub messaging: Arc<dyn Messaging>,
    /// Status, result, download and cancel at fal.
    pub generation: Arc<dyn Generation>,
    /// The instant of every write.
    pub clock: Arc<dyn Clock>,
}

/// Follows jobs fal accepted to their end: progress, download, settlement, delivery,
/// retries and redelivery after a crash. Owns the progress messages this process sent
/// and their edit throttle, and its count of upstream failures per job.
#[derive(Clone)]
pub struct Follower {
    inner: Arc<FollowerInner>,
}

struct FollowerInner {
    ports: FollowerPorts,
    config: Arc<crate::EngineConfig>,
    counters: Arc<crate::stats::Counters>,
    wake: Arc<tokio::sync::Notify>,
    operator: Operator,
    prompts: Prompts,
    throttle: Arc<Throttle>,
    messages: ProgressMessages,
    /// Upstream failures per job seen by this process (see `Follower::retry_or_fail`).
    failures: Mutex<HashMap<JobId, u32>>,
    /// Jobs this process ended and told the user about; wakes `Intake::await_rewrite`.
    ended: tokio::sync::broadcast::Sender<JobId>,
}

impl Follower {
    pub(crate) fn new(ports: FollowerPorts, shared: Shared, operator: Operator, prompts: Prompts) -> Self {
        let throttle = Throttle::new(Arc::clone(&ports.messaging), shared.config.progress_interval);
        let inner = FollowerInner {
            ports,
            config: shared.config,
            counters: shared.counters,
            wake: shared.wake,
            operator,
            prompts,
            throttle,
            messages: ProgressMessages::default(),
            failures: Mutex::default(),
            ended: tokio::sync::broadcast::Sender::new(64),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Remembers the acknowledgement sent for `job`, so its progress is edited in place.
    pub(crate) fn remember_message(&self, job: JobId, message: ProgressMessage) {
        self.inner.messages.remember(job, message);
    }

    /// Tells of every job this process ends from now on.
    pub(crate) fn ended(&self) -> tokio::sync::broadcast::Receiver<JobId> {
        self.inner.ended.subscribe()
    }

    /// Waits until the progress edits still queued went out (for shutdown).
    pub(crate) async fn progress_idle(&self) {
        self.inner.throttle.idle().await;
    }

    /// Follows a job fal accepted until it ends, or until its deadline (counted from when
    /// fal accepted it, so a rescue does not restart the clock).
    #[tracing::instrument(skip_all, fields(job_id = %job.id, account = %handle.account))]
    pub(crate) async fn follow(&self, job: Job, handle: RemoteHandle) {
        let ports = &self.inner.ports;
        let accepted_at = job.submitted_at.unwrap_or_else(|| ports.clock.now());
        let until = crate::dispatch::deadline(accepted_at, self.inner.config.follow_deadline);
        let mut started = matches!(job.state, JobState::Running { .. });
        if let Some(every) = self.inner.config.status_poll
            && !started
        {
            started = self.poll_until_started(&job, &handle, every, until).await;
        }
        match ports.generation.wait(&handle, until).await {
            Ok(output) => {
                self.inner.operator.record_success(&handle.account);
                self.complete(&job, output).await;
            }
            Err(error) => self.on_wait_error(&job, &handle, error, started).await,
        }
        // A slot of the account is free again.
        self.inner.wake.notify_one();
    }

    /// Asks fal where the job stands until it starts (recorded as running) or `until`
    /// passes; true once fal said it started or finished.
    async fn poll_until_started(&self, job: &Job, handle: &RemoteHandle, every: Duration, until: Timestamp) -> bool {
        let ports = &self.inner.ports;
        // Counted on the monotonic clock from here: a wall-clock jump neither cuts the wait
        // short nor stretches it.
        let left = (until - ports.clock.now()).to_std().unwrap_or_default();
        let stop_at = tokio::time::Instant::now() + left;
        loop {
            let now = tokio::time::Instant::now();
            if now >= stop_at {
                return false;
            }
            match ports.generation.status(handle).await {
                Ok(RemoteStatus::InQueue { .. }) => tokio::time::sleep(every.min(stop_at - now)).await,
                Ok(RemoteStatus::InProgress) => {
                    let recorded = match &job.lease {
                        Some(lease) => ports.queue.mark_running(job.id, lease, ports.clock.now()).await,
                        None => Ok(()),
                    };
                    if let Err(error) = recorded {
                        tracing::debug!(%error, "mark_running refused");
                    }
                    return true;
                }
                Ok(RemoteStatus::Completed) => return true,
                Err(error) => {
                    tracing::debug!(%error, "status check failed; waiting for the result instead");
                    return false;
                }
            }
        }
    }

    /// A failure while following. fal had accepted the job, so nothing is resubmitted
    /// unless fal says the run itself failed (a 5xx result, never billed). `started` says
    /// whether fal was seen running it: then a timeout or a lost key may still be billed.
    async fn on_wait_error(&self, job: &Job, handle: &RemoteHandle, error: GenerationError, started: bool) {
        tracing::warn!(job_id = %job.id, %error, "job failed at fal");
        match error {
            GenerationError::ContentPolicy => self.end_failed(job, FailureReason::ContentPolicy).await,
            GenerationError::InvalidInput(detail) => self.end_failed(job, FailureReason::InvalidInput(detail)).await,
            GenerationError::Retryable(detail) => {
                self.inner.operator.upstream_failure(&handle.account).await;
                self.retry_or_fail(job, detail).await;
            }
            GenerationError::Timeout(_) => {
                // Stop it at fal so it does not run (and bill) after we gave up.
                let billed = match self.inner.ports.generation.cancel(handle).await {
                    Ok(CancelOutcome::AlreadyCompleted) => true,
                    Ok(_) => started,
                    Err(error) => {
                        tracing::warn!(job_id = %job.id, %error, "could not cancel a timed-out job");
                        started
                    }
                };
                self.end_failed_billed(job, FailureReason::Timeout, billed).await;
            }
            GenerationError::AccountLocked { account, reason } => {
                self.inner.operator.lock_account(&account, &reason).await;
                self.end_failed_billed(job, FailureReason::AccountLocked, started).await;
            }
            GenerationError::BadKey(account) => {
                self.inner.operator.every_key_refused(&account).await;
                let reason = FailureReason::Upstream("every fal key of the account was refused".into());
                self.end_failed_billed(job, reason, started).await;
            }
            GenerationError::UnreadableResult(detail) => {
                // fal answered with success: it ran and billed the job.
                let reason = FailureReason::Upstream(format!("fal's result could not be read: {detail}"));
                self.end_failed_billed(job, reason, true).await;
            }
            other => {
                self.inner.operator.upstream_failure(&handle.account).await;
                self.end_failed_billed(job, FailureReason::Upstream(other.to_string()), started).await;
            }
        }
    }

    /// The result is in: download, settle (only now is the user charged), deliver.
    ///
    /// `finish` is the gate: a job that is already terminal (a redelivered completion, a
    /// second follower, a cancel that won) is neither charged nor delivered again.
    async fn complete(&self, job: &Job, output: GenerationOutput) {
        let ports = &self.inner.ports;
        let config = &self.inner.config;
        if job.spec.kind == ModelKind::Llm {
            return self.complete_rewrite(job, output).await;
        }
        if output.media.is_empty() {
            let reason = FailureReason::Upstream("fal returned no output".into());
            return self.end_failed_billed(job, reason, true).await;
        }
        let mut files = Vec::with_capacity(output.media.len());
        for media in &output.media {
            match self.download(media).await {
                Ok(bytes) => files.push(bytes),
                Err(error) => {
                    // fal produced it and billed it; only the copy to the user failed.
                    let reason = FailureReason::Upstream(format!("result download failed: {error}"));
                    return self.end_failed_billed(job, reason, true).await;
                }
            }
        }

        let price = self.price_of_result(job, files.len());
        let settlement = settle(&JobState::Succeeded, job.hold, price, true, config.settlement);
        let records: Vec<MediaRecord> = output
            .media
            .iter()
            .zip(&files)
            .map(|(media, file)| MediaRecord {
                job: job.id,
                fal_url: media.url.clone(),
                telegram_file_id: None,
                size_bytes: Some(file.bytes.len() as u64),
                content_type: Some(file.content_type.clone()).filter(|t| !t.is_empty()).or(media.content_type.clone()),
            })
            .collect();
        let finish = Finish {
            lease: job.lease.clone(),
            state: JobState::Succeeded,
            settlement,
            media: records.clone(),
            now: ports.clock.now(),
        };
        if !self.finish(job, &finish).await {
            return;
        }
        self.count_success(job, finish.now);

        let (language, as_file) = self.delivery_settings(job).await;
        let recipient = Recipient { chat: job.chat, language };
        let Some(delivered) = self.deliver(job, recipient, files, as_file).await else {
            // Not delivered and not recorded as delivered: the lease lapses with this task
            // and the rescue delivers it again from fal's CDN.
            return;
        };
        for (record, sent) in records.into_iter().zip(delivered) {
            let record = MediaRecord { telegram_file_id: Some(sent.file_id), ..record };
            if let Err(error) = ports.usage.save_media(&record).await {
                tracing::warn!(%error, "media record not saved");
            }
        }
        self.report_final(job, language, UserNotice::Done { job: job.id, charged: settlement.user_charge }).await;
    }

    /// A `/enhance` job's rewrite is in: charged at its real token price, cached (so
    /// asking again is free), shown to the user in place of the queue message.
    async fn complete_rewrite(&self, job: &Job, output: GenerationOutput) {
        let ports = &self.inner.ports;
        let Some(text) = output.text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()) else {
            let reason = FailureReason::Upstream("the prompt helper answered with no text".into());
            return self.end_failed_billed(job, reason, true).await;
        };
        let price = self.inner.prompts.rewrite_price(&job.spec.prompt, output.usage).unwrap_or(job.hold);
        let settlement = settle(&JobState::Succeeded, job.hold, price, true, self.inner.config.settlement);
        // Cached before the job ends, so a redelivery after a crash finds it.
        self.inner.prompts.cache_rewrite(&job.spec.prompt, &text, ports.clock.now()).await;
        let finish = Finish {
            lease: job.lease.clone(),
            state: JobState::Succeeded,
            settlement,
            media: Vec::new(),
            now: ports.clock.now(),
        };
        if !self.finish(job, &finish).await {
            return;
        }
        self.count_success(job, finish.now);
        let (language, _) = self.delivery_settings(job).await;
        let notice = UserNotice::EnhancedPrompt { original: job.spec.prompt.as_str().to_owned(), enhanced: text };
        self.report_final(job, language, notice).await;
    }

    /// The list price of what was produced: the outputs fal returned (never more than
    /// asked) plus what the prompt helper cost for this job.
    fn price_of_result(&self, job: &Job, produced: usize) -> Money {
        let catalog = &self.inner.config.catalog;
        let mut request = PriceRequest::for_job(&job.spec, catalog);
        if job.spec.kind.makes_images() {
            let produced = u32::try_from(produced).unwrap_or(u32::MAX);
            request.num_images = produced.clamp(1, request.num_images.max(1));
        }
        let generation = catalog.price(&request).unwrap_or_else(|error| {
            tracing::error!(%error, "result cannot be priced; the hold is charged");
            job.hold
        });
        generation.saturating_add(job.helper_cost)
    }

    async fn download(&self, media: &mediagen_ports::OutputMedia) -> Result<MediaBytes, GenerationError> {
        let generation = &self.inner.ports.generation;
        let mut attempt = 1;
        loop {
            match generation.download(media).await {
                Ok(bytes) => return Ok(bytes),
                Err(error @ (GenerationError::Retryable(_) | GenerationError::Timeout(_))) if attempt < ATTEMPTS => {
                    tracing::warn!(attempt, %error, "download failed; retrying");
                    tokio::time::sleep(self.inner.config.retry.delay(attempt)).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Sends the files; a photo too large for the platform goes again as a document.
    ///
    /// `None` when they could not be sent for now (the platform kept failing): the caller
    /// leaves the job undelivered, and the rescue sends it again later. Flood control is
    /// waited out for as long as the platform asks, however often: a paid result is never
    /// dropped for it. A chat that is gone counts as delivered (nobody can receive it).
    async fn deliver(
        &self,
        job: &Job,
        to: Recipient,
        files: Vec<MediaBytes>,
        mut as_file: bool,
    ) -> Option<Vec<mediagen_ports::DeliveredMedia>> {
        let messaging = &self.inner.ports.messaging;
        let mut attempt = 1;
        loop {
            let media = files.iter().cloned().map(ResultMedia::Bytes).collect();
            match messaging.send_results(to, job.id, media, as_file).await {
                Ok(delivered) => return Some(delivered),
                Err(MessagingError::TooLarge(_)) if !as_file => as_file = true,
                // The platform says "later", not "failed": waited out, not counted as a try.
                Err(MessagingError::RateLimited { retry_after_secs }) => {
                    tokio::time::sleep(Duration::from_secs(u64::from(retry_after_secs.max(1)))).await;
                    continue;
                }
                Err(MessagingError::Other(error)) if attempt < ATTEMPTS => {
                    tracing::warn!(job_id = %job.id, attempt, %error, "delivery failed; retrying");
                    tokio::time::sleep(self.inner.config.retry.delay(attempt)).await;
                }
                Err(MessagingError::Unconfirmed(error)) => {
                    // Most likely delivered: sending again would show the user a duplicate.
                    tracing::warn!(job_id = %job.id, %error, "results sent but unconfirmed; not sent again");
                    return Some(Vec::new());
                }
                Err(MessagingError::ChatUnavailable(error)) => {
                    tracing::warn!(job_id = %job.id, %error, "the chat is gone; results not delivered");
                    return Some(Vec::new());
                }
                Err(error) => {
                    tracing::error!(job_id = %job.id, %error, "results not delivered for now; a rescue sends them again");
                    return None;
                }
            }
            attempt += 1;
        }
    }

    /// Another try after an upstream failure, or the end of the job when tries are used up.
    ///
    /// Failures are counted from the job's `attempts` (submissions storage recorded) and
    /// from this process's own count, whichever is higher, so a submit that fal refused
    /// outright (and storage may not count) still uses up a try.
    pub(crate) async fn retry_or_fail(&self, job: &Job, detail: String) {
        let ports = &self.inner.ports;
        let retry = self.inner.config.retry;
        let failures = {
            let mut seen = self.inner.failures.lock().unwrap();
            let count = seen.entry(job.id).or_insert(0);
            *count = (*count + 1).max(job.attempts);
            *count
        };
        if !retry.allows_retry(failures) {
            return self.end_failed(job, FailureReason::Upstream(detail)).await;
        }
        let now = ports.clock.now();
        let delay = chrono::TimeDelta::from_std(retry.delay(failures)).unwrap_or(chrono::TimeDelta::zero());
        let not_before = now.checked_add_signed(delay).unwrap_or(now);
        let Some(lease) = &job.lease else { return tracing::error!(job_id = %job.id, "retry without a lease") };
        let requeue = || ports.queue.requeue(job.id, lease, &detail, Some(not_before), now);
        match stored(&self.inner.config.retry, "requeue", requeue).await {
            Ok(_) => {
                bump(&self.inner.counters.retried);
                tracing::info!(failures, %not_before, "requeued for another try");
            }
            Err(StorageError::Conflict(why)) => tracing::info!(%why, "not requeued: the job moved on"),
            Err(error) => tracing::error!(%error, "requeue refused"),
        }
    }

    /// Ends a job without a result that fal did not bill (it never ran, or fal's 5xx):
    /// the user gets the hold back and is told why.
    pub(crate) async fn end_failed(&self, job: &Job, reason: FailureReason) {
        self.end_failed_billed(job, reason, false).await;
    }

    /// Ends a job without a result: the user gets the hold back (or is charged, for a
    /// content-policy refusal under a strict policy) and is told why. `fal_billed` when fal
    /// ran the job whatever happened after, so the ledger records fal's cost.
    pub(crate) async fn end_failed_billed(&self, job: &Job, reason: FailureReason, fal_billed: bool) {
        let config = &self.inner.config;
        let state = JobState::Failed { reason: reason.clone() };
        // The hold is the list price of the request: fal's bill for a run it charges.
        let settlement = settle(&state, job.hold, job.hold, fal_billed, config.settlement);
        let finish = Finish {
            lease: job.lease.clone(),
            state,
            settlement,
            media: Vec::new(),
            now: self.inner.ports.clock.now(),
        };
        if !self.finish(job, &finish).await {
            return;
        }
        tracing::warn!(
            job_id = %job.id,
            user = %job.user,
            model = %job.spec.model,
            reason = %reason,
            refunded = %settlement.user_refund,
            fal_cost = %settlement.fal_cost,
            "job failed"
        );
        self.inner.counters.count_outcome(&job.spec.model, job.state.account(), JobOutcome::Failed);
        let (language, _) = self.delivery_settings(job).await;
        let notice = UserNotice::Failed { job: job.id, reason, refunded: settlement.user_refund };
        self.report_final(job, language, notice).await;
    }

    /// Writes the terminal state and its settlement; true only for the call that ended
    /// the job (so only that one tells the user).
    pub(crate) async fn finish(&self, job: &Job, finish: &Finish) -> bool {
        let queue = &self.inner.ports.queue;
        let outcome = match stored(&self.inner.config.retry, "finish", || queue.finish(job.id, finish)).await {
            Ok(outcome) => outcome,
            Err(error) => {
                // Left to the rescue: the lease lapses with this task (or was taken over).
                tracing::error!(job_id = %job.id, %error, "finish refused; the job is left to the rescue");
                return false;
            }
        };
        self.forget(job);
        match outcome {
            FinishOutcome::Finished(_) => true,
            FinishOutcome::AlreadyFinished(existing) => {
                tracing::info!(state = %existing.state, "already finished; nothing delivered or charged again");
                false
            }
        }
    }

    /// Drops what this process kept about a job that ended.
    fn forget(&self, job: &Job) {
        self.inner.failures.lock().unwrap().remove(&job.id);
    }

    /// The user's language and whether they want files (defaults when storage fails).
    pub(crate) async fn delivery_settings(&self, job: &Job) -> (Language, bool) {
        if let Some(progress) = self.inner.messages.get(job.id) {
            let as_file = match self.inner.ports.users.get_user(job.user).await {
                Ok(Some(user)) => user.settings.send_as_file,
                _ => false,
            };
            return (progress.language, as_file);
        }
        match self.inner.ports.users.get_user(job.user).await {
            Ok(Some(user)) => (user.language, user.settings.send_as_file),
            _ => (Language::default(), false),
        }
    }

    /// Shows an intermediate state in the job's progress message, if this process has one.
    pub(crate) fn report_progress(&self, job: &Job, notice: UserNotice) {
        if let Some(ProgressMessage { message, language }) = self.inner.messages.get(job.id) {
            self.inner.throttle.edit(message, language, notice);
        }
    }

    /// Shows a final state: in the progress message when there is one (throttled, never
    /// dropped), else as a new message; once it went out, records the job as delivered.
    pub(crate) async fn report_final(&self, job: &Job, language: Language, notice: UserNotice) {
        match self.inner.messages.forget(job.id) {
            Some(ProgressMessage { message, language }) => {
                // Resolves once the edit went out (or was given up): only then is it delivered.
                let _ = self.inner.throttle.edit_confirmed(message, language, notice).await;
            }
            None => self.send_final_notice(job, language, &notice).await,
        }
        self.mark_delivered(job).await;
    }

    /// A final notice as a new message, waiting out the platform's back-offs.
    async fn send_final_notice(&self, job: &Job, language: Language, notice: &UserNotice) {
        let to = Recipient { chat: job.chat, language };
        let mut attempt = 1;
        loop {
            match self.inner.ports.messaging.send_notice(to, notice).await {
                Ok(_) => return,
                Err(MessagingError::Unconfirmed(error)) => {
                    tracing::warn!(%error, "final notice sent but unconfirmed; not sent again");
                    return;
                }
                Err(MessagingError::RateLimited { retry_after_secs }) => {
                    tokio::time::sleep(Duration::from_secs(u64::from(retry_after_secs.max(1)))).await;
                    continue;
                }
                Err(MessagingError::Other(error)) if attempt < ATTEMPTS => {
                    tracing::warn!(attempt, %error, "final notice failed; retrying");
                    tokio::time::sleep(self.inner.config.retry.delay(attempt)).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "final notice not delivered");
                    return;
                }
            }
            attempt += 1;
        }
    }

    /// Counts a success, and its times when it ran at fal.
    fn count_success(&self, job: &Job, done: Timestamp) {
        let counters = &self.inner.counters;
        counters.count_outcome(&job.spec.model, job.state.account(), JobOutcome::Succeeded);
        if let (Some(account), Some(submitted)) = (job.state.account(), job.submitted_at) {
            counters.observe_job(&job.spec.model, account, job.created_at, submitted, done);
        }
    }

    /// Records that the user was told how the job ended, so no rescue tells them again.
    ///
    /// Until it is recorded the job keeps its lease; if this process dies first, the
    /// rescue delivers the outcome again (at least once; the window is this one call).
    pub(crate) async fn mark_delivered(&self, job: &Job) {
        let ports = &self.inner.ports;
        let mark = || ports.queue.mark_delivered(job.id, job.lease.clone(), ports.clock.now());
        if let Err(error) = stored(&self.inner.config.retry, "mark_delivered", mark).await {
            tracing::warn!(job_id = %job.id, %error, "delivery not recorded");
        }
        // Nobody listening is fine.
        let _ = self.inner.ended.send(job.id);
    }

    /// Tells the user again how a finished job ended, when the process that finished it
    /// died before confirming the delivery (`Rescued::Redeliver`).
    ///
    /// Results whose Telegram file id is on record reached the user and are not sent
    /// again; the others are fetched again from fal's CDN and sent. Then the final notice.
    #[tracing::instrument(skip_all, fields(job_id = %job.id))]
    pub(crate) async fn redeliver(&self, job: Job, settlement: Settlement) {
        let ports = &self.inner.ports;
        let (language, as_file) = self.delivery_settings(&job).await;
        let notice = match &job.state {
            JobState::Succeeded if job.spec.kind == ModelKind::Llm => {
                match self.inner.prompts.cached_rewrite(&job.spec.prompt, ports.clock.now()).await {
                    Some(enhanced) => {
                        UserNotice::EnhancedPrompt { original: job.spec.prompt.as_str().to_owned(), enhanced }
                    }
                    None => UserNotice::Done { job: job.id, charged: settlement.user_charge },
                }
            }
            JobState::Succeeded => {
                let records = match ports.usage.media_for_job(job.id).await {
                    Ok(records) => records,
                    Err(error) => {
                        // Left undelivered: the lease stays ours until a restart rescues it.
                        tracing::warn!(%error, "media records unavailable; delivery postponed");
                        return;
                    }
                };
                let missing: Vec<MediaRecord> = records.into_iter().filter(|r| r.telegram_file_id.is_none()).collect();
                if !missing.is_empty() && !self.resend_results(&job, language, as_file, missing).await {
                    // Left undelivered: the lease lapses with this task and a later rescue tries again.
                    return;
                }
                UserNotice::Done { job: job.id, charged: settlement.user_charge }
            }
            JobState::Failed { reason } => {
                UserNotice::Failed { job: job.id, reason: reason.clone(), refunded: settlement.user_refund }
            }
            JobState::Canceled => UserNotice::Canceled { job: job.id, refunded: settlement.user_refund },
            other => {
                tracing::error!(state = %other, "asked to deliver a job that is not finished");
                return;
            }
        };
        tracing::info!("delivering the outcome of a job whose deliverer died");
        self.report_final(&job, language, notice).await;
    }

    /// Fetches results again from fal's CDN and sends them, recording their file ids;
    /// false when they could not be sent for now (the job stays undelivered).
    async fn resend_results(&self, job: &Job, language: Language, as_file: bool, records: Vec<MediaRecord>) -> bool {
        let mut files = Vec::with_capacity(records.len());
        for record in &records {
            let media = OutputMedia {
                url: record.fal_url.clone(),
                content_type: record.content_type.clone(),
                width: None,
                height: None,
                file_size: record.size_bytes,
            };
            match self.download(&media).await {
                Ok(bytes) => files.push(bytes),
                Err(error) => {
                    tracing::error!(%error, "a result could not be fetched again; the user gets the notice only");
                    return true;
                }
            }
        }
        let recipient = Recipient { chat: job.chat, language };
        let Some(delivered) = self.deliver(job, recipient, files, as_file).await else {
            return false;
        };
        for (record, sent) in records.into_iter().zip(delivered) {
            let record = MediaRecord { telegram_file_id: Some(sent.file_id), ..record };
            if let Err(error) = self.inner.ports.usage.save_media(&record).await {
                tracing::warn!(%error, "media record not saved");
            }
        }
        true
    }
}

/// The settlement of a cancel: the hold back, and fal's bill when it had started.
pub(crate) fn cancel_settlement(job: &Job, ran_at_fal: bool, policy: mediagen_domain::SettlementPolicy) -> Settlement {
    settle(&JobState::Canceled, job.hold, job.hold, ran_at_fal, policy)
}
