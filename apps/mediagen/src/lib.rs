//! The mediagen app: configuration and wiring, used by the `mediagen` binary and by the
//! end-to-end tests that start the whole bot in-process.

pub mod doctor;
pub mod init;
pub mod insights;
pub mod metrics;
pub mod settings;
pub mod show;
pub mod storage;
pub mod wiring;
