//! The user's progress message, edited as the job moves, throttled per chat.
//!
//! Telegram allows about one message a second per chat, so edits go through one worker per
//! chat: the first edit goes out at once, later ones wait until `interval` has passed since
//! the previous edit, and while they wait a newer text for the same message replaces the
//! older one (coalescing). The latest text of every message is always sent in the end, so
//! the final state is never dropped; only intermediate states are skipped.

use crate::tasks::TaskCounter;
use mediagen_domain::{ChatId, JobId, Language};
use mediagen_ports::{MessageRef, Messaging, MessagingError, UserNotice};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Failed attempts at one edit before it is given up.
const EDIT_ATTEMPTS: u32 = 3;
/// Platform back-offs waited out for one edit before it is given up.
const MAX_BACKOFFS: u32 = 10;

/// Closed (dropped) once the edit it waits for went out or was given up.
type Done = Vec<oneshot::Sender<()>>;

/// Edits waiting for one chat, oldest message first.
#[derive(Default)]
struct ChatQueue {
    pending: Vec<(MessageRef, Language, UserNotice, Done)>,
    worker: bool,
}

/// Per-chat throttled edits of progress messages.
pub(crate) struct Throttle {
    messaging: Arc<dyn Messaging>,
    interval: Duration,
    chats: Mutex<HashMap<ChatId, ChatQueue>>,
    workers: TaskCounter,
}

impl Throttle {
    pub(crate) fn new(messaging: Arc<dyn Messaging>, interval: Duration) -> Arc<Self> {
        Arc::new(Self { messaging, interval, chats: Mutex::new(HashMap::new()), workers: TaskCounter::default() })
    }

    /// Shows `notice` in `message` as soon as the chat's rate allows, replacing any text
    /// still waiting for that message.
    pub(crate) fn edit(self: &Arc<Self>, message: MessageRef, language: Language, notice: UserNotice) {
        self.enqueue(message, language, notice, Vec::new());
    }

    /// Like [`Throttle::edit`]; the answer resolves (as an error, the sender being dropped)
    /// once this text, or a newer one for the message, went out or was given up.
    pub(crate) fn edit_confirmed(
        self: &Arc<Self>,
        message: MessageRef,
        language: Language,
        notice: UserNotice,
    ) -> oneshot::Receiver<()> {
        let (done, confirmed) = oneshot::channel();
        self.enqueue(message, language, notice, vec![done]);
        confirmed
    }

    fn enqueue(self: &Arc<Self>, message: MessageRef, language: Language, notice: UserNotice, done: Done) {
        let chat = message.chat;
        let mut chats = self.chats.lock().unwrap();
        let queue = chats.entry(chat).or_default();
        match queue.pending.iter_mut().find(|(m, _, _, _)| *m == message) {
            Some(slot) => {
                let mut waiting = std::mem::take(&mut slot.3);
                waiting.extend(done);
                *slot = (message, language, notice, waiting);
            }
            None => queue.pending.push((message, language, notice, done)),
        }
        if !queue.worker {
            queue.worker = true;
            let this = Arc::clone(self);
            let guard = self.workers.enter();
            tokio::spawn(async move {
                this.work(chat).await;
                drop(guard);
            });
        }
    }

    /// Waits until every pending edit went out (for shutdown).
    pub(crate) async fn idle(&self) {
        self.workers.idle().await;
    }

