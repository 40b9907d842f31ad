//! A job and its life: an explicit state machine and what each ending costs whom.

use crate::ids::{AccountId, ChatId, JobId, RequestId, UserId};
use crate::model::{ImageSize, ModelId, ModelKind};
use crate::money::Money;
use crate::prompt::Prompt;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// An input image or audio held by the front end (for Telegram: a file id).
///
/// Deliberately not a URL: a Telegram file URL carries the bot token, so the engine
/// fetches the bytes through the messaging port and uploads them to fal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MediaRef {
    /// The front end's handle for the file.
    pub file_id: String,
    /// Size in bytes when the front end knows it, to refuse oversized files early.
    pub size_bytes: Option<u64>,
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The catalog entry to run.
    pub model: ModelId,
    /// The model's kind, copied from the catalog at intake.
    pub kind: ModelKind,
    /// The prompt (for TTS, the text to speak).
    pub prompt: Prompt,
    /// Output size for image models.
    pub size: Option<ImageSize>,
    /// Images to produce (1 for non-image models).
    pub num_images: u8,
    /// Input images for edits.
    pub input_media: Vec<MediaRef>,
    /// A fixed seed, or `None` for a fresh one.
    pub seed: Option<u64>,
    /// Rewrite the prompt with the LLM before generating.
    pub enhance_prompt: bool,
}

/// Why a job ended without a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum FailureReason {
    /// fal's content checker refused the prompt or the output. Never retried.
    ContentPolicy,
    /// fal answered 422 for another reason (e.g. an input image it could not load).
    InvalidInput(String),
    /// 5xx, 429 or a network failure that outlived our retries. fal does not charge these.
    Upstream(String),
    /// Every usable account is locked or out of balance.
    AccountLocked,
    /// The job waited or ran longer than allowed.
    Timeout,
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::ContentPolicy => f.write_str("refused by the content checker"),
            FailureReason::InvalidInput(detail) => write!(f, "the model rejected the input: {detail}"),
            FailureReason::Upstream(detail) => write!(f, "the image service failed: {detail}"),
            FailureReason::AccountLocked => f.write_str("no fal account can take work right now"),
            FailureReason::Timeout => f.write_str("it took too long"),
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    /// Waiting in our queue.
    Queued,
    /// Claimed by a dispatcher for an account; not yet accepted by fal.
    Dispatching {
        /// The account it will be submitted on.
        account: AccountId,
    },
    /// Accepted into fal's queue: from here it is never resubmitted blindly.
    Submitted {
        /// The account it runs on.
        account: AccountId,
        /// fal's id for it.
        request_id: RequestId,
    },
    /// fal reports it IN_PROGRESS.
    Running {
        /// The account it runs on.
        account: AccountId,
        /// fal's id for it.
        request_id: RequestId,
    },
    /// Done, result delivered.
    Succeeded,
    /// Ended without a result.
    Failed {
        /// Why.
        reason: FailureReason,
    },
    /// Canceled by the user or an operator.
    Canceled,
}

/// Something that happens to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    /// A dispatcher took it for an account.
    Claimed(AccountId),
    /// fal accepted it.
    Submitted(RequestId),
    /// fal started running it.
    Started,
    /// Back to our queue: submit refused before acceptance, owner died before submit,
    /// or a retry after an upstream failure.
    Requeued,
    /// The result arrived and was delivered.
    Succeeded,
    /// It ended without a result.
    Failed(FailureReason),
    /// Canceled.
    Canceled,
}

/// An event that the current state does not allow; a bug or a stale message, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job in state {from} cannot take event {event}")]
pub struct IllegalTransition {
    /// The state's name.
    pub from: &'static str,
    /// The event's name.
    pub event: &'static str,
}

