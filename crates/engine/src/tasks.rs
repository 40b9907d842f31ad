//! Counting background tasks, so shutdown can wait for them (up to a grace period).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;

/// A count of running tasks and a way to wait for it to reach zero.
#[derive(Debug, Default, Clone)]
pub(crate) struct TaskCounter {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    running: AtomicUsize,
    idle: Notify,
}

/// Held by a running task; dropping it (also on panic or abort) counts the task out.
#[derive(Debug)]
pub(crate) struct TaskGuard {
    inner: Arc<Inner>,
}

impl TaskCounter {
    /// Counts a task in until the guard is dropped.
    pub(crate) fn enter(&self) -> TaskGuard {
        self.inner.running.fetch_add(1, Ordering::SeqCst);
        TaskGuard { inner: Arc::clone(&self.inner) }
    }

    /// Tasks running now.
    pub(crate) fn running(&self) -> usize {
        self.inner.running.load(Ordering::SeqCst)
    }

    /// Returns once no task is running.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            tokio::pin!(notified);
            // Register before checking, so a count reaching zero in between is not missed.
            notified.as_mut().enable();
            if self.running() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.inner.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_every_guard() {
        let tasks = TaskCounter::default();
        let a = tasks.enter();
        let b = tasks.enter();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(a);
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(b);
        });
        let start = tokio::time::Instant::now();
        tasks.idle().await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert_eq!(tasks.running(), 0);
    }
}
