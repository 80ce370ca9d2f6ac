//! quickmap's backend on x86_64: `X86Mmu` over the window region's leaf
//! table, and the CPU's physical address width.

pub use quickmap::arch::x86_64::{leaf_tables, X86Mmu as KernelMmu};
use quickmap::{PhysAddr, VirtAddr};

/// The backend for the `region_pages` pages of windows from `region_base`,
/// whose leaf entries start at `first_entry`.
///
/// # Safety
///
/// 1. `first_entry` is the live leaf entry for `region_base`, and its table
///    (never freed) holds the entries of the following `region_pages - 1`
///    pages in order.
/// 2. Nothing but quickmap maps pages there, and those entries are clear.
pub unsafe fn kernel_mmu(
    region_base: VirtAddr,
    region_pages: usize,
    first_entry: *mut u64,
) -> KernelMmu {
    // SAFETY: points 1 and 2 are the caller's; the third of `X86Mmu::new`'s,
    // boot sets EFER.NXE and programs IA32_PAT on every CPU before it runs
    // kernel code that maps pages (`boot`, `pat`).
    unsafe { KernelMmu::new(region_base, region_pages, first_entry) }
}

/// The highest physical address width the CPU supports (CPUID 0x8000_0008).
pub fn physical_address_limit() -> PhysAddr {
    // SAFETY: CPUID leaf 0x8000_0008 exists on every x86_64 CPU (long mode
    // requires extended leaves up to it); it has no side effects.
    #[allow(unused_unsafe)]
    let leaf = unsafe { core::arch::x86_64::__cpuid(0x8000_0008) };
    PhysAddr(1 << (leaf.eax & 0xff))
}

/// The leaf entry of a window that maps `pa` with `attribute` (for the
/// benchmark's baselines, which write their own windows).
pub use quickmap::arch::x86_64::window_pte;

/// Drops this CPU's translation of the page at `va` (`invlpg`).
///
/// # Safety
///
/// Must run at CPL 0 (every kernel context does).
#[inline(always)]
pub unsafe fn invalidate_page_local(va: VirtAddr) {
    // SAFETY: the caller runs at CPL 0.
    unsafe { quickmap::arch::x86_64::invlpg(va) };
}

/// The physical-address bits of a window entry, and the memory attribute
/// its PAT/PCD/PWT bits select (for tests that read entries back).
pub use quickmap::arch::x86_64::{attribute_of, PTE_ADDRESS_MASK};

/// x86_64 has no broadcast invalidation here (AMD's INVLPGB is not in QEMU's
/// TCG CPUs): a shootdown is an IPI, and the benchmark has no
/// `shootdown-broadcast` baseline.
pub const BROADCAST_INVALIDATION: Option<unsafe fn(VirtAddr)> = None;

/// Panics, naming what is wrong, unless the window entry `pte` has the
/// protection quickmap gives windows on x86_64: present, writable,
/// no-execute, supervisor-only and not global (each CPU's windows are its
/// own, and a global entry would survive the CR3 reloads of other address
/// spaces).
pub fn assert_window_entry_protection(pte: u64) {
    use quickmap::arch::x86_64::{PTE_GLOBAL, PTE_NO_EXECUTE, PTE_PRESENT, PTE_USER, PTE_WRITABLE};
    let required = PTE_PRESENT | PTE_WRITABLE | PTE_NO_EXECUTE;
    assert_eq!(
        pte & required,
        required,
        "a window entry is present, writable and no-execute: {pte:#x}"
    );
    assert_eq!(
        pte & (PTE_USER | PTE_GLOBAL),
        0,
        "a window entry is supervisor-only and not global: {pte:#x}"
    );
}
