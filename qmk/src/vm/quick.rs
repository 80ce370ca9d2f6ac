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
//! - Direct map: qmk maps `dmap` MiB from the start of RAM write-back at
//!   `DIRECT_MAP_BASE + physical`;
//!   write-back pages there take quickmap's fast path.
//! - Views: the kernel's (strict) instance maps up to `2 * WINDOWS_PER_CPU - 1`
//!   wired pages at consecutive addresses of this CPU, with a guard page after
//!   them ([`KernelView`]): `quickmap().map_pages(&wired)` for scattered pages,
//!   `quickmap().map_range(&WiredRun::new(&wired))` for a contiguous run
//!   ([`WiredRun`](super::page::WiredRun)).

use quickmap::{
    Config, CpuWindows, Deferred, DirectMap, ExecutionContext, HeldPage, Invalidation,
    MemoryAttribute, Mmu, PhysAddr, Platform, QuickMap, VirtAddr, WindowLayout,
};
use spin::Once;

use super::page::VmPage;
use crate::arch::paging::{self, DIRECT_MAP_BASE, LARGE_PAGE_SIZE, WINDOW_REGION};
use crate::arch::quickmap_backend::{leaf_tables, physical_address_limit, KernelMmu};
use crate::cpu::MAX_CPUS;

/// Windows per CPU: one for the thread's usual single page, one more for a
/// page-to-page copy, and two for interrupt handlers that interrupt it.
pub const WINDOWS_PER_CPU: usize = 4;

/// quickmap as this kernel runs it.
pub type KernelQuickMap<P = QmkPlatform> = QuickMap<P, KernelMmu, WINDOWS_PER_CPU>;

/// A view of several pages on the kernel's instance (see [`quickmap::View`]):
/// pinned to this CPU until dropped, like a single mapping.
pub type KernelView<'q, 'p> = quickmap::View<'q, 'p, QmkPlatform, KernelMmu, WINDOWS_PER_CPU>;

static CPU_WINDOWS: [CpuWindows<WINDOWS_PER_CPU>; MAX_CPUS] =
    [const { CpuWindows::new() }; MAX_CPUS];

static QUICKMAP: Once<KernelQuickMap> = Once::new();

/// Windows per CPU of the deferred instance: the most quickmap supports, so that a
/// local full flush is paid once per 32 pairs; with a guard page after each, 8 CPUs'
/// windows fill exactly one 2 MiB page table.
pub const DEFERRED_WINDOWS_PER_CPU: usize = 32;

/// The CPUs a deferred instance serves at most (its region is one 2 MiB page table).
pub const DEFERRED_MAX_CPUS: usize = 8;

/// The kernel's second instance: deferred invalidation, for RAM that is zeroed,
/// copied and bounced all the time (see `quickmap::invalidation`).
pub type DeferredQuickMap<P = QmkPlatform> =
    QuickMap<P, KernelMmu, DEFERRED_WINDOWS_PER_CPU, Deferred>;

static DEFERRED_CPU_WINDOWS: [CpuWindows<DEFERRED_WINDOWS_PER_CPU>; DEFERRED_MAX_CPUS] =
    [const { CpuWindows::new() }; DEFERRED_MAX_CPUS];

static DEFERRED_QUICKMAP: Once<DeferredQuickMap> = Once::new();

/// Where the deferred instance's windows are: a 2 MiB slot of the window region that
/// the kernel's strict instance (slot 0), the tests' instances (slots 2 and 4) and the
/// benchmark's global window (slot 8) leave alone.
pub const DEFERRED_REGION_BASE: u64 = WINDOW_REGION.start + 6 * LARGE_PAGE_SIZE;

// Each instance's windows, for the most CPUs it serves, lie in the one page table
// `build` gives it: checked when the kernel is compiled, not at boot on a big machine.
const _: () = {
    let strict = WindowLayout::guarded(VirtAddr(WINDOW_REGION.start as usize), WINDOWS_PER_CPU);
    assert!(
        leaf_tables(strict.base, strict.region_len(MAX_CPUS)) == 1,
        "the strict instance's windows for MAX_CPUS CPUs need more than one page table"
    );
    let deferred = WindowLayout::guarded(
        VirtAddr(DEFERRED_REGION_BASE as usize),
        DEFERRED_WINDOWS_PER_CPU,
    );
    assert!(
        leaf_tables(deferred.base, deferred.region_len(DEFERRED_MAX_CPUS)) == 1,
        "the deferred instance's windows for DEFERRED_MAX_CPUS CPUs need more than one page table"
    );
};

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

