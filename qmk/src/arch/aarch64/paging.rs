//! The kernel's page tables and the MMU (4 KiB granule, 48-bit addresses).
//!
//! Virtual layout, mirroring x86_64's (`arch::x86_64::paging`):
//!
//! | range                                   | what                                   | pages |
//! |-----------------------------------------|----------------------------------------|-------|
//! | `__kernel_start..__kernel_end`          | kernel image, identity-mapped (TTBR0)  | 4 KiB |
//! | `0x0800_0000..0x0a00_0000`              | GIC and PL011, identity (TTBR0), Device-nGnRE | 2 MiB |
//! | `0xffff_8000_0000_0000` + `[ram, dmap)` | direct map of low physical memory (TTBR1) | 2 MiB |
//! | `0xffff_c000_0000_0000`, 512 GiB        | per-CPU window region (quickmap)       | 4 KiB |
//! | `0xffff_e000_0000_0000`, 512 GiB        | scratch region for tests               | 4 KiB |
//!
//! The direct map starts at RAM (0x4000_0000 on `virt`), not at physical 0
//! as on a PC, and ends at `dmap`: RAM at or above it (high memory) is
//! mapped nowhere, so only a temporary mapping can reach it. As on x86_64,
//! the window region lies far from the block-mapped direct map (QEMU's TCG
//! flushes its whole software TLB when a one-page invalidation hits inside
//! the span of its large pages).
//!
//! Memory attributes (MAIR_EL1): quickmap's layout
//! (`quickmap::arch::aarch64::MAIR_EL1_VALUE`, one index per memory
//! attribute), so that its window descriptors and the kernel's own agree:
//! the kernel's Normal memory is its write-back index
//! ([`MAIR_NORMAL_WRITE_BACK`]) and its devices its Device-nGnRE index
//! ([`MAIR_DEVICE_NGNRE`]).
//!
//! Tables: the ones [`init`] builds come from a static pool in the image
//! (they are made with the MMU off); later ones come from the pool while it
//! lasts, then (with the kernel core) from the frame allocator's
//! direct-mapped zone. Every table is reached through its physical address:
//! identity while the MMU is off or for the image's pool, else through the
//! direct map.

use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    ReadWriteable, Readable, Writeable, ID_AA64MMFR0_EL1, MAIR_EL1, SCTLR_EL1, TCR_EL1, TTBR0_EL1,
    TTBR1_EL1,
};
use quickmap::arch::aarch64::{attr_index, MAIR_EL1_VALUE};
use quickmap::MemoryAttribute;

use super::{PhysAddr, VirtAddr};

/// The PL011 UART of QEMU `virt` (identity-mapped as device memory).
pub const DEVICE_UART_BASE: u64 = 0x0900_0000;
/// Device registers mapped identity: the GIC distributor (0x0800_0000), its
/// redistributors (from 0x080a_0000) and the UART.
const DEVICE_IDENTITY_RANGE: Range<u64> = 0x0800_0000..0x0a00_0000;

/// Where physical address 0 would appear in the direct map (only RAM below
/// `dmap` actually does).
pub const DIRECT_MAP_BASE: VirtAddr = VirtAddr::new(0xffff_8000_0000_0000);
/// The per-CPU window region (one level-0 slot, 512 GiB), for quickmap.
pub const WINDOW_REGION: Range<u64> = 0xffff_c000_0000_0000..0xffff_c080_0000_0000;
/// A region tests may map single pages into (one level-0 slot).
pub const SCRATCH_REGION: Range<u64> = 0xffff_e000_0000_0000..0xffff_e080_0000_0000;

/// Size of a page and of a level-2 block.
pub const PAGE_SIZE: u64 = 4096;
pub const LARGE_PAGE_SIZE: u64 = 2 << 20;
/// Entries in one table.
pub const ENTRIES_PER_TABLE: usize = 512;

