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
/// Memory below 1 MiB holds firmware and loader structures: never handed out.
const LOW_MEMORY_END: u64 = 1 << 20;

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
/// `direct_map_mib` MiB (less if RAM ends sooner), and the heap.
pub fn init(boot_info: &BootInfo, direct_map_mib: u64) -> Result<(), MemoryInitError> {
    let ram_end = boot_info
        .memory_regions()
        .iter()
        .filter(|region| region.kind == MemoryKind::Usable)
        .map(|region| region.end)
        .max()
        .ok_or(MemoryInitError::NoUsableMemory)?;
    // No point in mapping addresses past the end of RAM; 2 MiB pages.
    let direct_map_end =
        (direct_map_mib << 20).min(ram_end.next_multiple_of(paging::LARGE_PAGE_SIZE));

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
    allocator.reserve_range(PhysAddr::new(0), PhysAddr::new(LOW_MEMORY_END));
    let image = arch::kernel_image();
    allocator.reserve_range(image.start, image.end);
    if ram_end > MAX_PHYSICAL_MEMORY {
        crate::println!(
            "qmk: note: RAM above {} GiB is ignored (the frame bitmap's limit)",
            MAX_PHYSICAL_MEMORY >> 30
        );
    }
    frame_allocator::install(allocator);

    paging::init(PhysAddr::new(direct_map_end)).map_err(MemoryInitError::PageTables)?;
    heap::init().map_err(MemoryInitError::Heap)?;
    Ok(())
}

/// Prints the memory layout and frame counts.
pub fn print_summary() {
    crate::println!(
        "qmk: memory: direct map {} MiB at {:#x}",
        paging::direct_map_end().as_u64() >> 20,
        paging::DIRECT_MAP_BASE.as_u64()
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
