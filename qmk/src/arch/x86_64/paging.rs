//! The kernel's page tables.
//!
//! Virtual layout (one address space, shared by every CPU):
//!
//! | range                                   | what                                   | pages |
//! |-----------------------------------------|----------------------------------------|-------|
//! | `__kernel_start..__kernel_end` (~1 MiB) | kernel image, identity-mapped          | 4 KiB |
//! | `0xffff_8000_0000_0000` + `[0, dmap)`   | direct map of low physical memory      | 2 MiB |
//! | `0xffff_c000_0000_0000`, 512 GiB        | per-CPU window region (quickmap)       | 4 KiB |
//! | `0xffff_d000_0000_0000`, 512 GiB        | run-time kernel stacks (`stacks.rs`)   | 4 KiB |
//! | `0xffff_e000_0000_0000`, 512 GiB        | scratch region for tests               | 4 KiB |
//! | `0xffff_f000_0000_0000`, 512 GiB        | devices (APIC) and firmware tables     | 4 KiB |
//!
//! Physical memory at or above `dmap` (high memory) is mapped nowhere: only a
//! temporary mapping can reach it. The window region sits in its own PML4
//! slot, far from the 2 MiB-page direct map, because QEMU's TCG tracks all
//! large pages as one merged span and flushes its whole software TLB when an
//! `invlpg` hits inside that span (DESIGN.md §5); window invalidations must
//! stay one-page cheap.
//!
//! Page-table pages always come from the direct-mapped zone and are accessed
//! through the direct map. Entries are read and written with volatile
//! accesses through raw pointers, never through `&mut PageTable`: the CPU
//! sets accessed/dirty bits behind our back, and a leaf table handed out by
//! [`ensure_leaf_table`] is written by its user (quickmap) without this
//! module's lock.
//!
//! Structural changes (creating tables, mapping, unmapping) take one lock,
//! with interrupts off (a handler on the same CPU could otherwise spin on
//! it forever). [`unmap_page`] invalidates on every CPU online (a remote
//! shootdown once other CPUs run); [`unmap_page_local_only`] only on this
//! one, for tests that need a stale translation elsewhere.

use core::fmt;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ::x86_64::instructions::tlb;
use ::x86_64::registers::control::{Cr3, Cr3Flags};
use ::x86_64::structures::paging::page_table::PageTableEntry;
pub use ::x86_64::structures::paging::PageTableFlags;
use ::x86_64::structures::paging::{PhysFrame, Size4KiB};
use ::x86_64::{PhysAddr, VirtAddr};

use super::stacks;
use crate::memory::frame_allocator::{self, FrameAllocError, Zone};
use crate::sync::SpinLock;

/// Where physical address 0 appears in the direct map.
pub const DIRECT_MAP_BASE: VirtAddr = VirtAddr::new_truncate(0xffff_8000_0000_0000);
/// The per-CPU window region (one PML4 slot, 512 GiB), for quickmap.
pub const WINDOW_REGION: Range<u64> = 0xffff_c000_0000_0000..0xffff_c080_0000_0000;
/// A region tests may map single pages into (one PML4 slot).
pub const SCRATCH_REGION: Range<u64> = 0xffff_e000_0000_0000..0xffff_e080_0000_0000;
/// Device registers (the local APIC) and firmware tables (one PML4 slot).
pub const DEVICE_REGION: Range<u64> = 0xffff_f000_0000_0000..0xffff_f080_0000_0000;

/// Size of a page and of a large page.
pub const PAGE_SIZE: u64 = 4096;
pub const LARGE_PAGE_SIZE: u64 = 2 << 20;
/// Entries in one table.
pub const ENTRIES_PER_TABLE: usize = 512;
/// The boot page tables map the first GiB at the direct-map base; page
/// tables built before the switch must lie there.
const BOOT_MAPPED_LIMIT: u64 = 1 << 30;

/// Flags of entries that point at a lower-level table. Permissions are
/// decided at the leaf, so upper levels allow everything a kernel needs.
const TABLE_FLAGS: PageTableFlags = PageTableFlags::PRESENT.union(PageTableFlags::WRITABLE);

