//! Stack sizes and the per-CPU exception stacks.
//!
//! The kernel runs on SP_EL0; an exception switches to SP_EL1, this CPU's
//! exception stack (see `boot`). An exception stack holds one saved frame
//! (`exceptions::SAVED_CONTEXT_SIZE`) plus the Rust handler's frames.

/// The bootstrap CPU's boot stack (its "main" context).
pub const BOOT_STACK_SIZE: usize = 256 * 1024;
/// One CPU's exception stack.
pub const EXCEPTION_STACK_SIZE: usize = 32 * 1024;

use super::paging::{self, PageTableFlags, PAGE_SIZE};
use super::VirtAddr;

extern "C" {
    /// The unmapped page below the boot stack (see `boot`).
    static qmk_boot_stack_guard: u8;
}

/// The bootstrap CPU's boot stack: the guard page below it, which
/// `paging::init` leaves unmapped, and its top.
pub fn boot_stack() -> StackBounds {
    let guard_page = VirtAddr::new((&raw const qmk_boot_stack_guard) as u64);
    StackBounds {
        guard_page,
        top: guard_page + PAGE_SIZE + BOOT_STACK_SIZE as u64,
    }
}

/// Pages of the kernel image that stay unmapped: the boot stack's guard page.
pub fn guard_pages() -> impl Iterator<Item = VirtAddr> {
    core::iter::once(boot_stack().guard_page)
}

/// Where a stack's guard page and top are.
#[derive(Clone, Copy, Debug)]
pub struct StackBounds {
    pub guard_page: VirtAddr,
    /// The initial stack pointer (one past the highest byte).
    pub top: VirtAddr,
}

/// Stacks allocated at run time (thread stacks) are mapped here, one
/// level-0 slot (512 GiB) of their own, each above an unmapped guard page.
/// Address space is handed out by bumping a cursor and never reused, as on
/// x86_64.
pub const STACK_REGION: core::ops::Range<u64> = 0xffff_d000_0000_0000..0xffff_d080_0000_0000;
static NEXT_STACK_OFFSET: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Maps a new kernel stack of `size_pages` pages (frames from the
/// direct-mapped zone) below which one page stays unmapped, and returns its
/// bounds. Stacks are never freed.
///
/// # Panics
///
/// If `size_pages` is 0 or the stack region is exhausted.
pub fn allocate_stack(size_pages: u64) -> Result<StackBounds, paging::MapError> {
    use crate::memory::frame_allocator::{self, Zone};

    assert!(size_pages > 0, "a stack needs at least one page");
    let span = (size_pages + 1) * PAGE_SIZE;
    let offset = NEXT_STACK_OFFSET.fetch_add(span, core::sync::atomic::Ordering::Relaxed);
    let guard_page = STACK_REGION.start + offset;
    assert!(
        guard_page + span <= STACK_REGION.end,
        "the kernel stack region is exhausted: {span} more bytes requested at offset {offset:#x}"
    );
    let flags = PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    for page in 1..=size_pages {
        let frame = frame_allocator::allocate_frame(Zone::DirectMapped)?;
        paging::map_page(VirtAddr::new(guard_page + page * PAGE_SIZE), frame, flags)?;
    }
    Ok(StackBounds {
        guard_page: VirtAddr::new(guard_page),
        top: VirtAddr::new(guard_page + span),
    })
}
