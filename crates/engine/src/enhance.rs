//! Prompt enhancement: the prompt helper (an LLM behind the `Generation` port) rewrites a
//! prompt, and the rewrite is cached per LLM model and normalized prompt, so asking again
//! costs nothing.
//!
//! Every LLM call is paid for: inside a generation job its price is part of the job's
//! hold and charge; the `/enhance` command queues the call as a job of its own, so it is
//! held, charged at its real token price, counted against quotas and shown in reports
//! like any generation.

use crate::intake::{IntakeOutcome, pricing_refusal, unavailable};
use crate::stats::Counters;
use crate::stats::bump;
use crate::{EngineConfig, Intake, Shared};
use mediagen_domain::catalog::PriceRequest;
use mediagen_domain::{
    AccountId, ChatId, IdempotencyKey, JobId, JobSpec, JobState, Language, ModelKind, Money, Prompt, UserId,
};
use mediagen_ports::{
    Clock, Generation, GenerationError, GenerationRequest, LlmParams, PromptCache, Recipient, Refusal, UserNotice,
};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The longest a prompt rewrite may take at fal, queued and running.
const LLM_DEADLINE: std::time::Duration = std::time::Duration::from_secs(90);
/// How often a waiter for a rewrite asks storage, for jobs another process finishes.
const REWRITE_RECHECK: std::time::Duration = std::time::Duration::from_secs(3);

/// The `/enhance` command: rewrite a prompt and show it, without generating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnhanceRequest {
    /// Makes a redelivered update harmless.
    pub key: IdempotencyKey,
    /// Who asks.
    pub user: UserId,
    /// Where to answer.
    pub chat: ChatId,
    /// The language to answer in.
    pub language: Language,
    /// The prompt as typed.
    pub prompt: String,
}

/// What `/enhance` did (the user has been told already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnhanceOutcome {
    /// The rewrite, from the cache: free, no LLM call.
    Cached {
        /// The prompt as validated.
        original: String,
        /// The cached rewrite.
        enhanced: String,
    },
    /// The LLM call is queued as a job with a hold of `price`, like a generation: fair
    /// turns, quotas, settlement at the real price and reports. The rewrite is shown
    /// when it ends; [`Intake::await_rewrite`] waits for it.
    Queued {
        /// The job that makes the call.
        job: JobId,
        /// Credit held.
        price: Money,
    },
    /// The same request was seen before: nothing new was queued or held, nothing sent.
    Duplicate {
        /// The job made the first time.
        job: JobId,
    },
    /// Not attempted, for this reason.
    Refused(Refusal),
}

/// How `/enhance` went before the user is told: a cache hit, or what intake did.
enum EnhanceStep {
    Cached { original: String, enhanced: String },
    Intake(IntakeOutcome),
}

/// A rewrite and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Enhanced {
    pub(crate) text: String,
    pub(crate) cached: bool,
    /// The LLM call's list price; zero for a cache hit.
    pub(crate) cost: Money,
}

/// Why a rewrite was not obtained.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EnhanceError {
    /// The prompt helper is disabled in the catalog.
    #[error("the prompt helper is disabled")]
    Disabled,
    /// The LLM call failed.
    #[error(transparent)]
    Upstream(#[from] GenerationError),
    /// The LLM answered nothing usable.
    #[error("the prompt helper answered with no text")]
    Empty,
}

/// The cache key: the LLM model and a hash of its instructions and the normalized prompt.
///
/// The system prompt is hashed in too, so changing the instructions does not serve
/// rewrites made under the old ones.
pub(crate) fn cache_key(llm_model: &str, system_prompt: &str, prompt: &Prompt) -> String {
    let mut hash = Sha256::new();
    hash.update(system_prompt.as_bytes());
    hash.update([0]);
    hash.update(prompt.normalized().as_bytes());
    format!("enhance:{llm_model}:{}", hex::encode(hash.finalize()))
}

impl Intake {
    /// The `/enhance` command: a cached rewrite is shown at once and costs nothing; any
    /// other is an LLM call queued as a job (`EnhanceOutcome::Queued`), held, charged at
    /// its real price and shown when it ends. The user is told what happened.
    #[tracing::instrument(skip_all, fields(user = %request.user))]
    pub async fn enhance(&self, request: EnhanceRequest) -> EnhanceOutcome {
        let recipient = Recipient { chat: request.chat, language: request.language };
        let (step, language) = match self.enhance_intake(&request).await {
            Ok(done) => done,
            Err(refusal) => (EnhanceStep::Intake(IntakeOutcome::Refused(refusal)), request.language),
        };
        let recipient = Recipient { language, ..recipient };
        match step {
            EnhanceStep::Cached { original, enhanced } => {
                let notice = UserNotice::EnhancedPrompt { original: original.clone(), enhanced: enhanced.clone() };
                if let Err(error) = self.inner.ports.messaging.send_notice(recipient, &notice).await {
                    tracing::warn!(%error, "enhancement reply not delivered");
                }
                EnhanceOutcome::Cached { original, enhanced }
            }
            EnhanceStep::Intake(intake) => {
                // Told exactly as a generation request is (position, wait, price or refusal).
                self.announce(recipient, &intake).await;
                match intake {
                    IntakeOutcome::Queued { job, price, .. } => EnhanceOutcome::Queued { job, price },
                    IntakeOutcome::Duplicate { job } => EnhanceOutcome::Duplicate { job },
                    IntakeOutcome::Refused(refusal) => EnhanceOutcome::Refused(refusal),
                }
            }
        }
    }

