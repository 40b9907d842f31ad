//! Cancellation on the user's request: free while queued, at fal when already there.

use crate::Intake;
use crate::follow::cancel_settlement;
use mediagen_domain::insights::JobOutcome;
use mediagen_domain::{JobId, JobState, Money, UserId};
use mediagen_ports::{CancelOutcome as RemoteCancel, CancelResult, Finish, StorageError, UserNotice};

/// What a cancel request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Canceled; the hold went back to the user (who was told).
    Canceled {
        /// The job.
        job: JobId,
        /// Credit given back.
        refunded: Money,
    },
    /// Too late: the job has finished (or fal finished it as the cancel arrived; the
    /// result is being delivered).
    TooLate {
        /// The job.
        job: JobId,
    },
    /// No such job of this user.
    NotFound,
    /// Storage or fal could not be reached; nothing changed, the user may try again.
    Unavailable,
}

impl Intake {
    /// Cancels `job` for `user`.
    ///
    /// A queued job is canceled by storage at no cost. A job already at fal is canceled
    /// there first, then finished as `Canceled` (refunded; fal's bill is recorded when it
    /// had started). A job being dispatched is finished at once: its dispatcher then finds
    /// it no longer dispatching and cancels its submission at fal.
    #[tracing::instrument(skip_all, fields(user = %user, job_id = %job))]
    pub async fn cancel(&self, user: UserId, job: JobId) -> CancelOutcome {
        let ports = &self.inner.ports;
        let config = &self.inner.config;
        let now = ports.clock.now();
        let (job, handle) = match ports.queue.cancel(job, user, now).await {
            Ok(CancelResult::Canceled(job)) => {
                self.inner.counters.count_outcome(&job.spec.model, job.state.account(), JobOutcome::Canceled);
                let refunded = job.hold;
                let (language, _) = self.inner.follower.delivery_settings(&job).await;
                self.inner.follower.report_final(&job, language, UserNotice::Canceled { job: job.id, refunded }).await;
                self.inner.wake.notify_one();
                return CancelOutcome::Canceled { job: job.id, refunded };
            }
            Ok(CancelResult::AlreadyFinished(job)) => return CancelOutcome::TooLate { job: job.id },
            Ok(CancelResult::InFlight(job, handle)) => (job, handle),
            Err(StorageError::NotFound(_)) => return CancelOutcome::NotFound,
            Err(error) => {
                tracing::error!(%error, "cancel failed");
                return CancelOutcome::Unavailable;
            }
        };

        if let Some(handle) = &handle {
            match ports.generation.cancel(handle).await {
                Ok(RemoteCancel::Requested | RemoteCancel::NotFound) => {}
                // The result exists: its follower delivers and charges it.
                Ok(RemoteCancel::AlreadyCompleted) => return CancelOutcome::TooLate { job: job.id },
                Err(error) => {
                    tracing::warn!(%error, "cancel at fal failed");
                    return CancelOutcome::Unavailable;
                }
            }
        }
        let ran_at_fal = matches!(job.state, JobState::Running { .. });
        let settlement = cancel_settlement(&job, ran_at_fal, config.settlement);
        // The user's cancel may end the job whoever follows it: no lease.
        let finish =
            Finish { lease: None, state: JobState::Canceled, settlement, media: Vec::new(), now: ports.clock.now() };
        if !self.inner.follower.finish(&job, &finish).await {
            return CancelOutcome::TooLate { job: job.id };
        }
        self.inner.counters.count_outcome(&job.spec.model, job.state.account(), JobOutcome::Canceled);
        let refunded = settlement.user_refund;
        let (language, _) = self.inner.follower.delivery_settings(&job).await;
        self.inner.follower.report_final(&job, language, UserNotice::Canceled { job: job.id, refunded }).await;
        CancelOutcome::Canceled { job: job.id, refunded }
    }
}
