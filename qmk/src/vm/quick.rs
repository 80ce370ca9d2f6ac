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
//! - Local mappings (Linux's `kmap_local_page`): [`local_quickmap`] maps up to
//!   [`LOCAL_SLOTS`] pages per thread in a region of its own; the holder stays
//!   on its CPU (`sched::migrate_disable`) but may be preempted and sleep. Each
//!   thread's save area is in its `Thread`; the scheduler's switch hooks
//!   ([`SwitchWork::LocalMappings`](crate::sched::SwitchWork), set while the
//!   thread holds any) take its slots down and put them back; the thread-exit
//!   path and the page-fault handler ask quickmap about them.

use quickmap::{
    Config, CpuLocalSlots, CpuWindows, Deferred, DirectMap, ExecutionContext, HeldPage,
    Invalidation, LocalMappings, LocalPlatform, LocalQuickMap, MemoryAttribute, Mmu, PhysAddr,
    Platform, QuickMap, VirtAddr, WindowLayout,
};
use spin::Once;

use super::page::VmPage;
use crate::arch::paging::{self, DIRECT_MAP_BASE, LARGE_PAGE_SIZE, WINDOW_REGION};
use crate::arch::quickmap_backend::{leaf_tables, physical_address_limit, KernelMmu};
use crate::cpu::MAX_CPUS;
use crate::sched::thread::Thread;
use crate::sched::{SwitchHooks, SwitchWork};

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

/// Local mappings a thread holds at most (the `L` of its save area): with a
/// guard page after each, a CPU's 4 slots fill one 64-byte line of the
/// region's page table, and 64 CPUs' slots fill one page table exactly.
pub const LOCAL_SLOTS: usize = 4;

/// The kernel's local mappings (see the module documentation).
pub type KernelLocalQuickMap<P = QmkPlatform> = LocalQuickMap<P, KernelMmu, LOCAL_SLOTS>;

static CPU_LOCAL_SLOTS: [CpuLocalSlots; MAX_CPUS] = [const { CpuLocalSlots::new() }; MAX_CPUS];

static LOCAL_QUICKMAP: Once<KernelLocalQuickMap> = Once::new();

