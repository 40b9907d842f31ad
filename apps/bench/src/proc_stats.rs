//! What the kernel knows about this process: CPU time of a runtime's threads, and memory.
//!
//! Read from `/proc` (Linux), so no `unsafe` call to `getrusage` is needed, and CPU is
//! counted per thread: the simulator and the driver run on other threads and are left out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// CPU time of every thread a tokio runtime built by [`ThreadCpu::runtime`] ever ran.
#[derive(Debug, Default)]
pub struct ThreadCpu {
    live: Mutex<Vec<u32>>,
    ended_ns: AtomicU64,
}

impl ThreadCpu {
    /// A multi-thread runtime with `workers` workers whose threads (workers and blocking
    /// pool) are counted.
    ///
    /// # Errors
    /// When the runtime cannot be built.
    pub fn runtime(self: &Arc<Self>, name: &str, workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
        let on_start = Arc::clone(self);
        let on_stop = Arc::clone(self);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(name)
            .enable_all()
            .on_thread_start(move || on_start.enter())
            .on_thread_stop(move || on_stop.leave())
            .build()
    }

    fn enter(&self) {
        if let Some(tid) = current_tid() {
            self.live.lock().unwrap().push(tid);
        }
    }

    fn leave(&self) {
        let Some(tid) = current_tid() else { return };
        let spent = thread_cpu_ns(tid).unwrap_or(0);
        let mut live = self.live.lock().unwrap();
        live.retain(|t| *t != tid);
        self.ended_ns.fetch_add(spent, Ordering::SeqCst);
    }

    /// Nanoseconds on CPU so far, over the runtime's live and ended threads.
    pub fn total_ns(&self) -> u64 {
        let live = self.live.lock().unwrap();
        let running: u64 = live.iter().filter_map(|tid| thread_cpu_ns(*tid)).sum();
        running + self.ended_ns.load(Ordering::SeqCst)
    }
}

/// This thread's id, from `/proc/thread-self` (a link to `<pid>/task/<tid>`).
fn current_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Nanoseconds thread `tid` of this process spent on a CPU (first field of `schedstat`).
fn thread_cpu_ns(tid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Resident memory of this process in KiB: the peak (`VmHWM`) and now (`VmRSS`).
pub fn memory_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_cpu_of_runtime_threads() {
        let cpu = Arc::new(ThreadCpu::default());
        let runtime = cpu.runtime("cpu-test", 1).unwrap();
        let before = cpu.total_ns();
        runtime.block_on(async {
            tokio::spawn(async {
                let mut x = 0u64;
                for i in 0..20_000_000u64 {
                    x = x.wrapping_mul(31).wrapping_add(i);
                }
                std::hint::black_box(x);
            })
            .await
            .unwrap();
        });
        assert!(cpu.total_ns() > before, "the spin was counted");
        let (hwm, rss) = memory_kib().unwrap();
        assert!(hwm >= rss && rss > 0);
    }
}