    /// The checks, the cache and the enqueue; the language is the user's stored one.
    async fn enhance_intake(&self, request: &EnhanceRequest) -> Result<(EnhanceStep, Language), Refusal> {
        let ports = &self.inner.ports;
        let catalog = &self.inner.config.catalog;
        let now = ports.clock.now();
        let user = self.user_for(request.user, request.language).await.map_err(unavailable)?;
        if user.blocked {
            return Err(Refusal::Blocked);
        }
        let prompt = Prompt::parse(&request.prompt).map_err(|e| Refusal::BadPrompt(e.to_string()))?;
        let llm = catalog.llm();
        if !catalog.llm_model().enabled {
            return Err(Refusal::UnknownModel(llm.endpoint.clone()));
        }
        if let Some(text) = self.inner.prompts.cached_rewrite(&prompt, now).await {
            bump(&self.inner.counters.cache_hits);
            let step = EnhanceStep::Cached { original: prompt.as_str().to_owned(), enhanced: text };
            return Ok((step, user.language));
        }
        let spec = JobSpec {
            model: llm.endpoint.clone(),
            kind: ModelKind::Llm,
            prompt,
            size: None,
            num_images: 1,
            input_media: Vec::new(),
            seed: None,
            enhance_prompt: false,
        };
        let price = catalog.estimate(&spec).map_err(|e| pricing_refusal(e, &spec.model))?;
        let intake = self.enqueue_job(request.key.clone(), &user, request.chat, spec, price, now).await?;
        Ok((EnhanceStep::Intake(intake), user.language))
    }

    /// The rewrite a queued `/enhance` job made, once it ended; `None` when it ended
    /// without one (the user was told why) or did not end within the follow deadline.
    ///
    /// Woken by this process finishing the job, and asks storage every few seconds, so
    /// a job another process (or a restart) finished is seen too.
    pub async fn await_rewrite(&self, job: JobId) -> Option<String> {
        let ports = &self.inner.ports;
        let mut ended = self.inner.follower.ended();
        let give_up = tokio::time::Instant::now() + self.inner.config.follow_deadline + LLM_DEADLINE;
        loop {
            let stored = ports.queue.get_job(job).await.unwrap_or_else(|error| {
                tracing::debug!(%error, "job unavailable while waiting for a rewrite");
                None
            });
            if let Some(stored) = stored {
                match stored.state {
                    JobState::Succeeded => {
                        return self.inner.prompts.cached_rewrite(&stored.spec.prompt, ports.clock.now()).await;
                    }
                    state if state.is_terminal() => return None,
                    _ => {}
                }
            }
            let wake = tokio::time::Instant::now() + REWRITE_RECHECK;
            tokio::select! {
                () = tokio::time::sleep_until(wake.min(give_up)) => {}
                // Some job ended here (or many did): look again.
                _ = ended.recv() => {}
            }
            if tokio::time::Instant::now() >= give_up {
                return None;
            }
        }
    }
}

/// The ports the prompt helper needs.
#[derive(Clone)]
pub struct PromptPorts {
    /// The LLM call.
    pub generation: Arc<dyn Generation>,
    /// Rewrites kept for the same prompt.
    pub prompt_cache: Arc<dyn PromptCache>,
    /// Cache expiry and the call's deadline.
    pub clock: Arc<dyn Clock>,
}

/// The prompt helper: rewrites through the LLM, their cache and their price. Stateless
/// beyond the cache behind its port; intake, dispatch and following all use it.
#[derive(Clone)]
pub struct Prompts {
    inner: Arc<PromptsInner>,
}

struct PromptsInner {
    ports: PromptPorts,
    config: Arc<EngineConfig>,
    counters: Arc<Counters>,
}

impl Prompts {
    pub(crate) fn new(ports: PromptPorts, shared: Shared) -> Self {
        Self { inner: Arc::new(PromptsInner { ports, config: shared.config, counters: shared.counters }) }
    }

    pub(crate) async fn cached_rewrite(&self, prompt: &Prompt, now: mediagen_domain::Timestamp) -> Option<String> {
        let llm = self.inner.config.catalog.llm();
        let key = cache_key(&llm.model, &llm.system_prompt, prompt);
        match self.inner.ports.prompt_cache.cache_get(&key, now).await {
            Ok(hit) => hit,
            Err(error) => {
                tracing::warn!(%error, "prompt cache unavailable; treated as a miss");
                None
            }
        }
    }

