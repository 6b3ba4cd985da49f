//! The server's global allocator: mimalloc, asked for plain blocks.
//!
//! The `mimalloc` crate hands every Rust allocation to `mi_malloc_aligned`,
//! even at alignment 1. mimalloc's aligned path (v2 and v3) only takes its
//! fast path when the size class already has a free block at hand; when it
//! has none, it over-allocates from a larger class
//! (microsoft/mimalloc#889), so the right class's page is never refilled
//! and an allocation can take that slow path every time: 2,700
//! instructions of every SelectOffer (callgrind, BENCHMARKS.md).
//!
//! As std's `System` allocator does, this one asks for a plain block when
//! the alignment is at most 16 and at most the size: every mimalloc block
//! of 16 bytes or more is 16-aligned, and a smaller one is aligned to its
//! size class (8), which is at least any alignment the size allows.
//! Anything else goes to the aligned functions.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// mimalloc with plain allocations for ordinary alignments (see the crate
/// docs).
#[derive(Debug, Default, Clone, Copy)]
pub struct MiMalloc;

/// mimalloc's guaranteed alignment (`MI_MAX_ALIGN_SIZE`) for blocks of at
/// least this size.
const PLAIN_ALIGN: usize = 16;

fn plain(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY: each function forwards to mimalloc's, which returns null on
// failure and blocks at least as aligned as asked: by the aligned functions,
// or by mimalloc's own guarantee for plain blocks (see `plain`).
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's functions take any size and alignment.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator; mimalloc's realloc keeps
        // the contents, and the new block is aligned as `alloc`'s would be.
        unsafe {
            if plain(layout.align(), new_size) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size up to 4 KiB (and some larger) at every alignment up to
    /// 4 KiB comes back aligned, keeps its bytes through a realloc to
    /// another size, and frees.
    #[test]
    fn blocks_are_aligned_and_keep_their_bytes() {
        let a = MiMalloc;
        let sizes = (1..=4096).chain([8191, 65_536, 1 << 20]);
        for size in sizes {
            for shift in 0..=12 {
                let align = 1usize << shift;
                let Ok(layout) = Layout::from_size_align(size, align) else {
                    continue;
                };
                // SAFETY: non-zero size; each block is freed once, with its layout.
                unsafe {
                    let p = if size % 2 == 0 {
                        a.alloc(layout)
                    } else {
                        a.alloc_zeroed(layout)
                    };
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    if size % 2 == 1 {
                        assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                    }
                    std::ptr::write_bytes(p, 0xa5, size);
                    let grown = size * 3 / 2 + 1;
                    let q = a.realloc(p, layout, grown);
                    assert!(!q.is_null());
                    assert_eq!(q as usize % align, 0, "realloc size {grown} align {align}");
                    assert!(
                        std::slice::from_raw_parts(q, size)
                            .iter()
                            .all(|&b| b == 0xa5)
                    );
                    a.dealloc(q, Layout::from_size_align(grown, align).unwrap_or(layout));
                }
            }
        }
    }
}