    /// One chat's worker: one edit per interval until nothing is pending.
    async fn work(&self, chat: ChatId) {
        loop {
            let next = {
                let mut chats = self.chats.lock().unwrap();
                let Some(queue) = chats.get_mut(&chat) else { return };
                if queue.pending.is_empty() {
                    chats.remove(&chat);
                    return;
                }
                queue.pending.remove(0)
            };
            let (message, language, notice, done) = next;
            if !self.send(&message, language, notice, done).await {
                // The chat is gone: nothing more will get through.
                self.chats.lock().unwrap().remove(&chat);
                return;
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    /// Sends one edit, honouring the platform's back-off; false when the chat is unreachable.
    ///
    /// While it waits out a back-off, a newer text for the same message takes the place
    /// of the one being sent.
    async fn send(&self, message: &MessageRef, language: Language, notice: UserNotice, mut done: Done) -> bool {
        let mut current = (language, notice);
        let mut failures = 0;
        let mut backoffs = 0;
        while failures < EDIT_ATTEMPTS && backoffs < MAX_BACKOFFS {
            match self.messaging.edit_notice(message, current.0, &current.1).await {
                Ok(()) | Err(MessagingError::NotModified) => return true,
                Err(MessagingError::ChatUnavailable(why)) => {
                    tracing::info!(chat = %message.chat, %why, "chat unavailable; progress edits stop");
                    return false;
                }
                Err(MessagingError::RateLimited { retry_after_secs }) => {
                    backoffs += 1;
                    tokio::time::sleep(Duration::from_secs(u64::from(retry_after_secs.max(1)))).await;
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(chat = %message.chat, failures, %error, "progress edit failed");
                    tokio::time::sleep(self.interval).await;
                }
            }
            if let Some((language, notice, waiting)) = self.take_newer(message) {
                current = (language, notice);
                done.extend(waiting);
            }
        }
        tracing::warn!(chat = %message.chat, "progress edit given up");
        true
    }

    /// Removes and returns a text queued for `message` after the one being sent.
    fn take_newer(&self, message: &MessageRef) -> Option<(Language, UserNotice, Done)> {
        let mut chats = self.chats.lock().unwrap();
        let queue = chats.get_mut(&message.chat)?;
        let index = queue.pending.iter().position(|(m, _, _, _)| m == message)?;
        let (_, language, notice, done) = queue.pending.remove(index);
        Some((language, notice, done))
    }
}

/// Which message shows a job's progress, and in which language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProgressMessage {
    pub(crate) message: MessageRef,
    pub(crate) language: Language,
}

/// The progress messages of jobs this process acknowledged.
///
/// In memory only: after a restart (or for a job another process took in) there is no
/// message to edit, and the final state is sent as a new message instead.
#[derive(Default)]
pub(crate) struct ProgressMessages {
    by_job: Mutex<HashMap<JobId, ProgressMessage>>,
}

impl ProgressMessages {
    pub(crate) fn remember(&self, job: JobId, message: ProgressMessage) {
        self.by_job.lock().unwrap().insert(job, message);
    }

    pub(crate) fn get(&self, job: JobId) -> Option<ProgressMessage> {
        self.by_job.lock().unwrap().get(&job).cloned()
    }

    pub(crate) fn forget(&self, job: JobId) -> Option<ProgressMessage> {
        self.by_job.lock().unwrap().remove(&job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediagen_domain::{ModelId, Money};
    use mediagen_ports::MockMessaging;

    type Edits = Arc<Mutex<Vec<(MessageRef, UserNotice)>>>;

    fn recording(result: impl Fn(usize) -> Result<(), MessagingError> + Send + 'static) -> (MockMessaging, Edits) {
        let edits: Edits = Arc::default();
        let mut messaging = MockMessaging::new();
        let seen = Arc::clone(&edits);
        messaging.expect_edit_notice().returning(move |message, _, notice| {
            let mut seen = seen.lock().unwrap();
            seen.push((message.clone(), notice.clone()));
            result(seen.len())
        });
        (messaging, edits)
    }

    fn msg(chat: i64, id: i64) -> MessageRef {
        MessageRef { chat: ChatId(chat), message_id: id }
    }

    fn queued(position: u32) -> UserNotice {
        UserNotice::Queued { job: JobId(1), position, total: 10, eta_secs: 5, price: Money::from_cents(4) }
    }

    fn done() -> UserNotice {
        UserNotice::Done { job: JobId(1), charged: Money::from_cents(4) }
    }

    #[tokio::test(start_paused = true)]
    async fn ten_changes_in_a_second_make_at_most_two_edits_and_the_last_is_final() {
        let (messaging, edits) = recording(|_| Ok(()));
        let throttle = Throttle::new(Arc::new(messaging), Duration::from_secs(1));
        for position in (1..=9).rev() {
            throttle.edit(msg(7, 1), Language::En, queued(position));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        throttle.edit(msg(7, 1), Language::En, done());
        throttle.idle().await;

        let edits = edits.lock().unwrap();
        assert!(edits.len() <= 2, "{} edits", edits.len());
        assert_eq!(edits.first().map(|e| &e.1), Some(&queued(9)), "the first change shows at once");
        assert_eq!(edits.last().map(|e| &e.1), Some(&done()), "the final state is always shown");
    }

    #[tokio::test(start_paused = true)]
    async fn edits_in_one_chat_are_spaced_by_the_interval_and_chats_are_independent() {
        let times: Arc<Mutex<Vec<(ChatId, tokio::time::Instant)>>> = Arc::default();
        let mut messaging = MockMessaging::new();
        let seen = Arc::clone(&times);
        messaging.expect_edit_notice().returning(move |message, _, _| {
            seen.lock().unwrap().push((message.chat, tokio::time::Instant::now()));
            Ok(())
        });
        let throttle = Throttle::new(Arc::new(messaging), Duration::from_secs(1));
        let start = tokio::time::Instant::now();
        // Two messages in chat 1 (two jobs) and one in chat 2.
        throttle.edit(msg(1, 10), Language::En, queued(1));
        throttle.edit(msg(1, 11), Language::En, queued(2));
        throttle.edit(msg(2, 20), Language::Ru, queued(1));
        throttle.idle().await;

        let times = times.lock().unwrap();
        let chat1: Vec<_> = times.iter().filter(|(c, _)| *c == ChatId(1)).map(|(_, t)| *t - start).collect();
        let chat2: Vec<_> = times.iter().filter(|(c, _)| *c == ChatId(2)).map(|(_, t)| *t - start).collect();
        assert_eq!(chat1, vec![Duration::ZERO, Duration::from_secs(1)], "one edit per second per chat");
        assert_eq!(chat2, vec![Duration::ZERO], "another chat is not held back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limited_edit_is_retried_with_the_newest_text() {
        let (messaging, edits) =
            recording(|n| if n == 1 { Err(MessagingError::RateLimited { retry_after_secs: 3 }) } else { Ok(()) });
        let throttle = Throttle::new(Arc::new(messaging), Duration::from_secs(1));
        throttle.edit(msg(1, 10), Language::En, queued(2));
        tokio::time::sleep(Duration::from_millis(10)).await;
        throttle.edit(msg(1, 10), Language::En, UserNotice::Generating { job: JobId(1), model: ModelId::new("m") });
        throttle.edit(msg(1, 10), Language::En, done());
        throttle.idle().await;
        let edits = edits.lock().unwrap();
        assert_eq!(edits.len(), 2);
        assert_eq!(edits[1].1, done(), "the retry carries the latest text, not the stale one");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_chat_stops_its_edits() {
        let (messaging, edits) = recording(|_| Err(MessagingError::ChatUnavailable("blocked".into())));
        let throttle = Throttle::new(Arc::new(messaging), Duration::from_secs(1));
        throttle.edit(msg(1, 10), Language::En, queued(1));
        throttle.edit(msg(1, 11), Language::En, queued(1));
        throttle.idle().await;
        assert_eq!(edits.lock().unwrap().len(), 1);
    }
}