/// End of the direct map (physical), 0 until the kernel tables are built.
static DIRECT_MAP_END: AtomicU64 = AtomicU64::new(0);
static KERNEL_TABLES_ACTIVE: AtomicBool = AtomicBool::new(false);
/// The root (PML4) frame; the lock serialises structural changes.
static ROOT_TABLE: SpinLock<Option<PhysFrame>> = SpinLock::new(None);

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    NotPageAligned(VirtAddr),
    AlreadyMapped {
        address: VirtAddr,
        existing: u64,
    },
    /// The address lies inside a 2 MiB or 1 GiB mapping (e.g. the direct map).
    InsideLargePage(VirtAddr),
    OutOfFrames(FrameAllocError),
    /// Mapping before the kernel page tables exist.
    NotInitialised,
}

impl fmt::Display for MapError {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::NotPageAligned(address) => {
                write!(
                    formatter,
                    "address {:#x} is not 4 KiB-aligned",
                    address.as_u64()
                )
            }
            Self::AlreadyMapped { address, existing } => write!(
                formatter,
                "address {:#x} is already mapped (entry {existing:#x})",
                address.as_u64()
            ),
            Self::InsideLargePage(address) => write!(
                formatter,
                "address {:#x} lies inside a large-page mapping",
                address.as_u64()
            ),
            Self::OutOfFrames(error) => write!(formatter, "no frame for a page table: {error}"),
            Self::NotInitialised => write!(formatter, "the kernel page tables are not built yet"),
        }
    }
}

impl From<FrameAllocError> for MapError {
    fn from(error: FrameAllocError) -> Self {
        Self::OutOfFrames(error)
    }
}

/// Why an unmapping failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnmapError {
    NotMapped(VirtAddr),
    InsideLargePage(VirtAddr),
    NotPageAligned(VirtAddr),
}

/// A translation found by [`translate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The physical address the virtual address maps to.
    pub physical: PhysAddr,
    /// The flags of the leaf entry.
    pub flags: PageTableFlags,
    /// The size of the page containing the address.
    pub page_size: u64,
}

/// The end of the direct map: physical addresses below it are mapped at
/// `DIRECT_MAP_BASE + address`.
pub fn direct_map_end() -> PhysAddr {
    PhysAddr::new(DIRECT_MAP_END.load(Ordering::Acquire))
}

/// The physical range of the direct map: from 0 on x86_64.
pub fn direct_map_range() -> core::ops::Range<PhysAddr> {
    PhysAddr::new(0)..direct_map_end()
}

/// The direct-map address of `physical`, or `None` for high memory.
pub fn direct_map_address(physical: PhysAddr) -> Option<VirtAddr> {
    (physical < direct_map_end()).then(|| DIRECT_MAP_BASE + physical.as_u64())
}

/// A pointer to entry `index` of the table in `table_frame`, via the direct map.
fn entry_pointer(table_frame: PhysFrame, index: usize) -> *mut PageTableEntry {
    let physical = table_frame.start_address().as_u64();
    let mapped_limit = if KERNEL_TABLES_ACTIVE.load(Ordering::Acquire) {
        DIRECT_MAP_END.load(Ordering::Acquire)
    } else {
        BOOT_MAPPED_LIMIT
    };
    assert!(
        physical < mapped_limit,
        "page table at {physical:#x} is not direct-mapped (limit {mapped_limit:#x}): page tables must come from Zone::DirectMapped"
    );
    assert!(
        index < ENTRIES_PER_TABLE,
        "page-table index {index} out of range"
    );
    let table: *mut PageTableEntry = (DIRECT_MAP_BASE + physical).as_mut_ptr();
    // An address computation only; the table has ENTRIES_PER_TABLE entries.
    table.wrapping_add(index)
}

fn read_entry(table_frame: PhysFrame, index: usize) -> PageTableEntry {
    // SAFETY: `entry_pointer` returns an in-bounds entry of a page table
    // that is mapped through the direct map (asserted). Page tables are
    // never freed, and volatile reads are the right access for memory the
    // CPU updates asynchronously (accessed/dirty bits).
    unsafe { entry_pointer(table_frame, index).read_volatile() }
}

fn write_entry(table_frame: PhysFrame, index: usize, entry: PageTableEntry) {
    // SAFETY: as in `read_entry`; callers hold the page-table lock, so no
    // other code changes the structure at the same time, and an aligned
    // 8-byte store is atomic for the CPU's page walker.
    unsafe { entry_pointer(table_frame, index).write_volatile(entry) }
}

fn make_entry(physical: PhysAddr, flags: PageTableFlags) -> PageTableEntry {
    let mut entry = PageTableEntry::new();
    entry.set_addr(physical, flags);
    entry
}