/// MAIR_EL1 indices of the kernel's own mappings, in quickmap's layout:
/// Device-nGnRE is its weak-uncacheable (UC-) index, Normal write-back its
/// write-back index.
pub const MAIR_DEVICE_NGNRE: u64 = attr_index(MemoryAttribute::WeakUncacheable);
pub const MAIR_NORMAL_WRITE_BACK: u64 = attr_index(MemoryAttribute::WriteBack);
/// What every CPU writes to MAIR_EL1.
const MAIR_VALUE: u64 = MAIR_EL1_VALUE;
const _: () = assert!(
    (MAIR_VALUE >> (8 * MAIR_DEVICE_NGNRE)) & 0xff == 0x04,
    "the kernel's device index must be Device-nGnRE"
);
const _: () = assert!(
    (MAIR_VALUE >> (8 * MAIR_NORMAL_WRITE_BACK)) & 0xff == 0xff,
    "the kernel's Normal index must be inner/outer write-back"
);

/// Stage-1 descriptor bits (4 KiB granule).
mod descriptor {
    /// Valid.
    pub const VALID: u64 = 1 << 0;
    /// Levels 0–2: a table (not a block); level 3: a page (must be set).
    pub const TABLE_OR_PAGE: u64 = 1 << 1;
    /// AttrIndx, bits 4:2: the MAIR_EL1 index.
    pub const fn attribute_index(index: u64) -> u64 {
        index << 2
    }
    /// AP[2]: read-only (AP[1] stays 0: no EL0 access).
    pub const READ_ONLY: u64 = 1 << 7;
    /// SH = inner shareable (all CPUs of the machine).
    pub const INNER_SHAREABLE: u64 = 3 << 8;
    /// Access flag: set, so the first access does not fault.
    pub const ACCESSED: u64 = 1 << 10;
    /// Privileged execute-never.
    pub const PXN: u64 = 1 << 53;
    /// Unprivileged execute-never.
    pub const UXN: u64 = 1 << 54;
    /// Bits 47:12: the output address (table, page or block).
    pub const ADDRESS_MASK: u64 = 0x0000_ffff_ffff_f000;
}

/// Leaf attributes of each kind of kernel mapping.
const KERNEL_TEXT: u64 = descriptor::attribute_index(MAIR_NORMAL_WRITE_BACK)
    | descriptor::READ_ONLY
    | descriptor::INNER_SHAREABLE
    | descriptor::ACCESSED
    | descriptor::UXN;
const KERNEL_RODATA: u64 = KERNEL_TEXT | descriptor::PXN;
const KERNEL_DATA: u64 = descriptor::attribute_index(MAIR_NORMAL_WRITE_BACK)
    | descriptor::INNER_SHAREABLE
    | descriptor::ACCESSED
    | descriptor::PXN
    | descriptor::UXN;
const DEVICE: u64 = descriptor::attribute_index(MAIR_DEVICE_NGNRE)
    | descriptor::ACCESSED
    | descriptor::PXN
    | descriptor::UXN;

/// One translation table: 512 descriptors, 4 KiB aligned.
#[repr(C, align(4096))]
struct Table([AtomicU64; ENTRIES_PER_TABLE]);

/// Tables in the image, for `init` (MMU off) and the first later ones.
const TABLE_POOL_SIZE: usize = 32;
static TABLE_POOL: [Table; TABLE_POOL_SIZE] =
    [const { Table([const { AtomicU64::new(0) }; ENTRIES_PER_TABLE]) }; TABLE_POOL_SIZE];
/// Tables of the pool handed out; structural changes are serialised by
/// [`STRUCTURE_LOCK`].
static TABLES_USED: AtomicU64 = AtomicU64::new(0);
static STRUCTURE_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// The roots (level-0 tables) of TTBR0 (identity) and TTBR1 (kernel high
/// half), by physical address.
static ROOTS: spin::Once<(u64, u64)> = spin::Once::new();
/// The direct map: physical `[start, end)`; 0..0 before `init`.
static DIRECT_MAP_START: AtomicU64 = AtomicU64::new(0);
static DIRECT_MAP_END: AtomicU64 = AtomicU64::new(0);

/// True once the bootstrap CPU runs with the kernel tables: from then on
/// tables outside the image are reached through the direct map.
static MMU_ENABLED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    AlreadyMapped {
        address: u64,
    },
    NotPageAligned(VirtAddr),
    /// The address lies inside a 2 MiB block (e.g. the direct map).
    InsideLargePage(VirtAddr),
    /// Mapping before the kernel page tables exist.
    NotInitialised,
    /// No frame for a page or a table.
    OutOfFrames(crate::memory::frame_allocator::FrameAllocError),
}