/// Build a quickmap instance over `cpu_windows.len()` CPUs with its windows at
/// `region_base` (2 MiB aligned, inside the window region), using the arch's
/// backend as `backend` wraps it. The kernel's own instance is made by
/// [`init`]; tests build others (over a platform that deliberately does not
/// pin, or a backend that skips invalidations) in other 2 MiB slots.
pub fn build<P: Platform, M: Mmu, const N: usize, I: Invalidation>(
    platform: P,
    region_base: u64,
    cpu_windows: &'static [CpuWindows<N>],
    backend: impl FnOnce(KernelMmu) -> M,
) -> Result<QuickMap<P, M, N, I>, QuickMapInitError> {
    let layout = WindowLayout::guarded(VirtAddr(region_base as usize), N);
    let region_bytes = layout.region_len(cpu_windows.len());
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
    let region_pages = layout.region_pages(cpu_windows.len());
    // SAFETY: 1. `first_entry` is the live leaf entry for `region_base`, and the
    // table (never freed) holds the entries of the following
    // `region_pages - 1` pages in order; 2. the window region is left
    // to quickmap: nothing else maps pages there, so its entries are clear.
    let mmu = unsafe {
        crate::arch::quickmap_backend::kernel_mmu(
            layout.base,
            region_pages,
            first_entry.cast::<u64>(),
        )
    };
    let direct_map = paging::direct_map_range();
    let direct_map_len = direct_map.end.as_u64() - direct_map.start.as_u64();
    let config = Config {
        window_base: layout.base,
        direct_map: (direct_map_len > 0).then(|| DirectMap {
            phys_start: PhysAddr(direct_map.start.as_u64()),
            len: direct_map_len,
            virt_start: (DIRECT_MAP_BASE + direct_map.start.as_u64()).into(),
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
    // More CPUs than one page table of deferred windows serves: the kernel runs with
    // its strict instance only, and `deferred_quickmap` says why if asked.
    if cpus <= DEFERRED_MAX_CPUS {
        let deferred = build(
            QmkPlatform,
            DEFERRED_REGION_BASE,
            &DEFERRED_CPU_WINDOWS[..cpus],
            |mmu| mmu,
        )?;
        DEFERRED_QUICKMAP.call_once(|| deferred);
    }
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
        None => used_before_init(),
    }
}

#[cold]
#[inline(never)]
fn used_before_init() -> ! {
    panic!("quickmap: used before vm::quick::init")
}

/// The kernel's deferred instance.
///
/// # Panics
///
/// Before [`init`], or on a machine with more than [`DEFERRED_MAX_CPUS`] CPUs.
#[inline]
pub fn deferred_quickmap() -> &'static DeferredQuickMap {
    match DEFERRED_QUICKMAP.get() {
        Some(quickmap) => quickmap,
        None => no_deferred_instance(),
    }
}

#[cold]
#[inline(never)]
fn no_deferred_instance() -> ! {
    panic!(
        "quickmap: no deferred instance: it is set up by vm::quick::init on machines with at \
         most {DEFERRED_MAX_CPUS} CPUs (this one has {})",
        crate::cpu::cpu_count()
    )
}

/// The might-sleep check: *"It is therefore not safe for machine-independent
/// code to sleep ... while holding these mappings."*
fn assert_no_quick_mapping_held() {
    if let Some(quickmap) = QUICKMAP.get() {
        quickmap.assert_may_sleep();
    }
    if let Some(quickmap) = DEFERRED_QUICKMAP.get() {
        quickmap.assert_may_sleep();
    }
}

/// The windows this CPU has in use in the kernel's two instances (bit masks),
/// as the common interrupt path reads them on entry and on exit.
///
/// quickmap claims a window with a plain load and store, which is sound only
/// because a handler gives back every window it took before it returns
/// (promise 3 of [`Platform`]); [`interrupt_windows_check`] holds every
/// external interrupt and IPI handler to that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowsInUse {
    strict: u32,
    deferred: u32,
}

