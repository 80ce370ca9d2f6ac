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
//! Memory attributes (MAIR_EL1), one index per kind the kernel maps:
//! [`MAIR_DEVICE_NGNRE`], [`MAIR_NORMAL_WRITE_BACK`], [`MAIR_NORMAL_NON_CACHEABLE`],
//! [`MAIR_NORMAL_WRITE_THROUGH`]. TODO(issue 13, integration): quickmap's
//! aarch64 backend (`quickmap::arch::aarch64`, being written in main) brings
//! its own descriptor encoding and MAIR layout for the window entries; when
//! it lands, program MAIR_EL1 from its layout here and let it write the
//! window entries of the leaf table [`window_leaf_table`] returns.
//!
//! Bring-up state: tables come from a static pool (the frame allocator is
//! part of the core, not built for aarch64 yet), and only what the bring-up
//! needs exists: building the tables, turning the MMU on, the direct-map
//! address of a physical one, local invalidation, and the window region's
//! leaf table. TODO(issue 13): `map_page`/`unmap_page`/`translate` with the
//! core's API, tables from the frame allocator.

use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    ReadWriteable, Readable, Writeable, ID_AA64MMFR0_EL1, MAIR_EL1, SCTLR_EL1, TCR_EL1, TTBR0_EL1,
    TTBR1_EL1,
};

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

/// MAIR_EL1 attribute indices and their encodings.
pub const MAIR_DEVICE_NGNRE: u64 = 0;
pub const MAIR_NORMAL_WRITE_BACK: u64 = 1;
pub const MAIR_NORMAL_NON_CACHEABLE: u64 = 2;
pub const MAIR_NORMAL_WRITE_THROUGH: u64 = 3;
const MAIR_VALUE: u64 = 0x04 << (8 * MAIR_DEVICE_NGNRE)          // Device-nGnRE
    | 0xff << (8 * MAIR_NORMAL_WRITE_BACK)                        // inner/outer WB, RW-allocate
    | 0x44 << (8 * MAIR_NORMAL_NON_CACHEABLE)                     // inner/outer non-cacheable
    | 0xbb << (8 * MAIR_NORMAL_WRITE_THROUGH); // inner/outer WT, RW-allocate

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

/// Tables for the bring-up (TODO(issue 13): from the frame allocator).
const TABLE_POOL_SIZE: usize = 32;
static TABLE_POOL: [Table; TABLE_POOL_SIZE] =
    [const { Table([const { AtomicU64::new(0) }; ENTRIES_PER_TABLE]) }; TABLE_POOL_SIZE];
/// Tables of the pool handed out; structural changes are serialised by
/// [`STRUCTURE_LOCK`].
static TABLES_USED: AtomicU64 = AtomicU64::new(0);
static STRUCTURE_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// The roots (level-0 tables) of TTBR0 (identity) and TTBR1 (kernel high half).
static ROOTS: spin::Once<(&'static Table, &'static Table)> = spin::Once::new();
/// The direct map: physical `[start, end)`; 0..0 before `init`.
static DIRECT_MAP_START: AtomicU64 = AtomicU64::new(0);
static DIRECT_MAP_END: AtomicU64 = AtomicU64::new(0);

/// Why the tables could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    OutOfTables,
    AlreadyMapped { address: u64 },
}

impl core::fmt::Display for MapError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            Self::OutOfTables => write!(
                formatter,
                "the bring-up pool of {TABLE_POOL_SIZE} page tables is used up"
            ),
            Self::AlreadyMapped { address } => write!(formatter, "{address:#x} is mapped already"),
        }
    }
}

fn allocate_table() -> Result<&'static Table, MapError> {
    let index = TABLES_USED.fetch_add(1, Ordering::Relaxed) as usize;
    // Tables start zeroed (.bss) and are never freed: no clearing needed.
    TABLE_POOL.get(index).ok_or(MapError::OutOfTables)
}

/// The table that entry `entry` of `table` points to, created if missing.
fn next_table(table: &Table, entry: usize) -> Result<&'static Table, MapError> {
    let current = table.0[entry].load(Ordering::Acquire);
    if current & descriptor::VALID != 0 {
        assert!(
            current & descriptor::TABLE_OR_PAGE != 0,
            "page tables: entry {entry} maps a block where a table is needed ({current:#x})"
        );
        let address = current & descriptor::ADDRESS_MASK;
        let table = TABLE_POOL
            .iter()
            .find(|candidate| (*candidate as *const Table as u64) == address)
            .expect("every table entry points into the table pool");
        return Ok(table);
    }
    let next = allocate_table()?;
    // Table descriptors allow everything: permissions are decided at the leaf.
    table.0[entry].store(
        next as *const Table as u64 | descriptor::VALID | descriptor::TABLE_OR_PAGE,
        Ordering::Release,
    );
    Ok(next)
}

/// Index of `address` in the table of `level` (0 = root).
fn table_index(address: u64, level: u32) -> usize {
    ((address >> (39 - 9 * level)) & 0x1ff) as usize
}

/// The level-3 table covering `address` (a 2 MiB span), created if missing.
fn leaf_table_in(root: &Table, address: u64) -> Result<&'static Table, MapError> {
    let level1 = next_table(root, table_index(address, 0))?;
    let level2 = next_table(level1, table_index(address, 1))?;
    next_table(level2, table_index(address, 2))
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
    let level1 = next_table(root, table_index(virt, 0))?;
    let level2 = next_table(level1, table_index(virt, 1))?;
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
        let identity = allocate_table()?;
        let kernel = allocate_table()?;
        for (section, attributes) in kernel_sections() {
            for address in section.step_by(PAGE_SIZE as usize) {
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
        ROOTS.call_once(|| (identity, kernel));
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
    TTBR0_EL1.set_baddr(*identity as *const Table as u64);
    TTBR1_EL1.set_baddr(*kernel as *const Table as u64);
    barrier::dsb(barrier::ISH);
    barrier::isb(barrier::SY);
    invalidate_all_local();
    // Sound because the code, data and stack we run on are identity-mapped
    // at the addresses the CPU used with the MMU off, and the devices the
    // kernel touches (UART, GIC) are mapped identity as device memory.
    SCTLR_EL1.modify(SCTLR_EL1::M::Enable + SCTLR_EL1::C::Cacheable + SCTLR_EL1::I::Cacheable);
    barrier::isb(barrier::SY);
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

/// The level-3 table that maps the first 2 MiB of the window region, where
/// quickmap writes its window entries (created by [`init`]).
pub fn window_leaf_table() -> *const [AtomicU64; ENTRIES_PER_TABLE] {
    let (_, kernel) = ROOTS.get().expect("paging::init ran");
    let _structure = STRUCTURE_LOCK.lock();
    let leaf = leaf_table_in(kernel, WINDOW_REGION.start)
        .expect("the window leaf table exists since init, so nothing is allocated");
    &leaf.0
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
