#![doc = include_str!("../README.md")]

pub mod account;
pub mod backoff;
pub mod budget;
pub mod catalog;
pub mod credit;
pub mod discount;
pub mod ids;
pub mod insights;
pub mod job;
pub mod model;
pub mod money;
pub mod planner;
pub mod prompt;
pub mod quota;
pub mod scheduler;
pub mod user;

pub use ids::{AccountId, ChatId, IdempotencyKey, JobId, RequestId, UserId};
pub use job::{FailureReason, Job, JobEvent, JobSpec, JobState, Lease, MediaRef, Settlement, SettlementPolicy};
pub use model::{ImageSize, ModelId, ModelKind};
pub use money::Money;
pub use prompt::Prompt;
pub use user::{Language, Role, User, UserSettings};

/// The instant type used everywhere; always UTC, always passed in.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
