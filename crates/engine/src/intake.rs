//! Intake: a request from any front end becomes a queued job with a credit hold, or a
//! refusal that says why.

use crate::progress::ProgressMessage;
use crate::stats::Counters;
use crate::stats::bump;
use crate::{EngineConfig, Follower, Operator, Prompts, Shared};
use mediagen_domain::catalog::{ModelSpec, PricingError};
use mediagen_domain::scheduler::estimated_wait;
use mediagen_domain::{
    ChatId, IdempotencyKey, ImageSize, JobId, JobSpec, Language, MediaRef, ModelId, ModelKind, Money, Prompt, Role,
    User, UserId,
};
use mediagen_ports::{
    Clock, EnqueueOutcome, EnqueueRequest, Generation, JobQueue, Messaging, NewUser, Recipient, Refusal, StorageError,
    UserNotice, UserStore,
};
use std::sync::Arc;
use std::time::Duration;

/// A request for a generation, already turned into domain terms by the front end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeRequest {
    /// Makes a redelivered update harmless.
    pub key: IdempotencyKey,
    /// Who asks.
    pub user: UserId,
    /// Where to answer.
    pub chat: ChatId,
    /// The language to answer in (the user's stored language wins once they exist).
    pub language: Language,
    /// The model asked for; `None` picks the edit model for photos, else the user's
    /// default or the catalog's.
    pub model: Option<ModelId>,
    /// The prompt as typed (validated here).
    pub prompt: String,
    /// The size asked for; `None` uses the user's default when the model offers it, else
    /// the model's.
    pub size: Option<ImageSize>,
    /// Images wanted; clamped to what the model makes (1 for non-image models).
    pub num_images: u8,
    /// Input images (for edits and references).
    pub input_media: Vec<MediaRef>,
    /// A fixed seed.
    pub seed: Option<u64>,
    /// Rewrite the prompt with the LLM first; `None` follows the user's setting.
    pub enhance: Option<bool>,
}

/// What intake did with a request (the user has been told already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeOutcome {
    /// In the queue with a hold of `price`.
    Queued {
        /// The new job.
        job: JobId,
        /// 1-based place in the queue.
        position: u32,
        /// Jobs waiting in total.
        total: u32,
        /// Estimated wait; `None` when no account can take work now.
        eta: Option<Duration>,
        /// Credit held.
        price: Money,
    },
    /// The same request was seen before: nothing new was queued or held, nothing sent.
    Duplicate {
        /// The job made the first time.
        job: JobId,
    },
    /// Not accepted, for this reason.
    Refused(Refusal),
}

/// The ports intake needs.
#[derive(Clone)]
pub struct IntakePorts {
    /// Enqueue with the quota check and hold; cancel.
    pub queue: Arc<dyn JobQueue>,
    /// The user writing, created on first contact.
    pub users: Arc<dyn UserStore>,
    /// Acknowledgements and refusals.
    pub messaging: Arc<dyn Messaging>,
    /// Cancels at fal.
    pub generation: Arc<dyn Generation>,
    /// The instant of every write.
    pub clock: Arc<dyn Clock>,
}

/// What users ask for: a generation, a prompt rewrite, a cancel. Turns each into a
/// queued job with a hold (or a refusal that says why), and tells the user.
#[derive(Clone)]
pub struct Intake {
    pub(crate) inner: Arc<IntakeInner>,
}

pub(crate) struct IntakeInner {
    pub(crate) ports: IntakePorts,
    pub(crate) config: Arc<EngineConfig>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) wake: Arc<tokio::sync::Notify>,
    /// Holds the acknowledgement as the job's progress message, and ends cancels.
    pub(crate) follower: Follower,
    /// The wait estimate's capacity.
    pub(crate) operator: Operator,
    /// Cached rewrites for `/enhance`.
    pub(crate) prompts: Prompts,
}

impl Intake {
    pub(crate) fn new(
        ports: IntakePorts,
        shared: Shared,
        follower: Follower,
        operator: Operator,
        prompts: Prompts,
    ) -> Self {
        let inner = IntakeInner {
            ports,
            config: shared.config,
            counters: shared.counters,
            wake: shared.wake,
            follower,
            operator,
            prompts,
        };
        Self { inner: Arc::new(inner) }
    }

