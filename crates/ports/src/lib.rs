#![doc = include_str!("../README.md")]

pub mod clock;
pub mod generation;
pub mod messaging;
pub mod reports;
pub mod storage;
pub mod storage_rules;

pub use clock::{Clock, SystemClock};
pub use generation::{
    CancelOutcome, Generation, GenerationError, GenerationOutput, GenerationRequest, KeyStatus, LlmParams, MediaBytes,
    OutputMedia, RemoteHandle, RemoteStatus, TokenUsage,
};
pub use messaging::{
    DeliveredMedia, MessageRef, Messaging, MessagingError, OperatorAlert, Recipient, Refusal, ResultMedia, Severity,
    UserNotice,
};
pub use reports::{DayCount, JobCounts, JobTiming, ReportStore, SlotInterval, UsageRow};
pub use storage::{
    AccountCapacity, AccountLock, AccountRecord, AccountStore, AlertLog, CancelResult, ClaimRequest, ClaimedJob,
    EnqueueOutcome, EnqueueRequest, Finish, FinishOutcome, JobQueue, MediaRecord, ModelUsage, NewUser, PromptCache,
    QueuePosition, Rescued, StorageError, UsageStore, UserSpend, UserStore,
};

#[cfg(feature = "mock")]
pub use clock::MockClock;
#[cfg(feature = "mock")]
pub use generation::MockGeneration;
#[cfg(feature = "mock")]
pub use messaging::MockMessaging;
#[cfg(feature = "mock")]
pub use reports::MockReportStore;
#[cfg(feature = "mock")]
pub use storage::{MockAccountStore, MockAlertLog, MockJobQueue, MockPromptCache, MockUsageStore, MockUserStore};
