//! Storage writes that must land, for every service that makes them.

use crate::RetryPolicy;
use mediagen_ports::StorageError;
use std::time::Duration;

/// Tries of a write that fails for another reason than an outage.
pub(crate) const ATTEMPTS: u32 = 3;
/// The longest wait between tries of a storage write while the database is unavailable.
const MAX_STORAGE_DELAY: Duration = Duration::from_secs(3);

/// A storage write that must land: retried for as long as the database is unavailable
/// (down or restarting; the delay capped at a few seconds), other failures up to
/// `ATTEMPTS` tries; a `Conflict` or `NotFound` is returned at once.
///
/// What still fails after that is left to the lease rescue: a process renews only the
/// leases of live tasks, so a job whose task gave up is rescued when its lease ends.
pub(crate) async fn stored<T, F, Fut>(retry: &RetryPolicy, what: &str, mut write: F) -> Result<T, StorageError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StorageError>>,
{
    let mut attempt = 1u32;
    loop {
        match write().await {
            Ok(value) => return Ok(value),
            Err(StorageError::Unavailable(error)) => {
                if attempt == 1 || attempt.is_multiple_of(20) {
                    tracing::warn!(attempt, %error, what, "storage unavailable; retrying until it is back");
                }
            }
            Err(error @ StorageError::Other(_)) if attempt < ATTEMPTS => {
                tracing::warn!(attempt, %error, what, "storage write failed; retrying");
            }
            Err(error) => return Err(error),
        }
        let delay = retry.delay(attempt.min(ATTEMPTS)).min(MAX_STORAGE_DELAY);
        tokio::time::sleep(delay).await;
        attempt = attempt.saturating_add(1);
    }
}
