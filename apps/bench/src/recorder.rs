//! The `Messaging` port as the bench needs it: no Telegram, only the instants at which
//! the engine told users something, so the bench measures queueing and dispatch.

use async_trait::async_trait;
use mediagen_domain::insights::OperatorSummary;
use mediagen_domain::{JobId, Language, MediaRef};
use mediagen_ports::{
    DeliveredMedia, MediaBytes, MessageRef, Messaging, MessagingError, OperatorAlert, Recipient, ResultMedia,
    UserNotice,
};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::sync::Notify;
use tokio::time::Instant;

/// How a job ended, as users were told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// `Done`: results delivered.
    Done,
    /// `Failed` or `Canceled`.
    Failed,
}

#[derive(Debug, Default)]
struct Log {
    delivered: HashMap<JobId, Instant>,
    endings: HashMap<JobId, (Instant, Ending)>,
}

/// Records what the engine says and when; answers every call at once.
#[derive(Debug)]
pub struct Recorder {
    next_message: AtomicI64,
    log: Mutex<Log>,
    photo: Vec<u8>,
    ended: Notify,
}

impl Recorder {
    /// A recorder that hands out `photo` as every user's input file.
    pub fn new(photo: Vec<u8>) -> Self {
        Self { next_message: AtomicI64::new(1), log: Mutex::default(), photo, ended: Notify::new() }
    }

    /// When the job's results were handed to the platform.
    pub fn delivered(&self, job: JobId) -> Option<Instant> {
        self.log.lock().unwrap().delivered.get(&job).copied()
    }

    /// How and when the job's final notice went out.
    pub fn ending(&self, job: JobId) -> Option<(Instant, Ending)> {
        self.log.lock().unwrap().endings.get(&job).copied()
    }

    /// Jobs with a final notice.
    pub fn ended_count(&self) -> usize {
        self.log.lock().unwrap().endings.len()
    }

    /// Waits until at least `count` jobs have a final notice; false on timeout.
    pub async fn wait_for_endings(&self, count: usize, timeout: std::time::Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.ended.notified();
            if self.ended_count() >= count {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.ended_count() >= count;
            }
        }
    }

    fn note(&self, notice: &UserNotice) {
        let now = Instant::now();
        let mut log = self.log.lock().unwrap();
        let (job, ending) = match notice {
            UserNotice::Done { job, .. } => (*job, Ending::Done),
            UserNotice::Failed { job, .. } | UserNotice::Canceled { job, .. } => (*job, Ending::Failed),
            UserNotice::Refused(_)
            | UserNotice::Queued { .. }
            | UserNotice::Generating { .. }
            | UserNotice::EnhancedPrompt { .. } => return,
        };
        if log.endings.insert(job, (now, ending)).is_none() {
            drop(log);
            self.ended.notify_waiters();
        }
    }
}

#[async_trait]
impl Messaging for Recorder {
    async fn send_notice(&self, to: Recipient, notice: &UserNotice) -> Result<MessageRef, MessagingError> {
        let message_id = self.next_message.fetch_add(1, Ordering::Relaxed);
        self.note(notice);
        Ok(MessageRef { chat: to.chat, message_id })
    }

    async fn edit_notice(
        &self,
        _message: &MessageRef,
        _language: Language,
        notice: &UserNotice,
    ) -> Result<(), MessagingError> {
        self.note(notice);
        Ok(())
    }

    async fn send_results(
        &self,
        to: Recipient,
        job: JobId,
        media: Vec<ResultMedia>,
        _as_file: bool,
    ) -> Result<Vec<DeliveredMedia>, MessagingError> {
        let now = Instant::now();
        self.log.lock().unwrap().delivered.entry(job).or_insert(now);
        Ok((0..media.len())
            .map(|i| DeliveredMedia {
                message: MessageRef { chat: to.chat, message_id: self.next_message.fetch_add(1, Ordering::Relaxed) },
                file_id: format!("bench-{}-{i}", job.0),
            })
            .collect())
    }

    async fn answer_button(&self, _callback_id: &str, _text: Option<String>) -> Result<(), MessagingError> {
        Ok(())
    }

    async fn notify_operators(&self, _alert: &OperatorAlert) -> Result<(), MessagingError> {
        Ok(())
    }

    async fn notify_operators_summary(&self, _summary: &OperatorSummary) -> Result<(), MessagingError> {
        Ok(())
    }

    async fn fetch_input(&self, _media: &MediaRef, _max_bytes: u64) -> Result<MediaBytes, MessagingError> {
        Ok(MediaBytes {
            bytes: self.photo.clone(),
            content_type: "image/png".to_owned(),
            file_name: "photo.png".to_owned(),
        })
    }
}
