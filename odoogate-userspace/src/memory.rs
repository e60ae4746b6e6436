//! Returning freed memory to the kernel.
//!
//! The daemon's binary uses mimalloc as its global allocator (`main.rs`).
//! mimalloc returns freed pages to the kernel after a delay, from within
//! later allocations of the thread that freed them. A thread that stops
//! allocating keeps what it freed: the main thread after start-up, where
//! it loaded the configuration, the eBPF programs and the kernel's BTF,
//! and the worker threads once a burst of connections or flows has ended.
//! So each long-lived thread collects its freed memory now and then.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Shortest time between two collections by one thread.
const COLLECT_INTERVAL: Duration = Duration::from_secs(1);

/// Hands all the memory the calling thread has freed back to the kernel.
/// The daemon calls it on the main thread once start-up is done.
pub fn release_startup_memory() {
    collect(true);
}

/// Hands the calling thread's freed memory back to the kernel when its
/// last collection is [`COLLECT_INTERVAL`] old. Loops of long-lived threads call
/// it on every turn, and the proxy's runtime each time a worker parks.
pub fn release_freed_memory() {
    thread_local! {
        static LAST_COLLECTION: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    LAST_COLLECTION.with(|last| {
        if last.get().is_some_and(|at| now.duration_since(at) < COLLECT_INTERVAL) {
            return;
        }
        last.set(Some(now));
        collect(true);
    });
}

fn collect(force: bool) {
    // SAFETY: mi_collect takes no pointer, and may be called from any
    // thread at any time.
    unsafe { libmimalloc_sys::mi_collect(force) }
}
