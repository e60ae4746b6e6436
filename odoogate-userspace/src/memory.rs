//! The daemon's allocator, and returning freed memory to the kernel.
//!
//! The daemon's binary uses mimalloc as its global allocator (`main.rs`),
//! through [`Allocator`].
//! mimalloc returns freed pages to the kernel after a delay, from within
//! later allocations of the thread that freed them. A thread that stops
//! allocating keeps what it freed: the main thread after start-up, where
//! it loaded the configuration, the eBPF programs and the kernel's BTF,
//! and the worker threads once a burst of connections or flows has ended.
//! So each long-lived thread collects its freed memory now and then.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::ffi::c_void;
use std::time::{Duration, Instant};

use libmimalloc_sys::{mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc, mi_zalloc_aligned};

/// The largest alignment of every block mimalloc's unaligned functions
/// return: its block sizes are multiples of the word size, and its pages
/// start at 16-byte boundaries.
const PLAIN_ALIGN: usize = std::mem::size_of::<usize>();

/// mimalloc as a global allocator. Unlike `mimalloc::MiMalloc`, which
/// calls mimalloc's aligned functions for every layout, it calls the plain
/// ones when they already give the alignment, which is almost always.
/// At word alignment, mimalloc's aligned path (3.3.2, `alloc-aligned.c`)
/// takes the plain block for sizes up to 1 KiB and for power-of-two
/// blocks up to 4 KiB, and over-allocates by the alignment for the others.
/// In a callgrind profile of the enforce benchmark, 15 of the 110
/// allocations per call took that over-allocating path.
pub struct Allocator;

// SAFETY: every pointer comes from mimalloc with at least the layout's
// size and alignment (the plain functions only for alignments up to
// PLAIN_ALIGN, which all their blocks have), and `mi_free` frees blocks
// of both kinds.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's allocation functions take any size.
        unsafe {
            match layout.align() <= PLAIN_ALIGN {
                true => mi_malloc(layout.size()).cast(),
                false => mi_malloc_aligned(layout.size(), layout.align()).cast(),
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            match layout.align() <= PLAIN_ALIGN {
                true => mi_zalloc(layout.size()).cast(),
                false => mi_zalloc_aligned(layout.size(), layout.align()).cast(),
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`'s alignment,
        // which the reallocated block keeps.
        unsafe {
            match layout.align() <= PLAIN_ALIGN {
                true => mi_realloc(ptr.cast::<c_void>(), new_size).cast(),
                false => mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast(),
            }
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every block has the layout's alignment, keeps its bytes when it
    /// grows or shrinks, and is zeroed when asked, on both paths.
    #[test]
    fn blocks_have_their_layouts_alignment() {
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 7, 8, 24, 100, 1000, 1837, 4097, 70_000, 300_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: the layout is valid and not zero-sized; each block
                // is written within its size and freed once with its layout.
                unsafe {
                    let block = Allocator.alloc(layout);
                    assert!(!block.is_null(), "size {size} align {align}");
                    assert_eq!(block.addr() % align, 0, "size {size} align {align}");
                    std::ptr::write_bytes(block, 0xa5, size);
                    let grown = Allocator.realloc(block, layout, size * 3);
                    assert!(!grown.is_null(), "size {size} align {align}");
                    assert_eq!(grown.addr() % align, 0, "size {size} align {align}");
                    assert!(std::slice::from_raw_parts(grown, size).iter().all(|&byte| byte == 0xa5));
                    let grown_layout = Layout::from_size_align(size * 3, align).unwrap();
                    let shrunk = Allocator.realloc(grown, grown_layout, size / 2 + 1);
                    assert!(!shrunk.is_null(), "size {size} align {align}");
                    assert_eq!(shrunk.addr() % align, 0, "size {size} align {align}");
                    assert!(std::slice::from_raw_parts(shrunk, size / 2 + 1).iter().all(|&byte| byte == 0xa5));
                    Allocator.dealloc(shrunk, Layout::from_size_align(size / 2 + 1, align).unwrap());

                    let zeroed = Allocator.alloc_zeroed(layout);
                    assert!(!zeroed.is_null(), "size {size} align {align}");
                    assert_eq!(zeroed.addr() % align, 0, "size {size} align {align}");
                    assert!(std::slice::from_raw_parts(zeroed, size).iter().all(|&byte| byte == 0));
                    Allocator.dealloc(zeroed, layout);
                }
            }
        }
    }

    /// A request no address space can hold gets null on both paths, and a
    /// failed reallocation leaves the block as it was, as `GlobalAlloc`
    /// requires.
    #[test]
    fn huge_requests_return_null() {
        let huge = isize::MAX as usize - 65_536;
        for align in [8, 64] {
            let layout = Layout::from_size_align(huge, align).unwrap();
            let small = Layout::from_size_align(16, align).unwrap();
            // SAFETY: the layouts are valid and not zero-sized; the small
            // block is written within its size and freed once.
            unsafe {
                assert!(Allocator.alloc(layout).is_null(), "align {align}");
                assert!(Allocator.alloc_zeroed(layout).is_null(), "align {align}");
                let block = Allocator.alloc(small);
                assert!(!block.is_null(), "align {align}");
                std::ptr::write_bytes(block, 0x5a, 16);
                assert!(Allocator.realloc(block, small, huge).is_null(), "align {align}");
                assert!(std::slice::from_raw_parts(block, 16).iter().all(|&byte| byte == 0x5a), "align {align}");
                Allocator.dealloc(block, small);
            }
        }
    }
}