    /// Validates, prices and enqueues a request, and tells the user the outcome: a
    /// `Queued` acknowledgement (position, wait, price) or a `Refused` notice.
    ///
    /// The quota is checked by `JobQueue::enqueue` in the same transaction that takes the
    /// hold, so two simultaneous requests cannot both pass a cap of one. A storage outage
    /// becomes `Refusal::TemporarilyUnavailable`: the user is told, nothing is half-written.
    #[tracing::instrument(skip_all, fields(user = %request.user))]
    pub async fn submit(&self, request: IntakeRequest) -> IntakeOutcome {
        let recipient = Recipient { chat: request.chat, language: request.language };
        let (outcome, language) = match self.intake(&request).await {
            Ok(accepted) => accepted,
            Err(refusal) => (IntakeOutcome::Refused(refusal), request.language),
        };
        let recipient = Recipient { language, ..recipient };
        self.announce(recipient, &outcome).await;
        outcome
    }

    /// Tells the user what intake did: the `Queued` acknowledgement (kept as the job's
    /// progress message) or the refusal. A duplicate says nothing: the first one did.
    pub(crate) async fn announce(&self, recipient: Recipient, outcome: &IntakeOutcome) {
        let language = recipient.language;
        match outcome {
            IntakeOutcome::Queued { job, position, total, eta, price } => {
                bump(&self.inner.counters.accepted);
                let eta_secs = eta.map_or(0, |eta| u32::try_from(eta.as_secs()).unwrap_or(u32::MAX));
                let notice =
                    UserNotice::Queued { job: *job, position: *position, total: *total, eta_secs, price: *price };
                match self.inner.ports.messaging.send_notice(recipient, &notice).await {
                    Ok(message) => self.inner.follower.remember_message(*job, ProgressMessage { message, language }),
                    Err(error) => tracing::warn!(job = %job, %error, "acknowledgement not delivered"),
                }
                self.inner.wake.notify_one();
            }
            IntakeOutcome::Duplicate { job } => tracing::info!(job = %job, "duplicate request ignored"),
            IntakeOutcome::Refused(refusal) => {
                bump(&self.inner.counters.refused);
                let notice = UserNotice::Refused(refusal.clone());
                if let Err(error) = self.inner.ports.messaging.send_notice(recipient, &notice).await {
                    tracing::warn!(%error, "refusal not delivered");
                }
            }
        }
    }

    /// The checks and the enqueue; the language is the user's stored one.
    async fn intake(&self, request: &IntakeRequest) -> Result<(IntakeOutcome, Language), Refusal> {
        let ports = &self.inner.ports;
        let config = &self.inner.config;
        let now = ports.clock.now();
        let user = self.user_for(request.user, request.language).await.map_err(unavailable)?;
        if user.blocked {
            return Err(Refusal::Blocked);
        }
        let model = self.pick_model(request, &user)?;
        // Files first: a user who fixes the caption should not then learn the photo is too big.
        check_inputs(request, model)?;
        let prompt = Prompt::parse(&request.prompt).map_err(|e| Refusal::BadPrompt(e.to_string()))?;
        let spec = self.job_spec(request, &user, model, prompt)?;
        let price = config.catalog.estimate(&spec).map_err(|e| pricing_refusal(e, &spec.model))?;
        let outcome = self.enqueue_job(request.key.clone(), &user, request.chat, spec, price, now).await?;
        Ok((outcome, user.language))
    }

    /// Queues `spec` for `user` with a hold of `price`. The quota (daily jobs, monthly
    /// spend, jobs in flight and queued) is checked by storage in the same transaction
    /// that takes the hold.
    pub(crate) async fn enqueue_job(
        &self,
        key: IdempotencyKey,
        user: &User,
        chat: ChatId,
        spec: JobSpec,
        price: Money,
        now: mediagen_domain::Timestamp,
    ) -> Result<IntakeOutcome, Refusal> {
        let ports = &self.inner.ports;
        let config = &self.inner.config;
        let plan = config.plans.get(&user.plan).unwrap_or_else(|| config.plans.default_plan()).clone();
        let enqueue = EnqueueRequest { key, user: user.id, chat, spec, hold: price, plan, role: user.role, now };
        Ok(match ports.queue.enqueue(&enqueue).await.map_err(unavailable)? {
            EnqueueOutcome::Enqueued(job, place) => {
                let capacity = self.inner.operator.running_capacity().await;
                let mean = chrono::TimeDelta::from_std(config.mean_service).unwrap_or(chrono::TimeDelta::MAX);
                let eta =
                    estimated_wait(place.position.saturating_sub(1), capacity, mean).and_then(|d| d.to_std().ok());
                IntakeOutcome::Queued { job: job.id, position: place.position, total: place.total, eta, price }
            }
            EnqueueOutcome::Duplicate(job) => IntakeOutcome::Duplicate { job: job.id },
            EnqueueOutcome::Refused(quota) => IntakeOutcome::Refused(Refusal::Quota(quota)),
        })
    }