impl JobState {
    /// A short stable name (also the storage column value).
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Dispatching { .. } => "dispatching",
            JobState::Submitted { .. } => "submitted",
            JobState::Running { .. } => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed { .. } => "failed",
            JobState::Canceled => "canceled",
        }
    }

    /// True once nothing more can happen to the job.
    pub fn is_terminal(&self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed { .. } | JobState::Canceled)
    }

    /// The event that takes a job into this state when it is terminal; `None` for a live state.
    pub fn terminal_event(&self) -> Option<JobEvent> {
        match self {
            JobState::Succeeded => Some(JobEvent::Succeeded),
            JobState::Failed { reason } => Some(JobEvent::Failed(reason.clone())),
            JobState::Canceled => Some(JobEvent::Canceled),
            _ => None,
        }
    }

    /// True while the job occupies (or is about to occupy) a slot of an account.
    pub fn is_in_flight(&self) -> bool {
        matches!(self, JobState::Dispatching { .. } | JobState::Submitted { .. } | JobState::Running { .. })
    }

    /// The account the job is assigned to, if any.
    pub fn account(&self) -> Option<&AccountId> {
        match self {
            JobState::Dispatching { account }
            | JobState::Submitted { account, .. }
            | JobState::Running { account, .. } => Some(account),
            _ => None,
        }
    }

    /// fal's request id, once fal has accepted the job.
    pub fn request_id(&self) -> Option<&RequestId> {
        match self {
            JobState::Submitted { request_id, .. } | JobState::Running { request_id, .. } => Some(request_id),
            _ => None,
        }
    }

    /// The state after `event`.
    ///
    /// # Errors
    /// [`IllegalTransition`] when the state does not allow the event, e.g. a second
    /// completion of a finished job.
    pub fn apply(&self, event: JobEvent) -> Result<JobState, IllegalTransition> {
        use JobEvent as E;
        use JobState as S;
        let next = match (self, event) {
            (S::Queued, E::Claimed(account)) => S::Dispatching { account },
            (S::Dispatching { account }, E::Submitted(request_id)) => {
                S::Submitted { account: account.clone(), request_id }
            }
            (S::Submitted { account, request_id }, E::Started) => {
                S::Running { account: account.clone(), request_id: request_id.clone() }
            }
            (S::Running { .. }, E::Started) => self.clone(),
            (S::Dispatching { .. } | S::Submitted { .. } | S::Running { .. }, E::Requeued) => S::Queued,
            (S::Submitted { .. } | S::Running { .. }, E::Succeeded) => S::Succeeded,
            (S::Queued | S::Dispatching { .. } | S::Submitted { .. } | S::Running { .. }, E::Failed(reason)) => {
                S::Failed { reason }
            }
            (S::Queued | S::Dispatching { .. } | S::Submitted { .. } | S::Running { .. }, E::Canceled) => S::Canceled,
            (from, event) => {
                return Err(IllegalTransition { from: from.name(), event: event_name(&event) });
            }
        };
        Ok(next)
    }
}

fn event_name(event: &JobEvent) -> &'static str {
    match event {
        JobEvent::Claimed(_) => "claimed",
        JobEvent::Submitted(_) => "submitted",
        JobEvent::Started => "started",
        JobEvent::Requeued => "requeued",
        JobEvent::Succeeded => "succeeded",
        JobEvent::Failed(_) => "failed",
        JobEvent::Canceled => "canceled",
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// Who asked.
    pub user: UserId,
    /// Where to answer.
    pub chat: ChatId,
    /// What was asked.
    pub spec: JobSpec,
    /// Where it is now.
    pub state: JobState,
    /// Credit held at enqueue: the list price of the request.
    pub hold: Money,
    /// Submissions to fal so far (retries count).
    pub attempts: u32,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When its state last changed.
    pub updated_at: DateTime<Utc>,
    /// The lease a process holds on it while it is in flight or its outcome is being
    /// delivered; `None` when no process does.
    pub lease: Option<Lease>,
    /// When fal accepted its current submission; the follow deadline counts from here.
    pub submitted_at: Option<DateTime<Utc>>,
    /// What the prompt helper cost for it so far (part of its charge and of fal's bill).
    pub helper_cost: Money,
}

/// A process's claim on a job: its owner, and the fencing token of that claim.
///
/// Every claim and every takeover of an expired lease increments the epoch, so a task
/// that outlived its lease (a paused process, a lost heartbeat) cannot write over the
/// task that took the job after it: each write must present the epoch it was given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lease {
    /// The process that holds it; unique per process start.
    pub owner: String,
    /// The fencing token: increases with every claim or takeover of the job.
    pub epoch: u64,
}

impl fmt::Display for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.owner, self.epoch)
    }
}

/// Which failures the user pays for. Defaults: only success is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementPolicy {
    /// Charge the user when fal's content checker refuses (fal may bill it).
    pub charge_user_for_content_policy: bool,
    /// Assume fal bills content-policy refusals when estimating the operator's cost.
    pub fal_bills_content_policy: bool,
}

