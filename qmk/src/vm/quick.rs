//! quickmap wired to qmk, and the FreeBSD names on top of it.
//!
//! - Windows: [`WINDOWS_PER_CPU`] per CPU in the window region, each followed
//!   by an unmapped guard page; a CPU's eight entries fill exactly one 64-byte
//!   line of the region's page table, so CPUs never write a shared line. The
//!   region's page table is allocated once at boot, before any AP or thread
//!   runs, and never freed.
//! - Platform: qmk's critical sections (per-thread count, owed preemption
//!   performed at the outermost exit), its per-CPU index, spin-lock count and
//!   interrupt state.
//! - Direct map: qmk maps `[0, dmap)` write-back at `DIRECT_MAP_BASE`;
//!   write-back pages there take quickmap's fast path.

use quickmap::arch::x86_64::X86Mmu;
use quickmap::{
    Config, CpuWindows, DirectMap, ExecutionContext, HeldPage, MemoryAttribute, Mmu, PhysAddr,
    Platform, QuickMap, VirtAddr, WindowLayout, PAGE_SIZE,
};
use spin::Once;

use super::page::VmPage;
use crate::arch::paging::{self, DIRECT_MAP_BASE, LARGE_PAGE_SIZE, WINDOW_REGION};
use crate::cpu::MAX_CPUS;

/// Windows per CPU: one for the thread's usual single page, one more for a
/// page-to-page copy, and two for interrupt handlers that interrupt it.
pub const WINDOWS_PER_CPU: usize = 4;

/// quickmap as this kernel runs it.
pub type KernelQuickMap<P = QmkPlatform> = QuickMap<P, X86Mmu, WINDOWS_PER_CPU>;

static CPU_WINDOWS: [CpuWindows<WINDOWS_PER_CPU>; MAX_CPUS] =
    [const { CpuWindows::new() }; MAX_CPUS];

static QUICKMAP: Once<KernelQuickMap> = Once::new();

/// qmk's side of quickmap's [`Platform`] contract.
#[derive(Clone, Copy, Debug, Default)]
pub struct QmkPlatform;

// SAFETY: 1. `critical_enter`/`critical_exit` are qmk's nestable per-thread
// critical sections: the scheduler neither preempts nor migrates a thread whose
// count is not zero (a tick inside one only marks preemption owed).
// 2. `current_cpu_index` is the dense index kept in this CPU's GS-based data,
// below `cpu_count()`, which is what quickmap is built for.
// 3. Interrupt handlers run to completion on the interrupted CPU before the
// interrupted context resumes (qmk does not switch threads inside a nested
// handler; a switch from the timer happens on the way out, after the handler).
unsafe impl Platform for QmkPlatform {
    #[inline]
    fn current_cpu(&self) -> usize {
        crate::cpu::current_cpu_index()
    }

    #[inline]
    fn critical_enter(&self) {
        crate::sched::critical_enter();
    }

    #[inline]
    fn critical_exit(&self) {
        crate::sched::critical_exit();
    }

    fn execution_context(&self) -> ExecutionContext {
        ExecutionContext {
            in_primary_interrupt: crate::arch::interrupts::in_interrupt(),
            spin_locks_held: crate::sync::spin_locks_held(),
        }
    }
}

/// Why quickmap could not be set up.
#[derive(Debug)]
pub enum QuickMapInitError {
    /// The window region's page table could not be created.
    PageTable(paging::MapError),
    /// quickmap refused the configuration.
    Config(quickmap::ConfigError),
}

impl core::fmt::Display for QuickMapInitError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            Self::PageTable(error) => write!(formatter, "window region page table: {error}"),
            Self::Config(error) => write!(formatter, "{error}"),
        }
    }
}

/// The window layout of a quickmap instance whose region starts `base`.
fn layout_at(base: u64) -> WindowLayout {
    WindowLayout::guarded(VirtAddr(base as usize), WINDOWS_PER_CPU)
}

/// Build a quickmap instance over `cpu_windows.len()` CPUs with its windows at
/// `region_base` (2 MiB aligned, inside the window region), using the x86_64
/// backend as `backend` wraps it. The kernel's own instance is made by
/// [`init`]; tests build others (over a platform that deliberately does not
/// pin, or a backend that skips invalidations) in other 2 MiB slots.
pub fn build<P: Platform, M: Mmu>(
    platform: P,
    region_base: u64,
    cpu_windows: &'static [CpuWindows<WINDOWS_PER_CPU>],
    backend: impl FnOnce(X86Mmu) -> M,
) -> Result<QuickMap<P, M, WINDOWS_PER_CPU>, QuickMapInitError> {
    let layout = layout_at(region_base);
    let region_bytes = cpu_windows.len() * layout.cpu_stride;
    assert!(
        region_base.is_multiple_of(LARGE_PAGE_SIZE)
            && region_bytes as u64 <= LARGE_PAGE_SIZE
            && WINDOW_REGION.contains(&region_base),
        "quickmap: a window region of {region_bytes:#x} bytes at {region_base:#x} must lie in one \
         2 MiB-aligned page table inside the window region"
    );
    // One leaf table maps the whole region, so its entries are one array.
    let leaf = paging::ensure_leaf_table(crate::arch::VirtAddr::new(region_base))
        .map_err(QuickMapInitError::PageTable)?;
    let first_entry = leaf.entry_pointer(crate::arch::VirtAddr::new(region_base));
    // SAFETY: 1. `first_entry` is the live leaf entry for `region_base`, and the
    // table (never freed) holds the entries of the following
    // `region_bytes / PAGE_SIZE` pages in order; 2. the window region is left
    // to quickmap: nothing else maps pages there, so its entries are clear;
    // 3. boot sets EFER.NXE and programs IA32_PAT on every CPU before it runs
    // kernel code that maps pages.
    let mmu = unsafe {
        X86Mmu::new(
            layout.base,
            region_bytes / PAGE_SIZE,
            first_entry.cast::<u64>(),
        )
    };
    let direct_map_end = paging::direct_map_end().as_u64();
    let config = Config {
        window_base: layout.base,
        direct_map: (direct_map_end > 0).then(|| DirectMap {
            phys_start: PhysAddr(0),
            len: direct_map_end,
            virt_start: VirtAddr(DIRECT_MAP_BASE.as_u64() as usize),
        }),
        phys_limit: physical_address_limit(),
    };
    QuickMap::new(config, platform, backend(mmu), cpu_windows).map_err(QuickMapInitError::Config)
}

