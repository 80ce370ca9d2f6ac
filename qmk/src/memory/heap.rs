//! The kernel heap: `alloc` for kernel data structures.
//!
//! One contiguous run of direct-mapped frames, used through the direct map,
//! managed by `linked_list_allocator`. Its size is fixed at boot; running out
//! is a kernel bug reported by the `alloc` error path (a panic).
//!
//! The heap lock is taken with interrupts off: the scheduler frees exited
//! threads and grows its queues in interrupt context, and a handler that
//! interrupted a holder on the same CPU would otherwise spin forever.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use linked_list_allocator::Heap;

use super::frame_allocator::{self, FrameAllocError, Zone, FRAME_SIZE};
use crate::arch::paging;
use crate::sync::SpinLock;

/// Heap size: enough for test data structures; small next to any `dmap`.
pub const HEAP_SIZE: u64 = 8 << 20;

/// `linked_list_allocator`'s heap behind an interrupt-safe spin lock.
struct KernelHeap(SpinLock<Heap>);

// SAFETY: every method takes the lock, so the allocator's state is changed
// by one context at a time; `Heap` hands out disjoint blocks.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock_irq()
            .allocate_first_fit(layout)
            .map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        let pointer = NonNull::new(pointer).expect("dealloc of a null pointer");
        // SAFETY: the caller passes a block this allocator returned for
        // `layout` (GlobalAlloc's contract).
        unsafe { self.0.lock_irq().deallocate(pointer, layout) }
    }
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(SpinLock::new(Heap::empty()));

/// Gives the heap its memory. Needs the frame allocator and the kernel page
/// tables (the heap is used through the direct map).
pub fn init() -> Result<(), FrameAllocError> {
    let run = frame_allocator::allocate_contiguous(Zone::DirectMapped, HEAP_SIZE / FRAME_SIZE, 1)?;
    let start = paging::direct_map_address(run.start.start_address())
        .expect("frames of the direct-mapped zone are direct-mapped");
    // SAFETY: the run was just handed out by the frame allocator, so nothing
    // else uses it; it is mapped writable through the direct map for the
    // rest of the run, and `init` runs once (the frame run is never freed).
    unsafe {
        HEAP.0
            .lock_irq()
            .init(start.as_mut_ptr(), HEAP_SIZE as usize)
    };
    Ok(())
}

/// Bytes of the heap in use and free.
pub fn usage() -> (usize, usize) {
    let heap = HEAP.0.lock_irq();
    (heap.used(), heap.free())
}