impl Default for SettlementPolicy {
    fn default() -> Self {
        Self { charge_user_for_content_policy: false, fal_bills_content_policy: true }
    }
}

/// How a finished job moves money: the user's hold becomes a charge plus a refund,
/// and the operator's fal account is (or is not) billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// Taken from the user's hold for good.
    pub user_charge: Money,
    /// Given back to the user from the hold.
    pub user_refund: Money,
    /// What fal bills the operator's account for this job (an estimate at list price).
    pub fal_cost: Money,
}

impl Settlement {
    /// True when it splits `hold` exactly into charge and refund, with nothing negative:
    /// the only settlement storage may write.
    pub fn splits(&self, hold: Money) -> bool {
        let negative = self.user_charge.is_negative() || self.user_refund.is_negative() || self.fal_cost.is_negative();
        !negative && self.user_charge.checked_add(self.user_refund).is_ok_and(|sum| sum == hold)
    }
}

/// The settlement of a job that reached `terminal` with `hold` taken at enqueue and
/// `price` the list price of what was produced.
///
/// `fal_billed` says whether fal bills the run whatever its outcome here: it started (a
/// cancel or a timeout after start), or it succeeded at fal and failed after (the download
/// of the result, an unreadable result). A 5xx from fal, a lock or a start timeout is never
/// billed. The user is never charged more than the hold.
pub fn settle(
    terminal: &JobState,
    hold: Money,
    price: Money,
    fal_billed: bool,
    policy: SettlementPolicy,
) -> Settlement {
    let charged = |amount: Money| {
        let charge = amount.min(hold).clamp_at_zero();
        Settlement {
            user_charge: charge,
            user_refund: hold.checked_sub(charge).unwrap_or(Money::ZERO).clamp_at_zero(),
            fal_cost: price,
        }
    };
    let refunded = |fal_cost: Money| Settlement { user_charge: Money::ZERO, user_refund: hold, fal_cost };
    match terminal {
        JobState::Succeeded => charged(price),
        JobState::Failed { reason: FailureReason::ContentPolicy } => {
            let fal_cost = if policy.fal_bills_content_policy { price } else { Money::ZERO };
            if policy.charge_user_for_content_policy {
                Settlement { fal_cost, ..charged(price) }
            } else {
                refunded(fal_cost)
            }
        }
        // A 422 from fal may be billed: GPU time was spent. The user is refunded because
        // we validated the input before sending it, so the fault is not theirs.
        JobState::Failed { reason: FailureReason::InvalidInput(_) } => refunded(price),
        // The user is refunded: the failure is ours or fal's, not theirs.
        JobState::Failed { .. } | JobState::Canceled => refunded(if fal_billed { price } else { Money::ZERO }),
        // Not terminal: nothing moves yet.
        _ => Settlement { user_charge: Money::ZERO, user_refund: Money::ZERO, fal_cost: Money::ZERO },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_terminal_states_finish() {
        assert_eq!(JobState::Succeeded.terminal_event(), Some(JobEvent::Succeeded));
        assert_eq!(
            JobState::Failed { reason: FailureReason::Timeout }.terminal_event(),
            Some(JobEvent::Failed(FailureReason::Timeout))
        );
        assert_eq!(JobState::Canceled.terminal_event(), Some(JobEvent::Canceled));
        assert_eq!(JobState::Queued.terminal_event(), None);
    }

    #[test]
    fn a_settlement_splits_the_hold_exactly_with_nothing_negative() {
        let hold = Money::from_cents(5);
        let ok = Settlement { user_charge: Money::from_cents(4), user_refund: Money::from_cents(1), fal_cost: hold };
        assert!(ok.splits(hold));
        assert!(!Settlement { user_refund: Money::ZERO, ..ok }.splits(hold), "short of the hold");
        assert!(!Settlement { fal_cost: Money::from_cents(-1), ..ok }.splits(hold), "a negative fal cost");
        let negative = Settlement { user_charge: Money::from_cents(6), user_refund: Money::from_cents(-1), ..ok };
        assert!(!negative.splits(hold), "a negative refund");
    }

    fn acct() -> AccountId {
        AccountId::new("main")
    }

    fn req() -> RequestId {
        RequestId::new("019d-req")
    }

    #[test]
    fn happy_path_walks_every_state() {
        let s = JobState::Queued;
        let s = s.apply(JobEvent::Claimed(acct())).unwrap();
        assert_eq!(s, JobState::Dispatching { account: acct() });
        let s = s.apply(JobEvent::Submitted(req())).unwrap();
        assert_eq!(s.request_id(), Some(&req()));
        let s = s.apply(JobEvent::Started).unwrap();
        assert_eq!(s.name(), "running");
        assert!(s.is_in_flight());
        let s = s.apply(JobEvent::Succeeded).unwrap();
        assert!(s.is_terminal());
    }

    #[test]
    fn illegal_transitions_are_errors() {
        let done = JobState::Succeeded;
        assert_eq!(done.apply(JobEvent::Succeeded), Err(IllegalTransition { from: "succeeded", event: "succeeded" }));
        assert!(JobState::Queued.apply(JobEvent::Submitted(req())).is_err(), "submit needs a claim first");
        assert!(JobState::Queued.apply(JobEvent::Succeeded).is_err());
        assert!(JobState::Canceled.apply(JobEvent::Claimed(acct())).is_err());
        assert!(JobState::Failed { reason: FailureReason::Timeout }.apply(JobEvent::Requeued).is_err());
        assert!(JobState::Queued.apply(JobEvent::Requeued).is_err());
    }

    #[test]
    fn requeue_returns_in_flight_jobs_to_the_queue() {
        let dispatching = JobState::Queued.apply(JobEvent::Claimed(acct())).unwrap();
        assert_eq!(dispatching.apply(JobEvent::Requeued).unwrap(), JobState::Queued);
        let submitted = dispatching.apply(JobEvent::Submitted(req())).unwrap();
        assert_eq!(submitted.apply(JobEvent::Requeued).unwrap(), JobState::Queued);
    }

    #[test]
    fn success_charges_the_price_and_refunds_the_rest_of_the_hold() {
        let s =
            settle(&JobState::Succeeded, Money::from_cents(5), Money::from_cents(4), true, SettlementPolicy::default());
        assert_eq!(
            s,
            Settlement {
                user_charge: Money::from_cents(4),
                user_refund: Money::from_cents(1),
                fal_cost: Money::from_cents(4)
            }
        );
        let over =
            settle(&JobState::Succeeded, Money::from_cents(4), Money::from_cents(6), true, SettlementPolicy::default());
        assert_eq!(over.user_charge, Money::from_cents(4), "never more than the hold");
        assert_eq!(over.user_refund, Money::ZERO);
    }

    #[test]
    fn failures_refund_the_user_and_fal_bills_only_what_it_may() {
        let hold = Money::from_cents(4);
        let policy = SettlementPolicy::default();
        let upstream = JobState::Failed { reason: FailureReason::Upstream("503".into()) };
        assert_eq!(
            settle(&upstream, hold, hold, false, policy),
            Settlement { user_charge: Money::ZERO, user_refund: hold, fal_cost: Money::ZERO },
            "fal never bills a 5xx"
        );
        let lost = JobState::Failed { reason: FailureReason::Upstream("result download failed".into()) };
        assert_eq!(
            settle(&lost, hold, hold, true, policy),
            Settlement { user_charge: Money::ZERO, user_refund: hold, fal_cost: hold },
            "a run fal completed is billed even when its result never reached the user"
        );
        let late = settle(&JobState::Failed { reason: FailureReason::Timeout }, hold, hold, true, policy);
        assert_eq!((late.user_refund, late.fal_cost), (hold, hold), "a timeout after the run started");
        let invalid = JobState::Failed { reason: FailureReason::InvalidInput("bad image".into()) };
        assert_eq!(settle(&invalid, hold, hold, true, policy).fal_cost, hold, "a 422 may be billed");
        let policy_refusal = JobState::Failed { reason: FailureReason::ContentPolicy };
        let s = settle(&policy_refusal, hold, hold, true, policy);
        assert_eq!((s.user_charge, s.user_refund), (Money::ZERO, hold));
        let strict = SettlementPolicy { charge_user_for_content_policy: true, fal_bills_content_policy: true };
        assert_eq!(settle(&policy_refusal, hold, hold, true, strict).user_charge, hold);
        let queued_cancel = settle(&JobState::Canceled, hold, hold, false, policy);
        assert_eq!((queued_cancel.user_refund, queued_cancel.fal_cost), (hold, Money::ZERO));
        let running_cancel = settle(&JobState::Canceled, hold, hold, true, policy);
        assert_eq!((running_cancel.user_refund, running_cancel.fal_cost), (hold, hold));
    }
}
