//! Long polling that confirms an update to Telegram only once it was handled.
//!
//! Telegram forgets every update below the `offset` of the next `getUpdates` call. A plain
//! poller asks for the next batch while the last one is still being handled, so a process
//! killed in between loses those updates: Telegram will not send them again. Here the next
//! batch is asked for only when every update of the last one was handled (each handler
//! holds an [`Handling`] guard until it is done, an album until it is enqueued). A crash
//! then leaves the unhandled updates with Telegram, which sends them again to the next
//! process; enqueue is idempotent on the update id, so none is handled twice.

use crate::TelegramBot;
use futures::StreamExt;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use teloxide::prelude::*;
use teloxide::stop::{StopToken, mk_stop_token};
use teloxide::types::{AllowedUpdate, Update, UpdateKind};
use teloxide::update_listeners::{StatefulListener, UpdateListener};
use tokio::sync::Notify;

/// The long-poll timeout of each `getUpdates` (seconds).
const POLL_TIMEOUT_SECS: u32 = 30;
/// The longest a batch may take to be handled before the next one is asked for anyway (a
/// handler stuck this long would otherwise stop every other chat).
const HANDLING_LIMIT: Duration = Duration::from_secs(3);
/// The pause after a failed `getUpdates` (Telegram unreachable, say).
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// The updates taken from Telegram and not yet handled.
#[derive(Clone, Default)]
pub struct Inbox {
    inner: Arc<InboxInner>,
}

#[derive(Default)]
struct InboxInner {
    open: Mutex<HashSet<u32>>,
    changed: Notify,
}

impl Inbox {
    fn open(&self, id: u32) {
        self.inner.open.lock().expect("inbox lock").insert(id);
    }

    fn close(&self, id: u32) {
        let mut open = self.inner.open.lock().expect("inbox lock");
        if open.remove(&id) && open.is_empty() {
            self.inner.changed.notify_waiters();
        }
    }

    /// Waits until every update taken was handled, or `limit` passes; true when all were.
    pub async fn drained(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let changed = self.inner.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if self.inner.open.lock().expect("inbox lock").is_empty() {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    /// The guard a handler holds while it works on update `id`.
    pub fn handling(&self, id: u32) -> Handling {
        Handling(Arc::new(HandlingInner { inbox: self.clone(), id }))
    }
}

/// Held while an update is being handled; the update counts as handled when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Handling(Arc<HandlingInner>);

impl std::fmt::Debug for Handling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Handling").field(&self.0.id).finish()
    }
}

struct HandlingInner {
    inbox: Inbox,
    id: u32,
}

impl Drop for HandlingInner {
    fn drop(&mut self) {
        self.inbox.close(self.id);
    }
}

/// What the listener keeps between batches.
struct Poller {
    bot: TelegramBot,
    inbox: Inbox,
    offset: i32,
    batch: VecDeque<Update>,
    stop: StopToken,
    stopped: teloxide::stop::StopFlag,
    allowed: Option<Vec<AllowedUpdate>>,
}

/// A long-polling listener that asks Telegram for the next batch (confirming the last)
/// only once `inbox` says the last batch was handled.
pub fn confirmed_polling(bot: TelegramBot, inbox: Inbox) -> impl UpdateListener<Err = teloxide::RequestError> {
    let (stop, stopped) = mk_stop_token();
    let state = Poller { bot, inbox, offset: 0, batch: VecDeque::new(), stop, stopped, allowed: None };
    StatefulListener::new_with_hints(
        state,
        updates_of,
        |poller: &mut Poller| poller.stop.clone(),
        Some(|poller: &mut Poller, hint: &mut dyn Iterator<Item = AllowedUpdate>| {
            poller.allowed = Some(hint.collect());
        }),
    )
}

/// The stream of updates the dispatcher reads.
fn updates_of(poller: &mut Poller) -> futures::stream::BoxStream<'_, Result<Update, teloxide::RequestError>> {
    futures::stream::unfold(poller, next_update).boxed()
}

async fn next_update(poller: &mut Poller) -> Option<(Result<Update, teloxide::RequestError>, &mut Poller)> {
    loop {
        if let Some(update) = poller.batch.pop_front() {
            // The dispatcher drops an update it cannot parse without running a handler:
            // waiting for it to be handled would hold every batch for the full limit.
            if !matches!(update.kind, UpdateKind::Error(_)) {
                poller.inbox.open(update.id.0);
            }
            return Some((Ok(update), poller));
        }
        let handled = poller.inbox.drained(HANDLING_LIMIT).await;
        if !handled {
            tracing::warn!("updates still being handled after {HANDLING_LIMIT:?}; taking the next batch anyway");
        }
        if poller.stopped.is_stopped() {
            // Confirm what was handled, so the next start does not get it again.
            let confirm = poller.bot.get_updates().offset(poller.offset).limit(1).timeout(0);
            if let Err(error) = confirm.await {
                tracing::debug!(%error, "could not confirm the last updates at shutdown; they come again");
            }
            return None;
        }
        let mut request = poller.bot.get_updates().offset(poller.offset).timeout(POLL_TIMEOUT_SECS);
        if let Some(allowed) = &poller.allowed {
            request = request.allowed_updates(allowed.clone());
        }
        let mut stopped = poller.stopped.clone();
        let answer = tokio::select! {
            answer = request.send() => answer,
            () = &mut stopped => continue,
        };
        match answer {
            Ok(updates) => {
                for update in updates {
                    poller.offset = update.id.as_offset();
                    poller.batch.push_back(update);
                }
            }
            Err(error) => {
                tokio::time::sleep(RETRY_PAUSE).await;
                return Some((Err(error), poller));
            }
        }
    }
}