/// Where the local slots are: a 2 MiB slot of the window region no other
/// instance uses (0: strict, 2 and 4: tests, 6: deferred, 8: the benchmark's
/// global window, 10: the deferred teeth, 14: the local teeth).
pub const LOCAL_REGION_BASE: u64 = WINDOW_REGION.start + 12 * LARGE_PAGE_SIZE;

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
    let local = WindowLayout::guarded(VirtAddr(LOCAL_REGION_BASE as usize), LOCAL_SLOTS);
    assert!(
        leaf_tables(local.base, local.region_len(MAX_CPUS)) == 1,
        "the local slots for MAX_CPUS CPUs need more than one page table"
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

// SAFETY: 1. `local_mappings` is `None` in an interrupt handler (and before the
// scheduler runs here); otherwise the running thread's own save area, a field
// of its `Thread`, which the scheduler keeps alive (an `Arc`) until after its
// last switch-out, and which only quickmap touches. 2. `migrate_disable` is
// `sched::migrate_disable`: the scheduler runs the thread on no other CPU until
// the matching `migrate_enable` (see `sched::migrate`). 3. `init` registers
// `local_switch_out`/`local_switch_in` for `SwitchWork::LocalMappings`, which
// `migrate_disable` below sets on the thread and `migrate_enable` clears: the
// switch calls them, with interrupts off and the scheduler lock held, for every
// thread that holds local mappings, before the incoming one resumes. 4. A
// switch happens only at critical depth 0.
unsafe impl LocalPlatform<LOCAL_SLOTS> for QmkPlatform {
    #[inline]
    fn local_mappings(&self) -> Option<&LocalMappings<LOCAL_SLOTS>> {
        running_threads_local_mappings()
    }

    #[inline]
    fn migrate_disable(&self) {
        crate::sched::migrate_disable_with_switch_work(SwitchWork::LocalMappings);
    }

    #[inline]
    fn migrate_enable(&self) {
        crate::sched::remove_switch_work_and_migrate_enable(SwitchWork::LocalMappings);
    }
}

/// The running thread's save area for local mappings: `None` in an interrupt
/// handler (which has no thread of its own: the thread it interrupted would
/// otherwise be lent a mapping it does not know of) and before the scheduler
/// runs on this CPU.
#[inline]
pub fn running_threads_local_mappings<'t>() -> Option<&'t LocalMappings<LOCAL_SLOTS>> {
    if crate::arch::interrupts::in_interrupt() {
        return None;
    }
    let thread = crate::sched::thread::current_thread_pointer();
    // SAFETY: a non-null current pointer names the running thread, which the
    // scheduler keeps alive until it has been switched out for the last time;
    // the caller is that thread (not a handler, checked above), and uses the
    // area no longer than that (quickmap's guards are not `Send`, and the
    // thread-exit check runs before the last switch-out).
    unsafe { thread.as_ref() }.map(Thread::local_mappings)
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
    let (config, mmu) = region_backend(region_base, N, cpu_windows.len())?;
    QuickMap::new(config, platform, backend(mmu), cpu_windows).map_err(QuickMapInitError::Config)
}

/// The configuration and x86_64 backend of a region of `per_cpu` guarded
/// slots per CPU for `cpus` CPUs at `region_base` (2 MiB aligned, inside the
/// window region), its page table created.
fn region_backend(
    region_base: u64,
    per_cpu: usize,
    cpus: usize,
) -> Result<(Config, KernelMmu), QuickMapInitError> {
    let layout = WindowLayout::guarded(VirtAddr(region_base as usize), per_cpu);
    let region_bytes = layout.region_len(cpus);
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
    let region_pages = layout.region_pages(cpus);
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
    Ok((config, mmu))
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
    let local = build_local(QmkPlatform, LOCAL_REGION_BASE, &CPU_LOCAL_SLOTS[..cpus])?;
    LOCAL_QUICKMAP.call_once(|| local);
    crate::sched::set_switch_hooks(
        SwitchWork::LocalMappings,
        Some(SwitchHooks {
            switch_out: qmk_local_switch_out,
            switch_in: qmk_local_switch_in,
        }),
    );
    // Local mappings need nothing here: they are not windows of the pinned
    // instances, so a thread that holds only local mappings may sleep.
    crate::sched::register_might_sleep_check(assert_no_quick_mapping_held);
    Ok(())
}

/// Build local mappings over `slots.len()` CPUs with their slots at
/// `region_base` (2 MiB aligned, inside the window region), as [`build`] does
/// for windows; the kernel's own instance is made by [`init`], tests build
/// others (over a platform that does not keep holders on their CPU).
pub fn build_local<P: LocalPlatform<LOCAL_SLOTS>>(
    platform: P,
    region_base: u64,
    slots: &'static [CpuLocalSlots],
) -> Result<LocalQuickMap<P, KernelMmu, LOCAL_SLOTS>, QuickMapInitError> {
    let (config, mmu) = region_backend(region_base, LOCAL_SLOTS, slots.len())?;
    LocalQuickMap::new(config, platform, mmu, slots).map_err(QuickMapInitError::Config)
}

/// The kernel's local mappings.
///
/// # Panics
///
/// Before [`init`].
#[inline]
pub fn local_quickmap() -> &'static KernelLocalQuickMap {
    match LOCAL_QUICKMAP.get() {
        Some(local) => local,
        None => used_before_init(),
    }
}

/// The switch-out hook of [`SwitchWork::LocalMappings`]: `thread` stops running
/// on this CPU (interrupts off). Exported under a fixed name for the static
/// check of the kernel's machine code.
#[no_mangle]
#[inline(never)]
pub fn qmk_local_switch_out(thread: &Thread) {
    local_quickmap().switch_out(thread.local_mappings());
}

/// The switch-in hook of [`SwitchWork::LocalMappings`]: `thread` is about to
/// run on this CPU (interrupts off).
#[no_mangle]
#[inline(never)]
pub fn qmk_local_switch_in(thread: &Thread) {
    local_quickmap().switch_in(thread.local_mappings());
}

/// Asked by the page-fault handler about a fault it cannot handle: panics
/// with quickmap's rule when the address is a local slot (`local slot not
/// restored`, `local slot not held`); returns otherwise.
pub fn explain_local_slot_fault(address: u64) {
    if let Some(local) = LOCAL_QUICKMAP.get() {
        local.check_fault(VirtAddr(address as usize));
    }
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

/// Linux's `kmap_local_page` on the kernel's local mappings, FreeBSD-style: map
/// `page` at a local slot of the calling thread and return its address. The
/// thread stays on this CPU until [`qmk_local_remove_page`] of its last local
/// mapping, and may be preempted and sleep meanwhile; it must not exit, nor let
/// the page's wire or hold go, before the remove. Exported with the C ABI for
/// C callers and for the static check of the kernel's machine code.
#[no_mangle]
#[inline(never)]
pub extern "C" fn qmk_local_enter_page(page: &VmPage) -> usize {
    local_quickmap().enter(&check_resident(page)).0
}

/// `kunmap_local`: remove the local mapping at `kva`; the address faults from
/// then on.
///
/// # Safety
///
/// `kva` was returned by [`qmk_local_enter_page`] to the calling thread and not
/// removed since, and nothing uses it afterwards.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn qmk_local_remove_page(kva: usize) {
    // SAFETY: forwarded from this function's contract.
    unsafe { local_quickmap().remove(VirtAddr(kva)) }
}