impl WindowsInUse {
    /// This CPU's windows in use now: one load of each instance's per-CPU
    /// free mask, straight from the statics the instances are built over.
    /// Before [`init`] (and for the deferred instance on a CPU it does not
    /// serve) every window reads free, so no "initialised?" test is needed.
    #[inline(always)]
    pub fn on(cpu: usize) -> Self {
        WindowsInUse {
            strict: CPU_WINDOWS.get(cpu).map_or(0, CpuWindows::in_use_mask),
            deferred: DEFERRED_CPU_WINDOWS
                .get(cpu)
                .map_or(0, CpuWindows::in_use_mask),
        }
    }
}

/// Rule `interrupt returned holding a window`, checked by qmk's common
/// interrupt path around the handler of every vector 32–255: `at_entry` is
/// [`WindowsInUse::on`] `cpu` before the handler ran; a window in use now
/// that was free then is one the handler entered and did not remove.
/// Exceptions (vectors 0–31) are not checked: the only one that returns is
/// the fault probe's page-fault recovery, which maps nothing.
///
/// Cost: two loads, and/andn/or and one not-taken branch.
#[inline(always)]
pub fn interrupt_windows_check(vector: usize, cpu: usize, at_entry: WindowsInUse) {
    let now = WindowsInUse::on(cpu);
    if (now.strict & !at_entry.strict) | (now.deferred & !at_entry.deferred) != 0 {
        interrupt_returned_holding_a_window(vector, cpu, at_entry, now);
    }
}

#[cold]
#[inline(never)]
fn interrupt_returned_holding_a_window(
    vector: usize,
    cpu: usize,
    at_entry: WindowsInUse,
    now: WindowsInUse,
) -> ! {
    /// The windows of one instance that a handler left in use.
    struct Leak {
        kind: &'static str,
        windows: usize,
        at_entry: u32,
        now: u32,
    }

    impl Leak {
        fn count(&self) -> u32 {
            (self.now & !self.at_entry).count_ones()
        }
    }

    impl core::fmt::Display for Leak {
        fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
            let width = self.windows + 2;
            write!(
                formatter,
                "{} {}window(s) it did not remove ({:#0width$b} in use, {:#0width$b} at entry)",
                self.count(),
                self.kind,
                self.now,
                self.at_entry,
            )
        }
    }

    let strict = Leak {
        kind: "",
        windows: WINDOWS_PER_CPU,
        at_entry: at_entry.strict,
        now: now.strict,
    };
    let deferred = Leak {
        kind: "deferred ",
        windows: DEFERRED_WINDOWS_PER_CPU,
        at_entry: at_entry.deferred,
        now: now.deferred,
    };
    const RULE: &str = "quickmap: interrupt returned holding a window";
    const ADVICE: &str = "remove every mapping before returning from an interrupt";
    match (strict.count() != 0, deferred.count() != 0) {
        (true, true) => panic!(
            "{RULE}: the handler for vector {vector:#04x} on CPU {cpu} entered {strict} and \
             {deferred}; {ADVICE}"
        ),
        (true, false) => panic!(
            "{RULE}: the handler for vector {vector:#04x} on CPU {cpu} entered {strict}; {ADVICE}"
        ),
        _ => panic!(
            "{RULE}: the handler for vector {vector:#04x} on CPU {cpu} entered {deferred}; \
             {ADVICE}"
        ),
    }
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

/// `pmap_quick_enter_page` on the kernel's deferred instance: the same contract,
/// but the remove of a write-back page leaves its window mapped until this CPU's
/// next local full flush (see `quickmap::invalidation`). Exported with the C ABI for
/// the benchmark and the static check.
#[no_mangle]
#[inline(never)]
pub extern "C" fn qmk_deferred_enter_page(page: &VmPage) -> usize {
    deferred_quickmap().enter(&check_resident(page)).0
}

/// `pmap_quick_remove_page` on the kernel's deferred instance.
///
/// # Safety
///
/// `kva` was returned by [`qmk_deferred_enter_page`] in the calling context and
/// not removed since, and nothing uses it afterwards.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn qmk_deferred_remove_page(kva: usize) {
    // SAFETY: forwarded from this function's contract.
    unsafe { deferred_quickmap().remove(VirtAddr(kva)) }
}