    /// The stored user, created on first contact with the default plan.
    pub(crate) async fn user_for(&self, id: UserId, language: Language) -> Result<User, StorageError> {
        let users = &self.inner.ports.users;
        if let Some(user) = users.get_user(id).await? {
            return Ok(user);
        }
        let new = NewUser { id, language, plan: self.inner.config.plans.default_plan().name.clone(), role: Role::User };
        users.upsert_user(&new).await
    }

    /// The model the request runs on: named, else the edit model for photos, else the
    /// user's default, else the catalog's. A named model must exist and be enabled; a
    /// saved default that was disabled since falls back to the catalog's.
    fn pick_model(&self, request: &IntakeRequest, user: &User) -> Result<&ModelSpec, Refusal> {
        let catalog = &self.inner.config.catalog;
        let offered = |id: &ModelId| catalog.get(id).filter(|m| m.enabled && m.kind != ModelKind::Llm);
        match &request.model {
            Some(id) => offered(id).ok_or_else(|| Refusal::UnknownModel(id.clone())),
            None if !request.input_media.is_empty() => Ok(catalog.edit_model()),
            None => {
                Ok(user.settings.default_model.as_ref().and_then(offered).unwrap_or_else(|| catalog.default_model()))
            }
        }
    }

    /// The job as it will be queued, checked against the model's size and image limits.
    fn job_spec(
        &self,
        request: &IntakeRequest,
        user: &User,
        model: &ModelSpec,
        prompt: Prompt,
    ) -> Result<JobSpec, Refusal> {
        let catalog = &self.inner.config.catalog;
        let asked = request.size.or(user.settings.default_size.filter(|size| model.allows_size(*size)));
        let size = if model.sizes.is_empty() && request.size.is_none() {
            None
        } else {
            model.resolve_size(asked).map_err(|e| pricing_refusal(e, &model.id))?
        };
        let num_images = if model.kind.makes_images() {
            let max = u8::try_from(model.max_images).unwrap_or(u8::MAX).max(1);
            request.num_images.clamp(1, max)
        } else {
            1
        };
        // Rewriting the text of a speech request would change what is said: images only.
        let enhance = request.enhance.unwrap_or(user.settings.enhance_prompts)
            && model.kind.makes_images()
            && catalog.llm_model().enabled;
        Ok(JobSpec {
            model: model.id.clone(),
            kind: model.kind,
            prompt,
            size,
            num_images,
            input_media: request.input_media.clone(),
            seed: request.seed,
            enhance_prompt: enhance,
        })
    }
}

pub(crate) fn unavailable(error: StorageError) -> Refusal {
    tracing::error!(%error, "storage failed at intake");
    Refusal::TemporarilyUnavailable
}

/// The user-facing reason for a request the catalog cannot price.
pub(crate) fn pricing_refusal(error: PricingError, model: &ModelId) -> Refusal {
    match error {
        PricingError::SizeNotAllowed { size, allowed, .. } => Refusal::SizeNotAllowed {
            requested: size.to_string(),
            allowed: allowed.iter().map(ToString::to_string).collect(),
        },
        PricingError::TooManyInputImages { given, max, .. } => Refusal::TooManyImages { given, max },
        PricingError::InputTooLarge { bytes, max, .. } => Refusal::FileTooLarge { size: bytes, max },
        PricingError::UnknownModel(id) | PricingError::ModelDisabled(id) => Refusal::UnknownModel(id),
        other => {
            // A price table that cannot price an allowed request is the operator's to fix.
            tracing::error!(%model, error = %other, "request could not be priced");
            Refusal::UnknownModel(model.clone())
        }
    }
}

/// The input files against the model's limits: how many, and how large each may be.
fn check_inputs(request: &IntakeRequest, model: &ModelSpec) -> Result<(), Refusal> {
    let given = u32::try_from(request.input_media.len()).unwrap_or(u32::MAX);
    if given > model.max_input_images {
        return Err(Refusal::TooManyImages { given, max: model.max_input_images });
    }
    if let Some(max) = model.max_input_bytes
        && let Some(size) = request.input_media.iter().filter_map(|m| m.size_bytes).find(|&b| b > max)
    {
        return Err(Refusal::FileTooLarge { size, max });
    }
    Ok(())
}
