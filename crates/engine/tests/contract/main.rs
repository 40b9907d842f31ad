//! Contract tests of the engine's use cases, against mockall mocks of the ports and in
//! paused tokio time (no real sleeps).

mod support;

mod alerts;
mod cancel;
mod dispatch;
mod enhance;
mod failures;
mod insights;
mod intake;
mod lifecycle;