impl From<crate::memory::frame_allocator::FrameAllocError> for MapError {
    fn from(error: crate::memory::frame_allocator::FrameAllocError) -> Self {
        Self::OutOfFrames(error)
    }
}

impl core::fmt::Display for MapError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            Self::AlreadyMapped { address } => write!(formatter, "{address:#x} is mapped already"),
            Self::NotPageAligned(address) => {
                write!(
                    formatter,
                    "address {:#x} is not 4 KiB-aligned",
                    address.as_u64()
                )
            }
            Self::InsideLargePage(address) => write!(
                formatter,
                "address {:#x} lies inside a 2 MiB block mapping",
                address.as_u64()
            ),
            Self::NotInitialised => write!(formatter, "the kernel page tables are not built yet"),
            Self::OutOfFrames(error) => write!(formatter, "no frame: {error}"),
        }
    }
}

/// Why an unmapping failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnmapError {
    NotMapped(VirtAddr),
    InsideLargePage(VirtAddr),
    NotPageAligned(VirtAddr),
}

/// The table whose physical address is `physical`: identity for the image's
/// pool (identity-mapped) or while the MMU is off, else the direct map.
fn table_at(physical: u64) -> &'static Table {
    let pool = TABLE_POOL.as_ptr_range();
    let in_pool = (pool.start as u64..pool.end as u64).contains(&physical);
    let address = if in_pool || !MMU_ENABLED.load(Ordering::Acquire) {
        physical
    } else {
        DIRECT_MAP_BASE.as_u64() + physical
    };
    // SAFETY: `physical` is a table's address (from the pool or a
    // direct-mapped frame the allocator gave to page tables, never freed),
    // mapped at `address`; tables are only accessed through atomics.
    unsafe { &*(address as *const Table) }
}

/// A new, zeroed table; its physical address.
fn allocate_table() -> Result<u64, MapError> {
    let index = TABLES_USED.fetch_add(1, Ordering::Relaxed) as usize;
    if let Some(table) = TABLE_POOL.get(index) {
        // Pool tables start zeroed (.bss) and are never freed.
        return Ok(table as *const Table as u64);
    }
    allocate_table_frame()
}

/// A table from the frame allocator's direct-mapped zone, zeroed.
fn allocate_table_frame() -> Result<u64, MapError> {
    use crate::memory::frame_allocator::{self, Zone};
    let frame = frame_allocator::allocate_frame(Zone::DirectMapped)?;
    let physical = frame.start_address().as_u64();
    for entry in &table_at(physical).0 {
        entry.store(0, Ordering::Relaxed);
    }
    Ok(physical)
}

/// The table that the entry of `table` (at `level`) for `address` points
/// to, created if missing.
fn next_table(table: &Table, address: u64, level: u32) -> Result<&'static Table, MapError> {
    let entry = table_index(address, level);
    let current = table.0[entry].load(Ordering::Acquire);
    if current & descriptor::VALID != 0 {
        if current & descriptor::TABLE_OR_PAGE == 0 {
            return Err(MapError::InsideLargePage(VirtAddr::new(address)));
        }
        return Ok(table_at(current & descriptor::ADDRESS_MASK));
    }
    let next = allocate_table()?;
    // Table descriptors allow everything: permissions are decided at the
    // leaf. The zeroed table is visible before the entry that links it (the
    // release store, and `dsb` before the walker may use it in `map_page`).
    table.0[entry].store(
        next | descriptor::VALID | descriptor::TABLE_OR_PAGE,
        Ordering::Release,
    );
    Ok(table_at(next))
}

/// Index of `address` in the table of `level` (0 = root).
fn table_index(address: u64, level: u32) -> usize {
    ((address >> (39 - 9 * level)) & 0x1ff) as usize
}

/// The level-3 table covering `address` (a 2 MiB span), created if missing.
fn leaf_table_in(root: &Table, address: u64) -> Result<&'static Table, MapError> {
    let level1 = next_table(root, address, 0)?;
    let level2 = next_table(level1, address, 1)?;
    next_table(level2, address, 2)
}

