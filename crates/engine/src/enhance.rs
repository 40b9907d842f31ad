//! Prompt enhancement: the prompt helper (an LLM behind the `Generation` port) rewrites a
//! prompt, and the rewrite is cached per LLM model and normalized prompt, so asking again
//! costs nothing.

use crate::Engine;
use crate::stats::bump;
use mediagen_domain::catalog::PriceRequest;
use mediagen_domain::{AccountId, ChatId, Language, ModelKind, Money, Prompt, UserId};
use mediagen_ports::{GenerationError, GenerationRequest, LlmParams, Recipient, Refusal, UserNotice};
use sha2::{Digest, Sha256};

/// The longest a prompt rewrite may take at fal, queued and running.
const LLM_DEADLINE: std::time::Duration = std::time::Duration::from_secs(90);

/// The `/enhance` command: rewrite a prompt and show it, without generating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnhanceRequest {
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
    /// The rewrite.
    Enhanced {
        /// The prompt as validated.
        original: String,
        /// The LLM's rewrite.
        enhanced: String,
        /// Served from the cache, without an LLM call.
        cached: bool,
    },
    /// Not attempted, for this reason.
    Refused(Refusal),
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

impl Engine {
    /// Rewrites a prompt for the `/enhance` command and sends the result
    /// (`UserNotice::EnhancedPrompt`), or a refusal.
    #[tracing::instrument(skip_all, fields(user = %request.user))]
    pub async fn enhance(&self, request: EnhanceRequest) -> EnhanceOutcome {
        let ports = &self.inner.ports;
        let mut recipient = Recipient { chat: request.chat, language: request.language };
        let outcome = match self.enhance_checked(&request, &mut recipient).await {
            Ok((original, enhanced)) => EnhanceOutcome::Enhanced {
                original: original.as_str().to_owned(),
                enhanced: enhanced.text,
                cached: enhanced.cached,
            },
            Err(refusal) => EnhanceOutcome::Refused(refusal),
        };
        let notice = match &outcome {
            EnhanceOutcome::Enhanced { original, enhanced, .. } => {
                UserNotice::EnhancedPrompt { original: original.clone(), enhanced: enhanced.clone() }
            }
            EnhanceOutcome::Refused(refusal) => UserNotice::Refused(refusal.clone()),
        };
        if let Err(error) = ports.messaging.send_notice(recipient, &notice).await {
            tracing::warn!(%error, "enhancement reply not delivered");
        }
        outcome
    }

    async fn enhance_checked(
        &self,
        request: &EnhanceRequest,
        recipient: &mut Recipient,
    ) -> Result<(Prompt, Enhanced), Refusal> {
        match self.inner.ports.users.get_user(request.user).await {
            Ok(Some(user)) if user.blocked => return Err(Refusal::Blocked),
            Ok(Some(user)) => recipient.language = user.language,
            Ok(None) => {}
            Err(error) => {
                tracing::error!(%error, "storage failed at /enhance");
                return Err(Refusal::TemporarilyUnavailable);
            }
        }
        let prompt = Prompt::parse(&request.prompt).map_err(|e| Refusal::BadPrompt(e.to_string()))?;
        let Some(account) = self.any_usable_account().await else {
            return Err(Refusal::TemporarilyUnavailable);
        };
        match self.enhance_prompt(&prompt, &account).await {
            Ok(enhanced) => Ok((prompt, enhanced)),
            Err(error) => {
                tracing::warn!(%error, "prompt enhancement failed");
                Err(Refusal::TemporarilyUnavailable)
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
        let catalog = &self.inner.config.catalog;
        let llm = catalog.llm();
        if !catalog.llm_model().enabled {
            return Err(EnhanceError::Disabled);
        }
        let key = cache_key(&llm.model, &llm.system_prompt, prompt);
        let now = ports.clock.now();
        match ports.prompt_cache.cache_get(&key, now).await {
            Ok(Some(text)) => {
                bump(&self.inner.counters.cache_hits);
                return Ok(Enhanced { text, cached: true, cost: Money::ZERO });
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "prompt cache unavailable; treated as a miss"),
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
        let expires_at = now.checked_add_signed(llm.cache_ttl()).unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        if let Err(error) = ports.prompt_cache.cache_put(&key, &text, expires_at).await {
            tracing::warn!(%error, "enhanced prompt not cached");
        }
        Ok(Enhanced { text, cached: false, cost })
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
            llm: Some(LlmParams {
                model: llm.model.clone(),
                system_prompt: llm.system_prompt.clone(),
                max_tokens: llm.max_output_tokens,
            }),
        };
        let handle = generation.submit(account, &request).await?;
        let until = crate::dispatch::deadline(self.inner.ports.clock.now(), LLM_DEADLINE);
        let output = generation.wait(&handle, until).await?;
        let text = output.text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).ok_or(EnhanceError::Empty)?;
        // The real token counts when the router reports them, the intake estimate otherwise.
        let mut priced = PriceRequest::for_enhancement(prompt, catalog);
        if let Some(usage) = output.usage {
            priced.input_tokens = usage.input_tokens;
            priced.output_tokens = usage.output_tokens;
        }
        let cost = catalog.price(&priced).unwrap_or_else(|error| {
            tracing::error!(%error, "prompt helper cannot be priced");
            Money::ZERO
        });
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
