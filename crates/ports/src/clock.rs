//! The clock port: every rule takes `now`, and this is where `now` comes from.

use mediagen_domain::Timestamp;

/// A source of the current instant.
///
/// Tests substitute a fixed or stepping clock; the domain never reads the time itself.
#[cfg_attr(feature = "mock", mockall::automock)]
pub trait Clock: Send + Sync {
    /// The current instant in UTC. Infallible.
    fn now(&self) -> Timestamp;
}

/// The machine's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }
}