fn map_page_in(root: &Table, virt: u64, phys: u64, attributes: u64) -> Result<(), MapError> {
    let leaf = leaf_table_in(root, virt)?;
    let entry = &leaf.0[table_index(virt, 3)];
    if entry.load(Ordering::Relaxed) & descriptor::VALID != 0 {
        return Err(MapError::AlreadyMapped { address: virt });
    }
    entry.store(
        phys | attributes | descriptor::VALID | descriptor::TABLE_OR_PAGE,
        Ordering::Release,
    );
    Ok(())
}

fn map_block_in(root: &Table, virt: u64, phys: u64, attributes: u64) -> Result<(), MapError> {
    let level1 = next_table(root, virt, 0)?;
    let level2 = next_table(level1, virt, 1)?;
    let entry = &level2.0[table_index(virt, 2)];
    if entry.load(Ordering::Relaxed) & descriptor::VALID != 0 {
        return Err(MapError::AlreadyMapped { address: virt });
    }
    // A block descriptor: VALID without TABLE_OR_PAGE.
    entry.store(phys | attributes | descriptor::VALID, Ordering::Release);
    Ok(())
}

/// The kernel's sections and the attributes each is mapped with.
fn kernel_sections() -> [(Range<u64>, u64); 3] {
    extern "C" {
        static __text_start: u8;
        static __text_end: u8;
        static __rodata_start: u8;
        static __rodata_end: u8;
        static __data_start: u8;
        static __kernel_end: u8;
    }
    let address = |symbol: *const u8| symbol as u64;
    [
        (
            address(&raw const __text_start)..address(&raw const __text_end),
            KERNEL_TEXT,
        ),
        (
            address(&raw const __rodata_start)..address(&raw const __rodata_end),
            KERNEL_RODATA,
        ),
        (
            address(&raw const __data_start)..address(&raw const __kernel_end),
            KERNEL_DATA,
        ),
    ]
}

/// Builds the kernel tables: the image identity-mapped with 4 KiB pages and
/// per-section permissions, the devices identity-mapped, the direct map of
/// physical `direct_map` (2 MiB aligned) in 2 MiB blocks, and the window
/// region's first leaf table; then turns the MMU on for this CPU
/// ([`enable_on_this_cpu`]). Runs once, on the bootstrap CPU.
pub fn init(direct_map: Range<PhysAddr>) -> Result<(), MapError> {
    let (start, end) = (direct_map.start.as_u64(), direct_map.end.as_u64());
    assert!(
        start % LARGE_PAGE_SIZE == 0 && end % LARGE_PAGE_SIZE == 0,
        "the direct map {start:#x}..{end:#x} must start and end on 2 MiB boundaries"
    );
    {
        let _structure = STRUCTURE_LOCK.lock();
        assert!(
            ROOTS.get().is_none(),
            "the kernel page tables are built once"
        );
        let (identity_root, kernel_root) = (allocate_table()?, allocate_table()?);
        let (identity, kernel) = (table_at(identity_root), table_at(kernel_root));
        for (section, attributes) in kernel_sections() {
            for address in section.step_by(PAGE_SIZE as usize) {
                let is_guard_page =
                    super::stacks::guard_pages().any(|guard| guard.as_u64() == address);
                if is_guard_page {
                    continue;
                }
                map_page_in(identity, address, address, attributes)?;
            }
        }
        for address in DEVICE_IDENTITY_RANGE.step_by(LARGE_PAGE_SIZE as usize) {
            map_block_in(identity, address, address, DEVICE)?;
        }
        for physical in (start..end).step_by(LARGE_PAGE_SIZE as usize) {
            map_block_in(
                kernel,
                DIRECT_MAP_BASE.as_u64() + physical,
                physical,
                KERNEL_DATA,
            )?;
        }
        // The window region's leaf table exists from the start, so that
        // quickmap never creates tables (it takes no lock).
        leaf_table_in(kernel, WINDOW_REGION.start)?;
        ROOTS.call_once(|| (identity_root, kernel_root));
    }
    DIRECT_MAP_START.store(start, Ordering::Release);
    DIRECT_MAP_END.store(end, Ordering::Release);
    enable_on_this_cpu();
    Ok(())
}

