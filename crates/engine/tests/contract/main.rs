//! Contract tests of the engine's use cases, on the in-memory storage adapter and mockall
//! mocks of the other ports, in paused tokio time (no real sleeps).

mod support;

mod alerts;
mod cancel;
mod dispatch;
mod enhance;
mod failures;
mod insights;
mod intake;
mod lifecycle;
