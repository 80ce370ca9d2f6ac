//! quickmap's backend on aarch64: `Aarch64Mmu` over the window region's
//! leaf table, and the CPU's physical address range.

use aarch64_cpu::registers::{Readable, ID_AA64MMFR0_EL1};
pub use quickmap::arch::aarch64::Aarch64Mmu as KernelMmu;
use quickmap::{PhysAddr, VirtAddr};

/// How many leaf tables (2 MiB spans of 4 KiB pages) `len` bytes from
/// `start` touch.
///
/// # Panics
///
/// If the range wraps around the end of the address space.
pub const fn leaf_tables(start: VirtAddr, len: usize) -> usize {
    const SPAN: usize = 512 * 4096;
    if len == 0 {
        return 0;
    }
    let last = match start.0.checked_add(len - 1) {
        Some(last) => last,
        None => panic!("quickmap: the range wraps around the end of the address space"),
    };
    last / SPAN - start.0 / SPAN + 1
}

/// The backend for the `region_pages` pages of windows from `region_base`,
/// whose leaf descriptors start at `first_entry`.
///
/// # Safety
///
/// 1. `first_entry` is the live leaf descriptor for `region_base` (in the
///    TTBR1 tables every CPU uses), and its table (never freed) holds the
///    descriptors of the following `region_pages - 1` pages in order; no
///    block maps the region.
/// 2. Nothing but quickmap maps pages there, and those descriptors are
///    invalid.
pub unsafe fn kernel_mmu(
    region_base: VirtAddr,
    region_pages: usize,
    first_entry: *mut u64,
) -> KernelMmu {
    // SAFETY: points 1 and 2 are the caller's; 3. every CPU programs
    // MAIR_EL1 with quickmap's `MAIR_EL1_VALUE`, and TCR_EL1 with TG1 = 4 KiB,
    // DS = 0, SH1 inner shareable, IRGN1/ORGN1 write-back, before it runs
    // kernel code that maps pages (`paging::enable_on_this_cpu`); 4. the
    // kernel runs at EL1 (`boot` drops from EL2).
    unsafe { KernelMmu::new(region_base, region_pages, first_entry) }
}

/// The highest physical address the CPU supports (ID_AA64MMFR0_EL1.PARange).
pub fn physical_address_limit() -> PhysAddr {
    let bits = match ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange) {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        5 => 48,
        _ => 52,
    };
    // quickmap's descriptors hold 48-bit output addresses (4 KiB granule).
    PhysAddr(1 << bits.min(48))
}

/// The leaf descriptor of a window that maps `pa` with `attribute` (for the
/// benchmark's baselines, which write their own windows).
pub use quickmap::arch::aarch64::window_pte;

/// Drops this CPU's translation of the page at `va`, once the descriptor
/// stores before it are visible to the walker (`dsb ishst; tlbi vale1; dsb
/// nsh; isb`).
///
/// # Safety
///
/// 1. Must run at EL1 (every kernel context does: `boot` drops from EL2).
/// 2. The translation is global (kernel entries never set nG).
#[inline(always)]
pub unsafe fn invalidate_page_local(va: VirtAddr) {
    // SAFETY: the caller's points 1 and 2 are `tlbi_vale1_local`'s.
    unsafe { quickmap::arch::aarch64::tlbi_vale1_local(va) };
}

/// Drops every CPU's translation of the page at `va` without an IPI: `dsb
/// ishst; tlbi vale1is; dsb ish; isb`, the inner shareable (broadcast) form
/// that arm64's `pmap_invalidate_page` uses for shared kernel mappings. The
/// `dsb ish` waits until every CPU of the domain has acted on it. quickmap
/// never needs it (a window is one CPU's); the benchmark's
/// `shootdown-broadcast` baseline measures what it costs.
///
/// # Safety
///
/// 1. Must run at EL1 (every kernel context does: `boot` drops from EL2).
/// 2. The translation is global (kernel entries never set nG).
pub unsafe fn invalidate_page_broadcast(va: VirtAddr) {
    // SAFETY: points 1 and 2 are the caller's: `tlbi` is defined at EL1, and
    // a global entry is dropped whatever ASID the operand carries; the
    // barriers only order and complete memory and TLB maintenance.
    unsafe {
        core::arch::asm!(
            "dsb ishst",
            "tlbi vale1is, {operand}",
            "dsb ish",
            "isb",
            operand = in(reg) quickmap::arch::aarch64::tlbi_va_operand(va),
            options(nostack, preserves_flags),
        );
    }
}

/// This architecture's broadcast single-page invalidation, for the
/// benchmark's `shootdown-broadcast` baseline.
pub const BROADCAST_INVALIDATION: Option<unsafe fn(VirtAddr)> = Some(invalidate_page_broadcast);

/// The physical-address bits of a window descriptor.
pub use quickmap::arch::aarch64::PTE_ADDRESS_MASK;

/// The memory attribute a window descriptor's AttrIndx selects (for tests
/// that read descriptors back).
///
/// # Panics
///
/// If `pte` selects an index quickmap does not use (6 or 7).
pub fn attribute_of(pte: u64) -> quickmap::MemoryAttribute {
    quickmap::arch::aarch64::attribute_of(pte).unwrap_or_else(|| {
        panic!("window descriptor {pte:#x} selects a MAIR_EL1 index quickmap does not use")
    })
}

/// Panics, naming what is wrong, unless the window descriptor `pte` has the
/// protection quickmap gives windows on aarch64: a valid page, accessed,
/// writable at EL1 only, never executable (PXN and UXN), inner shareable.
/// Windows are global here (nG clear): a CPU's local `tlbi vale1` then drops
/// them whatever ASID runs.
pub fn assert_window_entry_protection(pte: u64) {
    use quickmap::arch::aarch64::{
        PTE_AF, PTE_AP_EL0, PTE_AP_READ_ONLY, PTE_NG, PTE_PAGE, PTE_PXN, PTE_SH_INNER, PTE_SH_MASK,
        PTE_UXN, PTE_VALID,
    };
    let required = PTE_VALID | PTE_PAGE | PTE_AF | PTE_PXN | PTE_UXN;
    assert_eq!(
        pte & required,
        required,
        "a window descriptor is a valid, accessed page, never executable: {pte:#x}"
    );
    assert_eq!(
        pte & (PTE_AP_EL0 | PTE_AP_READ_ONLY | PTE_NG),
        0,
        "a window descriptor is writable at EL1 only, and global: {pte:#x}"
    );
    assert_eq!(
        pte & PTE_SH_MASK,
        PTE_SH_INNER,
        "a window descriptor is inner shareable: {pte:#x}"
    );
}