/// Programs MAIR/TCR/TTBR0/TTBR1 with the kernel tables and turns on the
/// MMU and the caches of this CPU. After [`init`]; every CPU calls it once.
pub fn enable_on_this_cpu() {
    let (identity, kernel) = ROOTS
        .get()
        .expect("paging::init builds the tables before a CPU enables them");
    MAIR_EL1.set(MAIR_VALUE);
    // The physical address size the CPU supports (QEMU cortex-a72: 44 bits).
    let physical_range = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange);
    TCR_EL1.write(
        TCR_EL1::T0SZ.val(16)
            + TCR_EL1::T1SZ.val(16)
            + TCR_EL1::TG0::KiB_4
            + TCR_EL1::TG1::KiB_4
            + TCR_EL1::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::SH0::Inner
            + TCR_EL1::IRGN1::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::ORGN1::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::SH1::Inner
            + TCR_EL1::IPS.val(physical_range),
    );
    TTBR0_EL1.set_baddr(*identity);
    TTBR1_EL1.set_baddr(*kernel);
    barrier::dsb(barrier::ISH);
    barrier::isb(barrier::SY);
    invalidate_all_local();
    // Sound because the code, data and stack we run on are identity-mapped
    // at the addresses the CPU used with the MMU off, and the devices the
    // kernel touches (UART, GIC) are mapped identity as device memory.
    SCTLR_EL1.modify(SCTLR_EL1::M::Enable + SCTLR_EL1::C::Cacheable + SCTLR_EL1::I::Cacheable);
    barrier::isb(barrier::SY);
    MMU_ENABLED.store(true, Ordering::Release);
}

/// The physical range of the direct map (empty before [`init`]).
pub fn direct_map_range() -> Range<PhysAddr> {
    PhysAddr::new(DIRECT_MAP_START.load(Ordering::Acquire))
        ..PhysAddr::new(DIRECT_MAP_END.load(Ordering::Acquire))
}

/// The direct-map address of `physical`, if it lies in the direct map.
pub fn direct_map_address(physical: PhysAddr) -> Option<VirtAddr> {
    let range = direct_map_range();
    range
        .contains(&physical)
        .then(|| DIRECT_MAP_BASE + physical.as_u64())
}

/// Invalidates this CPU's TLB entry for the page at `address` (all ASIDs,
/// EL1): `tlbi vaae1` without the inner-shareable broadcast, so no other
/// CPU is involved.
pub fn invalidate_local(address: VirtAddr) {
    let operand = (address.as_u64() >> 12) & ((1 << 44) - 1);
    // SAFETY: a TLB invalidation only drops cached translations; the
    // barriers order it after the preceding table write (dsb nshst) and
    // make later accesses use the new translation (dsb nsh; isb).
    unsafe {
        core::arch::asm!(
            "dsb nshst",
            "tlbi vaae1, {operand}",
            "dsb nsh",
            "isb",
            operand = in(reg) operand,
            options(nostack, preserves_flags)
        )
    };
}