    /// The prompt a job runs with: the rewrite, or the original when enhancement fails
    /// (logged, counted; the job goes on).
    pub(crate) async fn prompt_for_job(&self, prompt: &Prompt, account: &AccountId) -> (String, Money) {
        match self.enhance_prompt(prompt, account).await {
            Ok(enhanced) => (enhanced.text, enhanced.cost),
            Err(error) => {
                tracing::warn!(%error, "prompt enhancement failed; the original prompt is used");
                (prompt.as_str().to_owned(), Money::ZERO)
            }
        }
    }

    /// The cached rewrite, or a fresh one from the LLM on `account` (then cached).
    pub(crate) async fn enhance_prompt(&self, prompt: &Prompt, account: &AccountId) -> Result<Enhanced, EnhanceError> {
        let ports = &self.inner.ports;
        if !self.inner.config.catalog.llm_model().enabled {
            return Err(EnhanceError::Disabled);
        }
        let now = ports.clock.now();
        if let Some(text) = self.cached_rewrite(prompt, now).await {
            bump(&self.inner.counters.cache_hits);
            return Ok(Enhanced { text, cached: true, cost: Money::ZERO });
        }
        bump(&self.inner.counters.cache_misses);
        let result = self.call_llm(prompt, account).await;
        let (text, cost) = match result {
            Ok(done) => done,
            Err(error) => {
                bump(&self.inner.counters.enhance_failures);
                return Err(error);
            }
        };
        self.cache_rewrite(prompt, &text, now).await;
        Ok(Enhanced { text, cached: false, cost })
    }

    /// The prompt helper's model, instructions and output bound, from the catalog.
    pub(crate) fn llm_params(&self) -> LlmParams {
        let llm = self.inner.config.catalog.llm();
        LlmParams {
            model: llm.model.clone(),
            system_prompt: llm.system_prompt.clone(),
            max_tokens: llm.max_output_tokens,
        }
    }

    /// Keeps a rewrite for the catalog's TTL, so asking again costs nothing.
    pub(crate) async fn cache_rewrite(&self, prompt: &Prompt, text: &str, now: mediagen_domain::Timestamp) {
        let llm = self.inner.config.catalog.llm();
        let key = cache_key(&llm.model, &llm.system_prompt, prompt);
        let expires_at = now.checked_add_signed(llm.cache_ttl()).unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        if let Err(error) = self.inner.ports.prompt_cache.cache_put(&key, text, expires_at).await {
            tracing::warn!(%error, "enhanced prompt not cached");
        }
    }

    /// The list price of rewriting `prompt`: the real token counts when the router
    /// reports them, the intake estimate otherwise.
    pub(crate) fn rewrite_price(&self, prompt: &Prompt, usage: Option<mediagen_ports::TokenUsage>) -> Option<Money> {
        let catalog = &self.inner.config.catalog;
        let mut priced = PriceRequest::for_enhancement(prompt, catalog);
        if let Some(usage) = usage {
            priced.input_tokens = usage.input_tokens;
            priced.output_tokens = usage.output_tokens;
        }
        catalog.price(&priced).inspect_err(|error| tracing::error!(%error, "prompt helper cannot be priced")).ok()
    }

    async fn call_llm(&self, prompt: &Prompt, account: &AccountId) -> Result<(String, Money), EnhanceError> {
        let generation = &self.inner.ports.generation;
        let catalog = &self.inner.config.catalog;
        let llm = catalog.llm();
        let request = GenerationRequest {
            model: llm.endpoint.clone(),
            kind: ModelKind::Llm,
            prompt: prompt.as_str().to_owned(),
            size: None,
            num_images: 1,
            seed: None,
            input_image_urls: Vec::new(),
            llm: Some(self.llm_params()),
        };
        let handle = generation.submit(account, &request).await?;
        let until = crate::dispatch::deadline(self.inner.ports.clock.now(), LLM_DEADLINE);
        let output = generation.wait(&handle, until).await?;
        let text = output.text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).ok_or(EnhanceError::Empty)?;
        let cost = self.rewrite_price(prompt, output.usage).unwrap_or(Money::ZERO);
        Ok((text, cost))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_ignores_case_and_spacing_but_not_the_model_or_instructions() {
        let a = Prompt::parse("A  Cat on a MAT").unwrap();
        let b = Prompt::parse("a cat on a mat").unwrap();
        let key = cache_key("gemini", "rewrite", &a);
        assert_eq!(key, cache_key("gemini", "rewrite", &b));
        assert!(key.starts_with("enhance:gemini:"));
        assert_ne!(key, cache_key("gpt", "rewrite", &a));
        assert_ne!(key, cache_key("gemini", "rewrite better", &a));
        assert_ne!(key, cache_key("gemini", "rewrite", &Prompt::parse("a dog").unwrap()));
    }
}
