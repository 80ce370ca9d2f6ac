//! Physical memory (the frame allocator) and kernel memory (page tables, heap).

pub mod frame_allocator;
pub mod heap;

use core::fmt;

use crate::arch::{self, paging, PhysAddr};
use crate::boot_info::{BootInfo, MemoryKind};
use crate::static_storage::StaticStorage;
use frame_allocator::{FrameAllocError, FrameAllocator, Zone, FRAME_SIZE};

/// Physical memory the frame bitmaps can describe; RAM above is ignored (with
/// a note). 16 GiB costs 1 MiB of `.bss` (two bits per frame).
pub const MAX_PHYSICAL_MEMORY: u64 = 16 << 30;
const FRAME_BITMAP_WORDS: usize = FrameAllocator::storage_words(MAX_PHYSICAL_MEMORY / FRAME_SIZE);

static FRAME_BITMAP: StaticStorage<[u64; FRAME_BITMAP_WORDS]> =
    StaticStorage::new([0; FRAME_BITMAP_WORDS]);

/// Why memory could not be set up.
#[derive(Debug)]
pub enum MemoryInitError {
    NoUsableMemory,
    PageTables(paging::MapError),
    Heap(FrameAllocError),
}

impl fmt::Display for MemoryInitError {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::NoUsableMemory => write!(formatter, "the memory map has no usable RAM"),
            Self::PageTables(error) => {
                write!(formatter, "building the kernel page tables: {error}")
            }
            Self::Heap(error) => write!(formatter, "reserving the kernel heap: {error}"),
        }
    }
}

/// Sets up the frame allocator, the kernel page tables with a direct map of
/// `direct_map_mib` MiB from the start of RAM (less if RAM ends sooner), and
/// the heap.
///
/// The direct map starts at the lowest usable RAM address rounded down to
/// 2 MiB: physical 0 on a PC, 0x4000_0000 on QEMU `virt` (aarch64). Either
/// way a physical address `p` in it appears at `DIRECT_MAP_BASE + p`.
pub fn init(boot_info: &BootInfo, direct_map_mib: u64) -> Result<(), MemoryInitError> {
    let usable = || {
        boot_info
            .memory_regions()
            .iter()
            .filter(|region| region.kind == MemoryKind::Usable)
    };
    let ram_start = usable()
        .map(|region| region.start)
        .min()
        .ok_or(MemoryInitError::NoUsableMemory)?;
    let ram_end = usable().map(|region| region.end).max().unwrap_or(ram_start);
    let direct_map_start = ram_start - ram_start % paging::LARGE_PAGE_SIZE;
    // No point in mapping addresses past the end of RAM; 2 MiB pages.
    let direct_map_end = direct_map_start
        .saturating_add(direct_map_mib << 20)
        .min(ram_end.next_multiple_of(paging::LARGE_PAGE_SIZE));

    let mut allocator = FrameAllocator::new(
        FRAME_BITMAP.claim("the frame bitmap"),
        direct_map_end / FRAME_SIZE,
    );
    for region in boot_info.memory_regions() {
        if region.kind == MemoryKind::Usable {
            allocator.add_usable_range(PhysAddr::new(region.start), PhysAddr::new(region.end));
        }
    }
    // Reserved after adding usable RAM, so that a usable region overlapping
    // them cannot make them allocatable again. Reserved frames leave the
    // allocator: they count neither as managed nor as used.
    for reserved in arch::reserved_physical_ranges() {
        allocator.reserve_range(reserved.start, reserved.end);
    }
    if ram_end > MAX_PHYSICAL_MEMORY {
        crate::println!(
            "qmk: note: RAM above {} GiB is ignored (the frame bitmap's limit)",
            MAX_PHYSICAL_MEMORY >> 30
        );
    }
    frame_allocator::install(allocator);

    paging::init(PhysAddr::new(direct_map_start)..PhysAddr::new(direct_map_end))
        .map_err(MemoryInitError::PageTables)?;
    heap::init().map_err(MemoryInitError::Heap)?;
    Ok(())
}

/// Prints the memory layout and frame counts.
pub fn print_summary() {
    let direct_map = paging::direct_map_range();
    crate::println!(
        "qmk: memory: direct map {} MiB at {:#x} (physical {:#x})",
        (direct_map.end.as_u64() - direct_map.start.as_u64()) >> 20,
        paging::DIRECT_MAP_BASE.as_u64() + direct_map.start.as_u64(),
        direct_map.start.as_u64()
    );
    for zone in Zone::ALL {
        let counts = frame_allocator::counts(zone);
        crate::println!(
            "qmk: memory: zone {zone:?}: {} frames managed, {} free, {} used",
            counts.managed,
            counts.free,
            counts.used()
        );
    }
    let total = frame_allocator::total_counts();
    crate::println!(
        "qmk: memory: all zones: {} frames managed, {} free, {} used",
        total.managed,
        total.free,
        total.used()
    );
    let (used, free) = heap::usage();
    crate::println!("qmk: memory: heap {used} bytes used, {free} free");
}
