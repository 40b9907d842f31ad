//! Rules every storage adapter enforces the same way, written once: how a settlement must
//! split a hold (the domain's `Settlement::splits`), how the ledger folds back into a
//! settlement, and which lease may write a job; each as the port's `StorageError`.
//!
//! Pure functions over domain values; an adapter reads its row, asks here, then writes.

use crate::storage::{Finish, StorageError};
use mediagen_domain::{JobId, JobState, Lease, Money, Settlement};

/// An illegal transition or a stale writer: the caller's view of the job is out of date.
pub fn conflict(job: JobId, error: impl std::fmt::Display) -> StorageError {
    StorageError::Conflict(format!("job {job}: {error}"))
}

/// A settlement must split the hold exactly into charge and refund, with nothing negative
/// (`Settlement::splits`).
///
/// # Errors
/// `Conflict` when it does not.
pub fn check_settlement(job: JobId, hold: Money, settlement: &Settlement) -> Result<(), StorageError> {
    if settlement.splits(hold) {
        return Ok(());
    }
    let Settlement { user_charge, user_refund, .. } = *settlement;
    Err(conflict(job, format!("settlement charge {user_charge} + refund {user_refund} does not split the hold {hold}")))
}

/// A prompt helper's cost added to a job cannot be negative: it is charged with the job.
///
/// # Errors
/// `Conflict` for a negative cost.
pub fn check_helper_cost(job: JobId, cost: Money) -> Result<(), StorageError> {
    if cost.is_negative() {
        return Err(conflict(job, format!("a prompt helper cost of {cost}")));
    }
    Ok(())
}

/// The settlement a job's ledger rows record: `(kind, micros)` of its charge, refund and
/// fal cost (other kinds are ignored).
pub fn settlement_from_ledger(rows: impl IntoIterator<Item = (String, i64)>) -> Settlement {
    let mut settlement = Settlement { user_charge: Money::ZERO, user_refund: Money::ZERO, fal_cost: Money::ZERO };
    for (kind, micros) in rows {
        let amount = Money::from_micros(micros);
        match kind.as_str() {
            "charge" => settlement.user_charge = amount,
            "refund" => settlement.user_refund = amount,
            "fal_cost" => settlement.fal_cost = amount,
            _ => {}
        }
    }
    settlement
}

/// The job may be written by the holder of `presented` only while that is its lease now.
///
/// # Errors
/// `Conflict` naming both leases otherwise.
pub fn check_held(job: JobId, current: Option<&Lease>, presented: &Lease) -> Result<(), StorageError> {
    if current == Some(presented) {
        return Ok(());
    }
    let now = current.map_or_else(|| "no lease".to_owned(), |lease| format!("lease {lease}"));
    Err(conflict(job, format!("it is under {now}, not {presented}")))
}

/// The job is `Dispatching` under `presented`: only then may its submit start or be recorded.
///
/// # Errors
/// `Conflict` otherwise (canceled, requeued or taken over meanwhile).
pub fn check_dispatching(
    job: JobId,
    state: &JobState,
    current: Option<&Lease>,
    presented: &Lease,
) -> Result<(), StorageError> {
    if !matches!(state, JobState::Dispatching { .. }) {
        return Err(conflict(job, format!("it is {state}, not dispatching")));
    }
    check_held(job, current, presented)
}

/// A finish comes from the job's lease holder, or is the user's cancel (no lease).
///
/// # Errors
/// `Conflict` for a stale holder, or a finish without a lease that is not a cancel.
pub fn check_finisher(job: JobId, current: Option<&Lease>, finish: &Finish) -> Result<(), StorageError> {
    match &finish.lease {
        Some(presented) => check_held(job, current, presented),
        None if finish.state == JobState::Canceled => Ok(()),
        None => Err(conflict(job, format!("only a cancel may end it without its lease, not {}", finish.state))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_helper_cost_may_be_zero_but_not_negative() {
        assert!(check_helper_cost(JobId(1), Money::ZERO).is_ok());
        assert!(check_helper_cost(JobId(1), Money::from_micros(1)).is_ok());
        assert!(matches!(check_helper_cost(JobId(1), Money::from_micros(-1)), Err(StorageError::Conflict(_))));
    }

    fn lease(owner: &str, epoch: u64) -> Lease {
        Lease { owner: owner.into(), epoch }
    }

    #[test]
    fn settlements_must_split_the_hold() {
        let hold = Money::from_cents(5);
        let ok = Settlement { user_charge: Money::from_cents(4), user_refund: Money::from_cents(1), fal_cost: hold };
        assert!(check_settlement(JobId(1), hold, &ok).is_ok());
        let short = Settlement { user_refund: Money::ZERO, ..ok };
        assert!(matches!(check_settlement(JobId(1), hold, &short), Err(StorageError::Conflict(_))));
        let negative = Settlement { user_charge: Money::from_cents(6), user_refund: Money::from_cents(-1), ..ok };
        assert!(matches!(check_settlement(JobId(1), hold, &negative), Err(StorageError::Conflict(_))));
    }

    #[test]
    fn the_ledger_folds_into_a_settlement() {
        let rows = [("hold", 5), ("charge", 4), ("refund", 1), ("fal_cost", 3)].map(|(k, v)| (k.to_owned(), v));
        assert_eq!(
            settlement_from_ledger(rows),
            Settlement {
                user_charge: Money::from_micros(4),
                user_refund: Money::from_micros(1),
                fal_cost: Money::from_micros(3)
            }
        );
    }

    #[test]
    fn a_stale_epoch_or_owner_is_fenced_off() {
        let now = lease("b-2", 7);
        assert!(check_held(JobId(1), Some(&now), &lease("b-2", 7)).is_ok());
        assert!(check_held(JobId(1), Some(&now), &lease("b-2", 6)).is_err(), "older epoch, same owner");
        assert!(check_held(JobId(1), Some(&now), &lease("a-1", 7)).is_err(), "same epoch, other owner");
        assert!(check_held(JobId(1), None, &lease("b-2", 7)).is_err(), "requeued: no lease");
        let dispatching = JobState::Dispatching { account: mediagen_domain::AccountId::new("a") };
        assert!(check_dispatching(JobId(1), &dispatching, Some(&now), &now).is_ok());
        assert!(check_dispatching(JobId(1), &JobState::Queued, Some(&now), &now).is_err());
    }

    #[test]
    fn only_a_cancel_finishes_without_a_lease() {
        let finish = |state: JobState, lease: Option<Lease>| Finish {
            lease,
            state,
            settlement: Settlement { user_charge: Money::ZERO, user_refund: Money::ZERO, fal_cost: Money::ZERO },
            media: vec![],
            now: chrono::DateTime::UNIX_EPOCH,
        };
        let now = lease("b", 2);
        assert!(check_finisher(JobId(1), Some(&now), &finish(JobState::Canceled, None)).is_ok());
        assert!(check_finisher(JobId(1), Some(&now), &finish(JobState::Succeeded, None)).is_err());
        assert!(check_finisher(JobId(1), Some(&now), &finish(JobState::Succeeded, Some(lease("b", 1)))).is_err());
        assert!(check_finisher(JobId(1), Some(&now), &finish(JobState::Succeeded, Some(now.clone()))).is_ok());
    }
}
