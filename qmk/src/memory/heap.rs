//! The kernel heap: `alloc` for kernel data structures.
//!
//! One contiguous run of direct-mapped frames, used through the direct map,
//! managed by `linked_list_allocator`. Its size is fixed at boot; running out
//! is a kernel bug reported by the `alloc` error path (a panic).

use linked_list_allocator::LockedHeap;

use super::frame_allocator::{self, FrameAllocError, Zone, FRAME_SIZE};
use crate::arch::paging;

/// Heap size: enough for test data structures; small next to any `dmap`.
pub const HEAP_SIZE: u64 = 8 << 20;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Gives the heap its memory. Needs the frame allocator and the kernel page
/// tables (the heap is used through the direct map).
pub fn init() -> Result<(), FrameAllocError> {
    let run = frame_allocator::allocate_contiguous(Zone::DirectMapped, HEAP_SIZE / FRAME_SIZE, 1)?;
    let start = paging::direct_map_address(run.start.start_address())
        .expect("frames of the direct-mapped zone are direct-mapped");
    // SAFETY: the run was just handed out by the frame allocator, so nothing
    // else uses it; it is mapped writable through the direct map for the
    // rest of the run, and `init` runs once (the frame run is never freed).
    unsafe { HEAP.lock().init(start.as_mut_ptr(), HEAP_SIZE as usize) };
    Ok(())
}

/// Bytes of the heap in use and free.
pub fn usage() -> (usize, usize) {
    let heap = HEAP.lock();
    (heap.used(), heap.free())
}