/// Invalidates this CPU's whole EL1 TLB.
pub fn invalidate_all_local() {
    // SAFETY: as in `invalidate_local`.
    unsafe {
        core::arch::asm!(
            "dsb nshst",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}

// The kernel core's paging API (x86_64's names and behaviour): single pages
// in the kernel half, translation, leaf tables for the window region.

/// What a kernel page allows: the subset of x86_64's `PageTableFlags` the
/// kernel core passes (`PRESENT` and `GLOBAL` are implied on aarch64: every
/// kernel entry is valid and global, nG clear).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageTableFlags(u64);

impl PageTableFlags {
    pub const PRESENT: Self = Self(1 << 0);
    pub const WRITABLE: Self = Self(1 << 1);
    pub const GLOBAL: Self = Self(1 << 8);
    pub const NO_EXECUTE: Self = Self(1 << 63);

    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The leaf descriptor's attributes (Normal write-back memory).
    const fn descriptor_bits(self) -> u64 {
        let mut bits = descriptor::attribute_index(MAIR_NORMAL_WRITE_BACK)
            | descriptor::INNER_SHAREABLE
            | descriptor::ACCESSED
            | descriptor::UXN;
        if !self.contains(Self::WRITABLE) {
            bits |= descriptor::READ_ONLY;
        }
        if self.contains(Self::NO_EXECUTE) {
            bits |= descriptor::PXN;
        }
        bits
    }

    /// The flags a valid leaf descriptor stands for.
    const fn of_descriptor(bits: u64) -> Self {
        let mut flags = Self::PRESENT.union(Self::GLOBAL);
        if bits & descriptor::READ_ONLY == 0 {
            flags = flags.union(Self::WRITABLE);
        }
        if bits & descriptor::PXN != 0 {
            flags = flags.union(Self::NO_EXECUTE);
        }
        flags
    }
}

impl core::ops::BitOr for PageTableFlags {
    type Output = Self;
    fn bitor(self, other: Self) -> Self {
        self.union(other)
    }
}

/// A translation found by [`translate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The physical address the virtual address maps to.
    pub physical: PhysAddr,
    /// The flags of the leaf entry.
    pub flags: PageTableFlags,
    /// The size of the page or block containing the address.
    pub page_size: u64,
}

/// The end of the direct map (physical); see [`direct_map_range`].
pub fn direct_map_end() -> PhysAddr {
    direct_map_range().end
}

/// Runs `operation` on the root of the tables that translate `address`
/// (TTBR1 for the kernel half, TTBR0 below), under the structure lock with
/// IRQs masked (the lock is also taken from threads that may be preempted).
fn with_root<R>(address: VirtAddr, operation: impl FnOnce(&'static Table) -> R) -> Option<R> {
    let (identity, kernel) = *ROOTS.get()?;
    let root = if address.as_u64() >> 63 != 0 {
        kernel
    } else {
        identity
    };
    let daif = aarch64_cpu::registers::DAIF.get();
    aarch64_cpu::registers::DAIF.modify(aarch64_cpu::registers::DAIF::I::Masked);
    let result = {
        let _structure = STRUCTURE_LOCK.lock();
        operation(table_at(root))
    };
    aarch64_cpu::registers::DAIF.set(daif);
    Some(result)
}

/// Maps the 4 KiB page at `address` to `frame` with `flags`, creating page
/// tables as needed. Fails if `address` is already mapped or inside a block.
pub fn map_page(
    address: VirtAddr,
    frame: super::PhysFrame,
    flags: PageTableFlags,
) -> Result<(), MapError> {
    if !address.is_aligned(PAGE_SIZE) {
        return Err(MapError::NotPageAligned(address));
    }
    with_root(address, |root| {
        map_page_in(
            root,
            address.as_u64(),
            frame.start_address().as_u64(),
            flags.descriptor_bits(),
        )
    })
    .ok_or(MapError::NotInitialised)??;
    // The new entry is visible to this CPU's table walks before the caller
    // uses the page (no TLB entry can exist for an invalid descriptor).
    barrier::dsb(barrier::ISHST);
    barrier::isb(barrier::SY);
    Ok(())
}

/// The leaf table covering `address` if every level above exists and no
/// block maps it; `Err(true)` when a block maps it, `Err(false)` when
/// nothing does.
fn existing_leaf(root: &'static Table, address: u64) -> Result<&'static Table, bool> {
    let mut table = root;
    for level in 0..3 {
        let entry = table.0[table_index(address, level)].load(Ordering::Acquire);
        if entry & descriptor::VALID == 0 {
            return Err(false);
        }
        if entry & descriptor::TABLE_OR_PAGE == 0 {
            return Err(true);
        }
        table = table_at(entry & descriptor::ADDRESS_MASK);
    }
    Ok(table)
}

/// Removes the 4 KiB mapping at `address`, invalidates it in every CPU's
/// TLB (a shootdown when other CPUs are online), and returns the frame it
/// mapped (which the caller still owns).
pub fn unmap_page(address: VirtAddr) -> Result<super::PhysFrame, UnmapError> {
    let frame = unmap_page_local_only(address)?;
    if crate::cpu::cpu_count() > 1 {
        crate::smp::shootdown(address..address + PAGE_SIZE);
    }
    Ok(frame)
}

/// Removes the 4 KiB mapping at `address` and invalidates it in this CPU's
/// TLB only.
pub fn unmap_page_local_only(address: VirtAddr) -> Result<super::PhysFrame, UnmapError> {
    if !address.is_aligned(PAGE_SIZE) {
        return Err(UnmapError::NotPageAligned(address));
    }
    let removed = with_root(address, |root| {
        let leaf = existing_leaf(root, address.as_u64()).map_err(|inside_block| {
            if inside_block {
                UnmapError::InsideLargePage(address)
            } else {
                UnmapError::NotMapped(address)
            }
        })?;
        let entry = &leaf.0[table_index(address.as_u64(), 3)];
        let old = entry.swap(0, Ordering::AcqRel);
        if old & descriptor::VALID == 0 {
            return Err(UnmapError::NotMapped(address));
        }
        Ok(old & descriptor::ADDRESS_MASK)
    })
    .ok_or(UnmapError::NotMapped(address))??;
    invalidate_local(address);
    Ok(super::PhysFrame::containing_address(PhysAddr::new(removed)))
}

/// Looks `address` up in the kernel page tables (not in the TLB).
pub fn translate(address: VirtAddr) -> Option<Translation> {
    with_root(address, |root| {
        let mut table = root;
        for level in 0..4 {
            let entry = table.0[table_index(address.as_u64(), level)].load(Ordering::Acquire);
            if entry & descriptor::VALID == 0 {
                return None;
            }
            let is_leaf = level == 3 || entry & descriptor::TABLE_OR_PAGE == 0;
            if is_leaf {
                let page_size = 1u64 << (12 + 9 * (3 - level));
                let page_start = entry & descriptor::ADDRESS_MASK & !(page_size - 1);
                return Some(Translation {
                    physical: PhysAddr::new(page_start + (address.as_u64() & (page_size - 1))),
                    flags: PageTableFlags::of_descriptor(entry),
                    page_size,
                });
            }
            table = table_at(entry & descriptor::ADDRESS_MASK);
        }
        None
    })
    .flatten()
}

/// The last-level table (512 entries, 4 KiB pages) covering one 2 MiB-aligned
/// span of virtual addresses, for users that manage its entries themselves
/// (the quickmap window region): they write descriptors through
/// [`LeafPageTable::entries`] without the structure lock, and must
/// invalidate what they change.
#[derive(Clone, Copy, Debug)]
pub struct LeafPageTable {
    table: u64,
    first_address: VirtAddr,
}

impl LeafPageTable {
    /// The physical frame of the table.
    pub fn frame(&self) -> super::PhysFrame {
        super::PhysFrame::containing_address(PhysAddr::new(self.table))
    }

    /// The virtual addresses this table's entries map.
    pub fn covered(&self) -> Range<VirtAddr> {
        self.first_address..self.first_address + LARGE_PAGE_SIZE
    }

    /// A pointer to the first of the 512 entries.
    pub fn entries(&self) -> *mut [u64; ENTRIES_PER_TABLE] {
        let table: *const Table = table_at(self.table);
        table.cast_mut().cast()
    }

    /// A pointer to the entry that maps `address`.
    ///
    /// # Panics
    ///
    /// If `address` is not covered by this table.
    pub fn entry_pointer(&self, address: VirtAddr) -> *mut u64 {
        assert!(
            self.covered().contains(&address),
            "address {:#x} is outside the leaf table covering {:#x}..{:#x}",
            address.as_u64(),
            self.covered().start.as_u64(),
            self.covered().end.as_u64()
        );
        let entries: *mut u64 = self.entries().cast();
        entries.wrapping_add(table_index(address.as_u64(), 3))
    }
}

/// The raw leaf descriptor that maps `frame` with `flags` (Normal
/// write-back memory), for users that write entries of a [`LeafPageTable`]
/// themselves.
pub fn leaf_entry(frame: super::PhysFrame, flags: PageTableFlags) -> u64 {
    frame.start_address().as_u64()
        | flags.descriptor_bits()
        | descriptor::VALID
        | descriptor::TABLE_OR_PAGE
}

/// Creates (once) and returns the last-level table covering `address`.
pub fn ensure_leaf_table(address: VirtAddr) -> Result<LeafPageTable, MapError> {
    let table = with_root(address, |root| leaf_table_in(root, address.as_u64()))
        .ok_or(MapError::NotInitialised)??;
    Ok(LeafPageTable {
        table: table_physical_address(table),
        first_address: address.align_down(LARGE_PAGE_SIZE),
    })
}

/// The physical address of a table [`table_at`] returned: its own address
/// when identity-mapped (the pool), else its direct-map address less
/// `DIRECT_MAP_BASE`.
fn table_physical_address(table: &'static Table) -> u64 {
    let address = table as *const Table as u64;
    if address >= DIRECT_MAP_BASE.as_u64() {
        address - DIRECT_MAP_BASE.as_u64()
    } else {
        address
    }
}
