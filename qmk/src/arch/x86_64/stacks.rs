//! Kernel stacks, each with an unmapped guard page below it: the bootstrap
//! CPU's (in the kernel image) and stacks allocated at run time.
//!
//! Stacks grow down, so a page that is left unmapped right below a stack
//! turns an overflow into a page fault (reported on the page-fault IST stack)
//! instead of silent corruption of whatever lies below. The kernel page
//! tables skip the pages [`guard_pages`] names; [`allocate_stack`] maps new
//! stacks (for other CPUs and threads) in their own region, guard page
//! included.

use ::x86_64::VirtAddr;

use super::cpu_tables::{IstSlot, IST_SLOT_COUNT};
use crate::static_storage::StaticStorage;

/// Size of each interrupt stack. Handlers format reports, which needs a few KiB.
pub const IST_STACK_SIZE: usize = 16 * 1024;
/// Size of the boot stack, on which the kernel and its tests run.
pub const BOOT_STACK_SIZE: usize = 256 * 1024;
const PAGE_SIZE: usize = 4096;

/// A stack preceded by one page that the kernel leaves unmapped.
#[repr(C, align(4096))]
pub struct GuardedStack<const SIZE: usize> {
    guard_page: [u8; PAGE_SIZE],
    stack: [u8; SIZE],
}

impl<const SIZE: usize> GuardedStack<SIZE> {
    /// A zeroed stack (placed in `.bss` when used in a static).
    pub const fn new() -> Self {
        Self {
            guard_page: [0; PAGE_SIZE],
            stack: [0; SIZE],
        }
    }
}

/// Where a stack's guard page and top are.
#[derive(Clone, Copy, Debug)]
pub struct StackBounds {
    pub guard_page: VirtAddr,
    /// The initial stack pointer (one past the highest byte).
    pub top: VirtAddr,
}

impl StackBounds {
    fn of<const SIZE: usize>(stack: *const GuardedStack<SIZE>) -> Self {
        let start = VirtAddr::from_ptr(stack);
        Self {
            guard_page: start,
            top: start + (PAGE_SIZE + SIZE) as u64,
        }
    }
}

type IstStacks = [GuardedStack<IST_STACK_SIZE>; IST_SLOT_COUNT];

/// The bootstrap CPU's interrupt stacks. Only their addresses are used: the
/// CPU writes them, Rust code never reads or writes them.
static BOOTSTRAP_IST_STACKS: StaticStorage<IstStacks> =
    StaticStorage::new([const { GuardedStack::new() }; IST_SLOT_COUNT]);

/// The boot stack (the assembly entry switches to `qmk_boot_stack_top`).
static BOOT_STACK: StaticStorage<GuardedStack<BOOT_STACK_SIZE>> =
    StaticStorage::new(GuardedStack::new());

// `StaticStorage` is `repr(C)` with its contents first, so the stack's
// guard page starts at the static's own address.
core::arch::global_asm!(
    ".global qmk_boot_stack_top",
    ".set qmk_boot_stack_top, {boot_stack} + {size}",
    boot_stack = sym BOOT_STACK,
    size = const PAGE_SIZE + BOOT_STACK_SIZE,
);

/// Bounds of the bootstrap CPU's interrupt stack for `slot`.
pub fn bootstrap_ist_stack(slot: IstSlot) -> StackBounds {
    let stacks: *const IstStacks = BOOTSTRAP_IST_STACKS.address();
    // `wrapping_add` computes an address only; nothing is dereferenced.
    StackBounds::of(
        stacks
            .cast::<GuardedStack<IST_STACK_SIZE>>()
            .wrapping_add(slot as usize),
    )
}

/// Bounds of the boot stack.
pub fn boot_stack() -> StackBounds {
    StackBounds::of(BOOT_STACK.address())
}

/// Every guard page of the bootstrap CPU's stacks.
pub fn guard_pages() -> impl Iterator<Item = VirtAddr> {
    IstSlot::ALL
        .into_iter()
        .map(|slot| bootstrap_ist_stack(slot).guard_page)
        .chain(core::iter::once(boot_stack().guard_page))
}

/// Stacks allocated at run time (other CPUs' stacks, thread stacks) are
/// mapped here, one PML4 slot (512 GiB) of their own, each above an
/// unmapped guard page. Address space is handed out by bumping a cursor and
/// never reused: plenty for a test kernel, and a stale pointer into a freed
/// stack can never land in a new one.
pub const STACK_REGION: core::ops::Range<u64> = 0xffff_d000_0000_0000..0xffff_d080_0000_0000;
static NEXT_STACK_OFFSET: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Maps a new kernel stack of `size_pages` pages (frames from the
/// direct-mapped zone) below which one page stays unmapped, and returns its
/// bounds. Stacks are never freed.
pub fn allocate_stack(size_pages: u64) -> Result<StackBounds, super::paging::MapError> {
    use ::x86_64::structures::paging::PageTableFlags;

    use super::paging;
    use crate::memory::frame_allocator::{self, Zone};

    assert!(size_pages > 0, "a stack needs at least one page");
    let span = (size_pages + 1) * PAGE_SIZE as u64;
    let offset = NEXT_STACK_OFFSET.fetch_add(span, core::sync::atomic::Ordering::Relaxed);
    let guard_page = STACK_REGION.start + offset;
    assert!(
        guard_page + span <= STACK_REGION.end,
        "the kernel stack region is exhausted: {span} more bytes requested at offset {offset:#x}"
    );
    let flags = PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE | PageTableFlags::GLOBAL;
    for page in 1..=size_pages {
        let frame = frame_allocator::allocate_frame(Zone::DirectMapped)?;
        paging::map_page(
            VirtAddr::new(guard_page + page * PAGE_SIZE as u64),
            frame,
            flags,
        )?;
    }
    Ok(StackBounds {
        guard_page: VirtAddr::new(guard_page),
        top: VirtAddr::new(guard_page + span),
    })
}