/// Set up the kernel's quickmap for every CPU, once, on the bootstrap CPU after
/// the CPUs are counted and before any AP or thread may use it.
pub fn init() -> Result<(), QuickMapInitError> {
    let cpus = crate::cpu::cpu_count();
    let quickmap = build(
        QmkPlatform,
        WINDOW_REGION.start,
        &CPU_WINDOWS[..cpus],
        |mmu| mmu,
    )?;
    QUICKMAP.call_once(|| quickmap);
    crate::sched::register_might_sleep_check(assert_no_quick_mapping_held);
    Ok(())
}

/// The kernel's quickmap.
///
/// # Panics
///
/// Before [`init`].
#[inline]
pub fn quickmap() -> &'static KernelQuickMap {
    match QUICKMAP.get() {
        Some(quickmap) => quickmap,
        None => panic!("quickmap: used before vm::quick::init"),
    }
}

/// The might-sleep check: *"It is therefore not safe for machine-independent
/// code to sleep ... while holding these mappings."*
fn assert_no_quick_mapping_held() {
    if let Some(quickmap) = QUICKMAP.get() {
        quickmap.assert_may_sleep();
    }
}

/// The highest physical address width the CPU supports (CPUID 0x8000_0008).
fn physical_address_limit() -> PhysAddr {
    // SAFETY: CPUID leaf 0x8000_0008 exists on every x86_64 CPU (long mode
    // requires extended leaves up to it); it has no side effects.
    #[allow(unused_unsafe)]
    let leaf = unsafe { core::arch::x86_64::__cpuid(0x8000_0008) };
    PhysAddr(1 << (leaf.eax & 0xff))
}

/// A page the caller vouches for as the man page asks: wired, held or
/// unmanaged for as long as it is mapped.
struct ResidentPage<'p>(&'p VmPage);

// SAFETY: `check_resident` verified the page is wired, held or unmanaged when
// it was entered, and the caller of the FreeBSD functions keeps it so until the
// matching remove (their documented contract, as in FreeBSD).
unsafe impl HeldPage for ResidentPage<'_> {
    #[inline]
    fn phys_addr(&self) -> PhysAddr {
        self.0.phys_addr()
    }

    #[inline]
    fn memory_attribute(&self) -> MemoryAttribute {
        self.0.memory_attribute()
    }
}

/// *"The page must not be swapped or otherwise reused while the mapping is
/// active. It must be either wired or held, or it must belong to an unmanaged
/// region such as I/O device memory."*
#[inline]
fn check_resident(page: &VmPage) -> ResidentPage<'_> {
    if !page.is_resident() {
        page_not_resident(page);
    }
    ResidentPage(page)
}

#[cold]
#[inline(never)]
#[track_caller]
fn page_not_resident(page: &VmPage) -> ! {
    let (wired, held) = page.pins();
    panic!(
        "quickmap: page not wired or held: managed page {} has wire count {wired} and hold count \
         {held}; wire or hold it before mapping it",
        page.phys_addr()
    )
}

/// `pmap_quick_enter_page(9)`: map `page` at a window of this CPU (or return its
/// direct-map address) and return the kernel virtual address. Exported with the C
/// ABI under FreeBSD's name, for C code and for the benchmark and static check. Never sleeps,
/// takes no lock, always returns a valid address.
///
/// The page must be wired, held or unmanaged, and stay so until
/// [`pmap_quick_remove_page`]; the caller must not sleep in between, and must
/// remove it in the same context. Unlike FreeBSD, it may be called under spin
/// locks and from interrupt handlers, and up to [`WINDOWS_PER_CPU`] mappings
/// may be held at once per CPU.
#[no_mangle]
#[inline(never)]
pub extern "C" fn pmap_quick_enter_page(page: &VmPage) -> usize {
    quickmap().enter(&check_resident(page)).0
}

/// `pmap_quick_remove_page(9)`: remove the mapping at `kva`, making its window
/// available for reuse; the address faults from then on. Re-enables
/// preemption if the enter disabled it.
///
/// # Safety
///
/// `kva` was returned by [`pmap_quick_enter_page`] in the calling context and
/// not removed since, and nothing uses it afterwards.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn pmap_quick_remove_page(kva: usize) {
    // SAFETY: forwarded from this function's contract.
    unsafe { quickmap().remove(VirtAddr(kva)) }
}

/// `pmap_zero_page`: fill `page` with zeroes through a quick mapping.
pub fn pmap_zero_page(page: &VmPage) {
    quickmap().zero_page(&check_resident(page));
}

/// `pmap_copy_page`: copy `source` to `destination` through two quick mappings.
pub fn pmap_copy_page(source: &VmPage, destination: &VmPage) {
    quickmap().copy_page(&check_resident(source), &check_resident(destination));
}