/// A fresh, zeroed page-table page from the direct-mapped zone.
fn allocate_table() -> Result<PhysFrame, MapError> {
    let frame = frame_allocator::allocate_frame(Zone::DirectMapped)?;
    for index in 0..ENTRIES_PER_TABLE {
        write_entry(frame, index, PageTableEntry::new());
    }
    Ok(frame)
}

/// The index of `address` in the table at `level` (4 = PML4 … 1 = PT).
fn table_index(address: VirtAddr, level: u32) -> usize {
    ((address.as_u64() >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

/// Walks from `root` to the table at `target_level` that covers `address`,
/// creating missing tables on the way.
fn walk_creating(
    root: PhysFrame,
    address: VirtAddr,
    target_level: u32,
) -> Result<PhysFrame, MapError> {
    let mut table = root;
    for level in (target_level + 1..=4).rev() {
        let index = table_index(address, level);
        let entry = read_entry(table, index);
        table = if entry.is_unused() {
            let new_table = allocate_table()?;
            write_entry(
                table,
                index,
                make_entry(new_table.start_address(), TABLE_FLAGS),
            );
            new_table
        } else if entry.flags().contains(PageTableFlags::HUGE_PAGE) {
            return Err(MapError::InsideLargePage(address));
        } else {
            PhysFrame::containing_address(entry.addr())
        };
    }
    Ok(table)
}

/// Walks from `root` to the table at `target_level` covering `address`
/// without creating anything; `None` if a level is missing or a large page.
fn walk_existing(root: PhysFrame, address: VirtAddr, target_level: u32) -> Option<PhysFrame> {
    let mut table = root;
    for level in (target_level + 1..=4).rev() {
        let entry = read_entry(table, table_index(address, level));
        if entry.is_unused() || entry.flags().contains(PageTableFlags::HUGE_PAGE) {
            return None;
        }
        table = PhysFrame::containing_address(entry.addr());
    }
    Some(table)
}

fn check_page_aligned(address: VirtAddr) -> Result<(), MapError> {
    if address.is_aligned(PAGE_SIZE) {
        Ok(())
    } else {
        Err(MapError::NotPageAligned(address))
    }
}

fn map_page_in(
    root: PhysFrame,
    address: VirtAddr,
    frame: PhysFrame<Size4KiB>,
    flags: PageTableFlags,
) -> Result<(), MapError> {
    check_page_aligned(address)?;
    let leaf = walk_creating(root, address, 1)?;
    let index = table_index(address, 1);
    let existing = read_entry(leaf, index);
    if !existing.is_unused() {
        return Err(MapError::AlreadyMapped {
            address,
            existing: existing.addr().as_u64() | existing.flags().bits(),
        });
    }
    // A not-present entry is never cached by the TLB, so making it present
    // needs no invalidation.
    write_entry(
        leaf,
        index,
        make_entry(frame.start_address(), flags | PageTableFlags::PRESENT),
    );
    Ok(())
}

fn map_large_page_in(
    root: PhysFrame,
    address: VirtAddr,
    physical: PhysAddr,
    flags: PageTableFlags,
) -> Result<(), MapError> {
    let directory = walk_creating(root, address, 2)?;
    let index = table_index(address, 2);
    let flags = flags | PageTableFlags::PRESENT | PageTableFlags::HUGE_PAGE;
    write_entry(directory, index, make_entry(physical, flags));
    Ok(())
}

fn root_table() -> Result<PhysFrame, MapError> {
    ROOT_TABLE.lock_irq().ok_or(MapError::NotInitialised)
}

extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __data_end: u8;
}

/// The kernel image's sections, from the linker script.
fn kernel_sections() -> [(Range<u64>, PageTableFlags); 3] {
    let text = (&raw const __text_start) as u64..(&raw const __text_end) as u64;
    let rodata = (&raw const __rodata_start) as u64..(&raw const __rodata_end) as u64;
    let data = (&raw const __data_start) as u64..(&raw const __data_end) as u64;
    let global = PageTableFlags::GLOBAL;
    [
        (text, global),
        (rodata, global | PageTableFlags::NO_EXECUTE),
        (
            data,
            global | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE,
        ),
    ]
}

/// Builds the kernel page tables and switches this CPU to them.
///
/// `direct_map` (from 0, to a multiple of 2 MiB) is what the direct map
/// covers. Frames for the tables come from the direct-mapped zone, which
/// must be set up.
///
/// # Panics
///
/// If the direct map does not start at 0 (RAM starts there on a PC, and the
/// boot page tables' limit assumes it) or does not end on 2 MiB.
pub fn init(direct_map: Range<PhysAddr>) -> Result<(), MapError> {
    assert_eq!(
        direct_map.start.as_u64(),
        0,
        "the x86_64 direct map starts at physical 0, not at {:#x}",
        direct_map.start.as_u64()
    );
    let direct_map_end = direct_map.end;
    assert!(
        direct_map_end.is_aligned(LARGE_PAGE_SIZE),
        "the direct map ends at {:#x}, which is not a multiple of 2 MiB",
        direct_map_end.as_u64()
    );
    let mut root_slot = ROOT_TABLE.lock_irq();
    assert!(root_slot.is_none(), "the kernel page tables are built once");
    let root = allocate_table()?;

    // The kernel image, identity-mapped with 4 KiB pages so that each section
    // gets its own permissions and stack guard pages stay unmapped.
    for (section, flags) in kernel_sections() {
        for address in section.step_by(PAGE_SIZE as usize) {
            let is_guard_page = stacks::guard_pages().any(|guard| guard.as_u64() == address);
            if is_guard_page {
                continue;
            }
            let frame = PhysFrame::containing_address(PhysAddr::new(address));
            map_page_in(root, VirtAddr::new(address), frame, flags)?;
        }
    }

    // The direct map: writable, never executable, global (the same in every
    // address space), write-back (PAT entry 0).
    let direct_flags =
        PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE | PageTableFlags::GLOBAL;
    for physical in (0..direct_map_end.as_u64()).step_by(LARGE_PAGE_SIZE as usize) {
        map_large_page_in(
            root,
            DIRECT_MAP_BASE + physical,
            PhysAddr::new(physical),
            direct_flags,
        )?;
    }

    DIRECT_MAP_END.store(direct_map_end.as_u64(), Ordering::Release);
    // SAFETY: the new tables map everything the kernel uses from here on:
    // its image (code, data, the boot stack we run on, descriptor tables),
    // and through the direct map the page tables themselves and the heap.
    // Only the loader's memory and the boot tables' identity map of the
    // first GiB disappear, and the boot info was copied out of the former.
    unsafe { Cr3::write(root, Cr3Flags::empty()) };
    KERNEL_TABLES_ACTIVE.store(true, Ordering::Release);
    *root_slot = Some(root);
    Ok(())
}

/// Maps the 4 KiB page at `address` to `frame` with `flags` (PRESENT is
/// added), creating page tables as needed.
///
/// Fails if `address` is already mapped or inside a large page.
pub fn map_page(
    address: VirtAddr,
    frame: PhysFrame<Size4KiB>,
    flags: PageTableFlags,
) -> Result<(), MapError> {
    let root_slot = ROOT_TABLE.lock_irq();
    let root = root_slot.ok_or(MapError::NotInitialised)?;
    map_page_in(root, address, frame, flags)
}

/// Removes the 4 KiB mapping at `address`, invalidates it in every CPU's
/// TLB (a shootdown when other CPUs are online), and returns the frame it
/// mapped (which the caller still owns).
///
/// # Panics
///
/// With other CPUs online, if interrupts are disabled (see
/// `smp::shootdown`).
pub fn unmap_page(address: VirtAddr) -> Result<PhysFrame<Size4KiB>, UnmapError> {
    let frame = unmap_page_local_only(address)?;
    if crate::cpu::cpu_count() > 1 {
        crate::smp::shootdown(address..address + PAGE_SIZE);
    }
    Ok(frame)
}

/// Removes the 4 KiB mapping at `address` and invalidates it in this CPU's
/// TLB only: other CPUs may keep using a cached translation until they
/// invalidate it. For tests of shootdowns, and for addresses only this CPU
/// can have used.
pub fn unmap_page_local_only(address: VirtAddr) -> Result<PhysFrame<Size4KiB>, UnmapError> {
    if !address.is_aligned(PAGE_SIZE) {
        return Err(UnmapError::NotPageAligned(address));
    }
    let root_slot = ROOT_TABLE.lock_irq();
    let root = root_slot.ok_or(UnmapError::NotMapped(address))?;
    let leaf = walk_existing(root, address, 1).ok_or_else(|| {
        if translate_in(root, address).is_some() {
            UnmapError::InsideLargePage(address)
        } else {
            UnmapError::NotMapped(address)
        }
    })?;
    let index = table_index(address, 1);
    let entry = read_entry(leaf, index);
    if entry.is_unused() {
        return Err(UnmapError::NotMapped(address));
    }
    write_entry(leaf, index, PageTableEntry::new());
    invalidate_local(address);
    Ok(PhysFrame::containing_address(entry.addr()))
}

/// Drops this CPU's cached translation of the page containing `address`.
pub fn invalidate_local(address: VirtAddr) {
    tlb::flush(address);
}

/// Drops every cached translation of this CPU, global ones included (a CR3
/// reload alone keeps global pages, and the kernel's are global).
pub fn invalidate_all_local() {
    use ::x86_64::registers::control::{Cr4, Cr4Flags};
    let flags = Cr4::read();
    // SAFETY: clearing and restoring CR4.PGE flushes the TLB, global
    // entries included, and changes nothing else; interrupts are off so
    // no handler runs with global pages disabled in between.
    ::x86_64::instructions::interrupts::without_interrupts(|| unsafe {
        Cr4::write(flags.difference(Cr4Flags::PAGE_GLOBAL));
        Cr4::write(flags);
    });
}

fn translate_in(root: PhysFrame, address: VirtAddr) -> Option<Translation> {
    let mut table = root;
    for level in (1..=4).rev() {
        let entry = read_entry(table, table_index(address, level));
        if entry.is_unused() || !entry.flags().contains(PageTableFlags::PRESENT) {
            return None;
        }
        let is_leaf = level == 1 || entry.flags().contains(PageTableFlags::HUGE_PAGE);
        if is_leaf {
            let page_size = 1u64 << (12 + 9 * (level - 1));
            // In large-page entries bit 12 is the PAT bit, not an address bit.
            let page_start = entry.addr().as_u64() & !(page_size - 1);
            return Some(Translation {
                physical: PhysAddr::new(page_start + (address.as_u64() & (page_size - 1))),
                flags: entry.flags(),
                page_size,
            });
        }
        table = PhysFrame::containing_address(entry.addr());
    }
    None
}

/// Looks `address` up in the kernel page tables (not in the TLB).
pub fn translate(address: VirtAddr) -> Option<Translation> {
    let root = root_table().ok()?;
    translate_in(root, address)
}

/// The last-level table (512 entries, 4 KiB pages) covering one 2 MiB-aligned
/// span of virtual addresses.
///
/// For users that manage the entries themselves, like the quickmap window
/// region: they write PTEs through [`LeafPageTable::entry_pointer`] without
/// the page-table lock, and must invalidate what they change.
#[derive(Clone, Copy, Debug)]
pub struct LeafPageTable {
    table: PhysFrame,
    first_address: VirtAddr,
}

impl LeafPageTable {
    /// The physical frame of the table.
    pub fn frame(&self) -> PhysFrame {
        self.table
    }

    /// The virtual addresses this table's entries map.
    pub fn covered(&self) -> Range<VirtAddr> {
        self.first_address..self.first_address + LARGE_PAGE_SIZE
    }

    /// A pointer to the first of the 512 entries (in the direct map).
    pub fn entries(&self) -> *mut [PageTableEntry; ENTRIES_PER_TABLE] {
        entry_pointer(self.table, 0).cast()
    }

    /// A pointer to the entry that maps `address`.
    ///
    /// # Panics
    ///
    /// If `address` is not covered by this table.
    pub fn entry_pointer(&self, address: VirtAddr) -> *mut PageTableEntry {
        assert!(
            self.covered().contains(&address),
            "address {:#x} is outside the leaf table covering {:#x}..{:#x}",
            address.as_u64(),
            self.covered().start.as_u64(),
            self.covered().end.as_u64()
        );
        entry_pointer(self.table, table_index(address, 1))
    }
}

/// The raw leaf entry that maps `frame` with `flags` (PRESENT added), for
/// users that write entries of a [`LeafPageTable`] themselves.
pub fn leaf_entry(frame: PhysFrame, flags: PageTableFlags) -> u64 {
    frame.start_address().as_u64() | (flags | PageTableFlags::PRESENT).bits()
}

/// Creates (once) and returns the last-level table covering `address`.
pub fn ensure_leaf_table(address: VirtAddr) -> Result<LeafPageTable, MapError> {
    let root_slot = ROOT_TABLE.lock_irq();
    let root = root_slot.ok_or(MapError::NotInitialised)?;
    let table = walk_creating(root, address, 1)?;
    Ok(LeafPageTable {
        table,
        first_address: address.align_down(LARGE_PAGE_SIZE),
    })
}
