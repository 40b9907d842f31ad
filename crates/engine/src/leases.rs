//! The leases this process holds a live task for. Only these are renewed, so a job whose
//! task ended without finishing or delivering it (a write refused, a lost commit
//! acknowledgement, a postponed delivery) is left to expire and is rescued like a dead
//! process's job, by this process or another.

use crate::Dispatcher;
use mediagen_domain::{Job, JobId, Lease};
use std::collections::HashMap;
use std::sync::Mutex;

/// Job → the lease its live task holds (the newest one when a rescue gave this process
/// the job again under a new epoch while an older task still runs).
#[derive(Default)]
pub(crate) struct LiveLeases {
    held: Mutex<HashMap<JobId, Lease>>,
}

impl LiveLeases {
    /// What the heartbeat renews.
    pub(crate) fn snapshot(&self) -> Vec<(JobId, Lease)> {
        self.held.lock().unwrap().iter().map(|(job, lease)| (*job, lease.clone())).collect()
    }
}

/// Keeps a job's lease renewed for as long as the task that holds it lives.
pub(crate) struct LeaseGuard {
    dispatcher: Dispatcher,
    job: JobId,
    lease: Option<Lease>,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let Some(lease) = &self.lease else { return };
        let mut held = self.dispatcher.inner.leases.held.lock().unwrap();
        // A newer task of the same job (a later epoch) keeps its entry.
        if held.get(&self.job) == Some(lease) {
            held.remove(&self.job);
        }
    }
}

impl Dispatcher {
    /// Registers the task about to work on `job` under the lease it was handed; the lease
    /// is renewed until the returned guard is dropped.
    pub(crate) fn hold_lease(&self, job: &Job) -> LeaseGuard {
        let lease = job.lease.clone();
        match &lease {
            Some(lease) => {
                self.inner.leases.held.lock().unwrap().insert(job.id, lease.clone());
            }
            None => tracing::error!(job_id = %job.id, "a job handed to a task without a lease"),
        }
        LeaseGuard { dispatcher: self.clone(), job: job.id, lease }
    }
}
