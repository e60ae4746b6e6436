//! The threads that serve client connections, one single-threaded runtime
//! each.
//!
//! A connection stays on the thread that it was handed to, with its
//! upstream connections, timers and buffers. tokio's multi-threaded
//! scheduler instead wakes an idle worker whenever another has more than
//! one task ready, so a call often woke two threads, and a task could move
//! to the other core between its reads. Each shard here waits in its own
//! `epoll_wait`, as each of nginx's worker processes does.
//!
//! The accept loop (in [`super::Proxy::serve`]) hands each new connection to
//! the shard with the fewest open connections.

use std::cell::Cell;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    /// The index of the shard that runs on this thread. Any other thread
    /// reads 0, as in tests that run the proxy on one runtime.
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// Returns the index of the shard that runs the calling task.
pub(super) fn current() -> usize {
    CURRENT.with(Cell::get)
}

/// The running shards. Dropping this stops their runtimes, which drops the
/// tasks still on them, and waits for their threads to end. The proxy
/// ends or cancels its connections before that.
pub struct Shards {
    shards: Vec<Shard>,
}

struct Shard {
    handle: Handle,
    /// Connections being served on this shard.
    open: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Shards {
    /// Starts `count` shard threads, each with a single-threaded runtime.
    /// `on_park` runs on a shard's thread each time its runtime waits for
    /// events.
    pub fn start(count: usize, on_park: fn()) -> io::Result<Self> {
        let mut shards = Vec::with_capacity(count);
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread().on_thread_park(on_park).enable_all().build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new().name(format!("odoogate-proxy-{index}")).spawn(move || {
                CURRENT.with(|current| current.set(index));
                // The runtime runs the tasks spawned through its handle
                // while it waits for the stop.
                let _ = runtime.block_on(stopped);
            })?;
            shards.push(Shard { handle, open: Arc::new(AtomicUsize::new(0)), stop: Some(stop), thread: Some(thread) });
        }
        Ok(Self { shards })
    }

    /// Picks the shard with the fewest open connections and counts one
    /// more there until the returned guard drops.
    pub(super) fn pick(&self) -> (&Handle, OpenGuard) {
        let shard = self.shards.iter().min_by_key(|shard| shard.open.load(Ordering::Relaxed)).expect("at least one shard");
        shard.open.fetch_add(1, Ordering::Relaxed);
        (&shard.handle, OpenGuard(shard.open.clone()))
    }

    /// Returns the runtime of shard `index`, for tests that block it.
    #[cfg(test)]
    pub(crate) fn handle(&self, index: usize) -> &Handle {
        &self.shards[index].handle
    }

    /// Completes once each shard has run a task spawned on it now. A shard
    /// whose thread is blocked, or busy in a task that does not yield,
    /// delays this for as long. Returns false when a shard's runtime has
    /// stopped, so connections handed to it would be closed unserved.
    pub async fn run_a_task_on_each(&self) -> bool {
        let probes: Vec<_> = self.shards.iter().map(|shard| shard.handle.spawn(async {})).collect();
        for probe in probes {
            if probe.await.is_err() {
                return false;
            }
        }
        true
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        for shard in &mut self.shards {
            drop(shard.stop.take());
        }
        for shard in &mut self.shards {
            if let Some(thread) = shard.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// Counts a connection as open on its shard while it lives.
pub(super) struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn blocked_shard_delays_the_probe() {
        let shards = Shards::start(2, || {}).unwrap();
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        // A task that blocks its thread, as a task stuck in a system call or
        // a loop would.
        shards.handle(1).spawn(async move {
            let _ = blocked.recv();
        });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

        let stuck = runtime.block_on(async { tokio::time::timeout(Duration::from_millis(300), shards.run_a_task_on_each()).await });
        assert!(stuck.is_err(), "the probe completed while shard 1 was blocked");

        release.send(()).unwrap();
        let freed = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), shards.run_a_task_on_each()).await });
        assert_eq!(freed, Ok(true), "the probe did not complete once shard 1 was free");
    }

    #[test]
    fn stopped_shard_fails_the_probe() {
        let mut shards = Shards::start(2, || {}).unwrap();
        drop(shards.shards[0].stop.take());
        if let Some(thread) = shards.shards[0].thread.take() {
            thread.join().unwrap();
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

        let probed = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), shards.run_a_task_on_each()).await });
        assert_eq!(probed, Ok(false));
    }
}
