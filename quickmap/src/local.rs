//! Local mappings: Linux's `kmap_local_page` beside FreeBSD's pinned windows. A local
//! mapping pins its thread to the CPU (migration disabled) but not the CPU to its
//! thread: the holder may be preempted, may block and may sleep, and keeps its address.
//!
//! ## Why a second kind
//!
//! A [`QuickMap`] window disables preemption from `enter` to `remove`, like FreeBSD's
//! `pmap_quick_enter_page` and Linux's old `kmap_atomic`. That is what makes a
//! per-CPU window cheap, and what makes a long copy a latency problem: nothing else
//! runs on the CPU meanwhile (PREEMPT_RT kernels cannot afford it), and the holder
//! cannot sleep (a page fault on a user buffer, a blocking lock). Linux 5.11 replaced
//! `kmap_atomic` with `kmap_local_page`, which disables only *migration*: the holder
//! may be preempted and may block, and the scheduler takes the thread's mappings down
//! when it switches the thread out and puts them back when it switches it in
//! (`__kmap_local_sched_out` / `__kmap_local_sched_in` in `mm/highmem.c`).
//! [`LocalQuickMap`] is that, for Rust kernels.
//!
//! | | [`QuickMap::map`] (pinned) | [`LocalQuickMap::map`] (local) |
//! |---|---|---|
//! | while held | no preemption, no sleep | no migration; preemption and sleep allowed |
//! | who may map | threads and interrupt handlers | threads only (rule `local mapping in an interrupt handler`) |
//! | slots | `N` per CPU, shared by the thread and the handlers on top of it | `L` per *thread*, at its CPU's `L` slot addresses |
//! | invalidation | strict (one `invlpg` at remove) or deferred | strict, always |
//! | context switch | never happens while held | `switch_out` clears and invalidates each held slot, `switch_in` writes it back |
//!
//! ## Slots belong to threads, addresses to CPUs
//!
//! Each CPU has `L` slot addresses, each followed by an unmapped guard page, in the
//! same guarded layout as windows ([`WindowLayout::guarded`]`(base, L)`). Slot numbers
//! are per thread: the thread's [`LocalMappings`] (a save area the kernel embeds in its
//! thread structure) has one bit per slot it holds and the page-table entry it gave
//! each. Every thread on a CPU maps its own pages at the *same* addresses, and only the
//! running thread's slots are installed: the context switch clears the outgoing
//! thread's entries (`switch_out`) and writes the incoming thread's (`switch_in`). So a
//! slot is claimed with a plain load and store of the thread's own word (no CPU-wide
//! state, no lock), released in any order (Linux's `kmap_local` is a stack, LIFO by
//! rule), and costs the context switch nothing when the thread holds none.
//!
//! Why a region and an instance of its own, rather than `L` more slots beside each
//! CPU's `N` windows: a pinned window belongs to its CPU and is shared by every context
//! on it, a local slot belongs to a thread; they are claimed from different words,
//! invalidated differently (a local slot never defers: see below) and used by
//! different contexts. Beside the windows, they would change the pinned instance's
//! strides and region (with 4 windows, 64 CPUs fill one page table exactly; 4 slots
//! more would double it), while apart, the pinned instance's layout, code and cost do
//! not change at all, and a kernel sizes each region, and places it, for its own use.
//! The price is a second [`Config`] and a second [`Mmu`] backend over the slot region,
//! which for a kernel is one more page table.
//!
//! ## The translation lookaside buffer
//!
//! A slot's address is cached in its CPU's TLB only while its entry is present, because
//! every clear of a slot's entry (at removal, at switch-out) is followed by a local
//! invalidation of its address on that CPU before anything else runs there, and only
//! that CPU ever uses its slots. So `switch_in` writes entries without invalidating,
//! and a thread never reaches another thread's page through a stale translation.
//! This is also why local slots are always strict: deferring the invalidation, as a
//! [`Deferred`](crate::Deferred) pool does, would leave the outgoing thread's pages
//! reachable to the next thread on the CPU at the same addresses.
//!
//! ## What the kernel provides
//!
//! - [`LocalPlatform`]: the calling thread's save area (none in an interrupt handler),
//!   and `migrate_disable`/`migrate_enable`, which quickmap calls when the thread's
//!   first local mapping is made and when its last one goes (not per mapping: a thread
//!   that maps and unmaps in a loop pays one each per pair, a thread that holds several
//!   pays one in all);
//! - in its context switch, with interrupts disabled and before the incoming thread
//!   resumes, [`LocalQuickMap::switch_out`] with the outgoing thread's save area, then
//!   [`LocalQuickMap::switch_in`] with the incoming one's. Each is a load and a branch
//!   when the thread holds nothing; a kernel that keeps a per-thread "needs switch
//!   work" flag (set in `migrate_disable`, cleared in `migrate_enable`) skips even
//!   the calls;
//! - on its thread-exit path, [`LocalMappings::check_thread_exit`] (rule `thread
//!   exited holding a local mapping`), and in its page-fault handler, for a fault it
//!   cannot handle, [`LocalQuickMap::check_fault`] (rules `local slot not restored`,
//!   `local slot not held`);
//! - its `might_sleep` needs nothing new: local slots are not windows of the pinned
//!   instance, whose [`QuickMap::assert_may_sleep`] goes on refusing a sleep while a
//!   window is held.
//!
//! ## Making and removing a slot: a critical section of a few instructions
//!
//! The switch hooks read the thread's mask and saved entries; making a slot changes
//! the mask, the saved entry and the page-table entry, and removing one changes them
//! back. Both run with preemption disabled ([`Platform::critical_enter`] for a dozen
//! instructions, as Linux's `__kmap_local_pfn_prot` and `kunmap_local_indexed` do with
//! `preempt_disable`), so a hook sees each slot either wholly made or wholly gone.
//! Without it, either order breaks on a preemption between the steps. Making: with the
//! mask first, a preemption before the entry write lets `switch_in` write the entry
//! and the thread then writes it again over a present one; with the entry first, the
//! switch-out misses a present entry the mask does not show, and the next thread on
//! the CPU may reach this thread's page through a cached translation at the same
//! address. Removing: with the mask bit freed last but the saved entry still in place,
//! a preemption between the clear and the invalidation has `switch_in` put the entry
//! back, and the slot stays mapped, and unowned, after the thread frees it. Inside the
//! section the order is still the safe one (entry and translation gone before the bit
//! is freed), so that an interrupt handler on top, which may look at the thread's
//! slots (a page-fault diagnosis), never finds a freed slot mapped. An interrupt
//! handler never makes or removes a local slot, so nothing else can interleave.
//!
//! ## Checks
//!
//! Always: `local mappings beyond capacity` (or a [`LocalEnterError`] from
//! `try_map`/`try_enter`), `local mapping in an interrupt handler`, `thread exited
//! holding a local mapping`, the page rules and `access outside the page`. With
//! `contract-checks`: `local remove by another thread` (the unsafe
//! [`remove`](LocalQuickMap::remove); the guard is not `Send`, so with it this is a type
//! error), `remove of a foreign address`, `unknown CPU`, and `local mappings migrated`
//! (a thread switched in on another CPU than its slots': the kernel broke
//! [`LocalPlatform`]'s migration promise).

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::addr::{VirtAddr, PAGE_SIZE};
use crate::instance::instance_accessors;
use crate::layout::{ConfigError, Guarded, WindowLayout};
use crate::local_guard::LocalMapping;
use crate::mmu::{Mmu, Window};
use crate::page::{HeldPage, MemoryAttribute};
use crate::percpu::WindowEntry;
use crate::platform::{self, ContextPolicy, Platform};
#[cfg(doc)]
use crate::quick_map::QuickMap;
use crate::quick_map::{Config, PAGE_SHIFT};
use crate::routing::Routing;
use crate::rules;
#[cfg(feature = "stats")]
use crate::stats::LocalCounters;

/// What quickmap asks of a kernel for local mappings, beyond [`Platform`]: each
/// thread's save area, and migration control.
///
/// # Safety
///
/// Implementors promise:
/// 1. [`local_mappings`](Self::local_mappings) returns `Some` only in a thread that
///    the scheduler switches (not in an interrupt handler, which returns `None`),
///    and then that thread's own save area: the same one at every call by the thread,
///    touched by nothing but quickmap's calls made by the thread and by the switch
///    hooks below, and neither moved nor freed until the thread has been switched
///    out for the last time.
/// 2. Between [`migrate_disable`](Self::migrate_disable) and the matching
///    [`migrate_enable`](Self::migrate_enable) the calling thread runs on no CPU but
///    the one it called `migrate_disable` on: it may be preempted and may block, and
///    resumes there. The calls nest; quickmap makes them from the thread, with
///    preemption disabled.
/// 3. Every context switch on a CPU, with interrupts disabled on it, calls
///    [`LocalQuickMap::switch_out`] with the save area of the thread that stops
///    running there, then [`LocalQuickMap::switch_in`] with the save area of the
///    thread that runs next, before that thread resumes (a switch may skip either call
///    for a thread whose save area holds no mapping, such as one that is not between
///    `migrate_disable` and `migrate_enable`).
/// 4. [`Platform`]'s promises hold, and a critical section also keeps the switch hooks
///    from running on the CPU.
pub unsafe trait LocalPlatform<const L: usize>: Platform {
    /// The calling thread's save area; `None` in an interrupt handler, or anywhere the
    /// calling code is not a thread the scheduler switches (boot code).
    fn local_mappings(&self) -> Option<&LocalMappings<L>>;

    /// The calling thread's first local mapping is being made (Linux:
    /// `migrate_disable`): keep it on this CPU until [`migrate_enable`]; it may still
    /// be preempted and block. A kernel that calls the switch hooks only for threads
    /// that ask raises the thread's flag here.
    ///
    /// [`migrate_enable`]: Self::migrate_enable
    fn migrate_disable(&self);

    /// The calling thread's last local mapping is gone (Linux: `migrate_enable`): it
    /// may move again (and its switch-hook flag may be cleared).
    fn migrate_enable(&self);
}

/// A thread's local mappings while it is switched out: which local slots it holds,
/// and the page-table entry of each. Linux's `task_struct::kmap_ctrl`.
///
/// The kernel embeds one in each thread's structure (built with [`LocalMappings::new`])
/// and hands it out through [`LocalPlatform::local_mappings`]; quickmap alone reads and
/// writes it. `L` (1 to 32, checked when a [`LocalQuickMap`] is built) is the most local
/// mappings a thread holds at once, and the number of slot addresses per CPU.
///
/// ```
/// use quickmap::LocalMappings;
/// /// A kernel's thread structure.
/// struct Thread {
///     id: u64,
///     local_mappings: LocalMappings<8>,
/// }
/// let thread = Thread { id: 1, local_mappings: LocalMappings::new() };
/// assert_eq!(thread.local_mappings.held(), 0);
/// thread.local_mappings.check_thread_exit(); // holds none: fine
/// ```
#[repr(C)]
pub struct LocalMappings<const L: usize> {
    /// Bit `s` is set while the thread holds slot `s`.
    held: AtomicU32,
    /// The CPU whose slots the mappings are in; meaningful while `held` is not zero.
    cpu: AtomicUsize,
    /// The entry slot `s` maps while held (a [`WindowEntry`]'s word); zero when free.
    entries: [AtomicU64; L],
}

impl<const L: usize> LocalMappings<L> {
    /// One bit per slot.
    pub(crate) const ALL: u32 = match 1u32.checked_shl(L as u32) {
        Some(bit) => bit - 1,
        None => u32::MAX,
    };

    /// A save area that holds nothing: a new thread's.
    pub const fn new() -> Self {
        LocalMappings {
            held: AtomicU32::new(0),
            cpu: AtomicUsize::new(0),
            entries: [const { AtomicU64::new(0) }; L],
        }
    }

    /// The local slots the thread holds, as a bit mask (bit `s`: slot `s`). Exact when
    /// the thread asks about itself, or when it is switched out; otherwise a snapshot.
    pub fn held(&self) -> u32 {
        self.held.load(Ordering::Relaxed)
    }

    /// How many local mappings the thread holds (a snapshot, as [`held`](Self::held)).
    pub fn held_count(&self) -> u32 {
        self.held().count_ones()
    }

    /// The CPU whose slots hold the thread's local mappings, while it holds any.
    pub fn cpu(&self) -> Option<usize> {
        (self.held() != 0).then(|| self.cpu.load(Ordering::Relaxed))
    }

    /// The check a kernel's thread-exit path makes on the exiting thread's save area.
    ///
    /// # Panics
    ///
    /// With rule `thread exited holding a local mapping` if the thread still holds one
    /// (a guard leaked with `mem::forget`, or an address from `enter` never removed).
    #[track_caller]
    pub fn check_thread_exit(&self) {
        let held = self.held();
        if held != 0 {
            rules::thread_exited_holding_a_local_mapping(held, self.cpu.load(Ordering::Relaxed));
        }
    }

    #[inline(always)]
    fn set_held(&self, held: u32) {
        self.held.store(held, Ordering::Relaxed);
    }

    /// A slot is always below `L`: the remainder says so to the compiler (one `and`
    /// for a power-of-two `L`) instead of a bounds check.
    #[inline(always)]
    fn entry(&self, slot: usize) -> WindowEntry {
        WindowEntry::from_bits(self.entries[slot % L].load(Ordering::Relaxed))
    }

    #[inline(always)]
    fn set_entry(&self, slot: usize, entry: WindowEntry) {
        self.entries[slot % L].store(entry.bits(), Ordering::Relaxed);
    }
}

impl<const L: usize> Default for LocalMappings<L> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const L: usize> fmt::Debug for LocalMappings<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalMappings")
            .field("held", &format_args!("{:#b}", self.held()))
            .field("cpu", &self.cpu())
            .finish()
    }
}

/// One CPU's local slots, as far as the CPU keeps anything about them: its event
/// counters (feature `stats`). Which thread's entries the slots hold is the running
/// thread's business, in its [`LocalMappings`]. Build an array of these, one per CPU,
/// for [`LocalQuickMap::new`]:
///
/// ```
/// use quickmap::CpuLocalSlots;
/// static LOCAL_SLOTS: [CpuLocalSlots; 16] = [const { CpuLocalSlots::new() }; 16];
/// ```
#[cfg_attr(feature = "stats", repr(C, align(64)))]
pub struct CpuLocalSlots {
    #[cfg(feature = "stats")]
    counters: LocalCounters,
}

impl CpuLocalSlots {
    /// Nothing counted yet.
    pub const fn new() -> Self {
        CpuLocalSlots {
            #[cfg(feature = "stats")]
            counters: LocalCounters::new(),
        }
    }
}

impl Default for CpuLocalSlots {
    fn default() -> Self {
        Self::new()
    }
}

/// Why [`LocalQuickMap::try_map`] or [`LocalQuickMap::try_enter`] mapped nothing: the
/// calling thread holds all its local mappings already.
///
/// A condition, not a bug (the bugs still panic): nothing was mapped and nothing is
/// pinned. The thread may drop one of its local mappings and try again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalEnterError {
    /// The CPU the thread runs on.
    pub cpu: usize,
    /// How many local mappings a thread holds at most: the instance's `L`.
    pub capacity: usize,
}

impl fmt::Display for LocalEnterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let LocalEnterError { cpu, capacity } = *self;
        write!(
            f,
            "quickmap: no free local slot: the thread on CPU {cpu} already holds all {capacity} \
             of its local mappings; drop one and try again"
        )
    }
}

impl core::error::Error for LocalEnterError {}

/// A local slot the calling thread holds, with its save area: all that giving it back
/// needs.
#[derive(Clone, Copy)]
pub(crate) struct LocalHeld<const L: usize> {
    /// The thread's save area, which outlives the mapping (promise 1 of
    /// [`LocalPlatform`]).
    pub(crate) mappings: NonNull<LocalMappings<L>>,
    pub(crate) window: Window,
    /// The counters of the slot's CPU.
    #[cfg(feature = "stats")]
    pub(crate) slots: &'static CpuLocalSlots,
}

/// Thread-local temporary mappings that survive preemption and sleep: Linux's
/// `kmap_local_page` for Rust kernels. See the [module documentation](self) for the
/// design, and [`QuickMap`] for the pinned kind.
///
/// `L` local mappings per thread (1 to 32, checked at compile time), at `L` slot
/// addresses per CPU in a region of their own.
///
/// ```
/// # #[cfg(feature = "sim")] {
/// use quickmap::sim::{SimConfig, SimMachine, SimPage};
///
/// let machine = SimMachine::new(SimConfig::default());
/// let local = machine.local_quickmap();
/// let (a, b) = (machine.spawn(0), machine.spawn(0));
/// let (page_a, page_b) = (SimPage::high_memory(&machine, 0), SimPage::high_memory(&machine, 1));
///
/// machine.switch_to_with(a, &local).unwrap();
/// let mapping_a = local.map(&page_a);
/// mapping_a.write(0, b"thread a");
/// // Preempted while mapped: the switch takes a's slot down and...
/// machine.switch_to_with(b, &local).unwrap();
/// let mapping_b = local.map(&page_b);
/// assert_eq!(mapping_b.va(), mapping_a.va(), "the same slot address, another page");
/// mapping_b.write(0, b"thread b");
/// // ...puts it back when a runs again.
/// machine.switch_to_with(a, &local).unwrap();
/// let mut seen = [0u8; 8];
/// mapping_a.read(0, &mut seen);
/// assert_eq!(&seen, b"thread a");
/// // A thread that holds local mappings is not moved to another CPU.
/// assert!(machine.migrate_with(a, 1, &local).is_err());
/// drop(mapping_a);
/// machine.switch_to_with(b, &local).unwrap();
/// drop(mapping_b);
/// # }
/// ```
pub struct LocalQuickMap<P, M, const L: usize> {
    platform: P,
    mmu: M,
    cpus: &'static [CpuLocalSlots],
    slot_base: usize,
    /// The direct map's fast path and the page checks.
    routing: Routing,
}

impl<P: LocalPlatform<L>, M: Mmu, const L: usize> LocalQuickMap<P, M, L> {
    /// Set up local mappings for `cpus.len()` CPUs, with CPU 0's first slot at
    /// `config.window_base` and the rest in the guarded layout of
    /// [`WindowLayout::guarded`]`(config.window_base, L)` (a guard page after each slot,
    /// each CPU's slots padded to a cache line of page-table entries). The region must
    /// not overlap any other instance's, and its page tables must exist with every
    /// entry clear.
    ///
    /// `L` is checked when `new` is compiled: 1 to 32 local mappings per thread (one
    /// word of bits tracks them).
    pub fn new(
        config: Config,
        platform: P,
        mmu: M,
        cpus: &'static [CpuLocalSlots],
    ) -> Result<Self, ConfigError> {
        const {
            assert!(
                L >= 1 && L <= 32,
                "quickmap: a LocalQuickMap has 1 to 32 local slots per thread (one word of bits tracks them)"
            )
        };
        let layout = WindowLayout::guarded(config.window_base, L);
        let routing = Routing::new(&config, layout, cpus.len(), M::PHYS_LIMIT)?;
        Ok(LocalQuickMap {
            platform,
            mmu,
            cpus,
            slot_base: layout.base.0,
            routing,
        })
    }

    /// Map `page` for as long as the returned guard lives, at a local slot of the
    /// calling thread: Linux's `kmap_local_page`. Dropping the guard removes the
    /// mapping (`kunmap_local`), in any order.
    ///
    /// While the thread holds a local mapping it stays on this CPU; it may be preempted
    /// and may sleep, and the address stays valid for it (and only for it: another
    /// thread on the CPU sees its own page there, or a fault). A write-back page in the
    /// direct map comes back at its direct-map address and pins nothing.
    ///
    /// # Panics
    ///
    /// With the rule's name, at the caller's line: `local mapping in an interrupt
    /// handler`; `local mappings beyond capacity` when the thread holds `L` already
    /// ([`try_map`](Self::try_map) returns an error instead); the page rules of
    /// [`QuickMap::enter`]; the context rules of [`ContextPolicy::FreeBsd`].
    #[inline]
    #[track_caller]
    pub fn map<'q, 'p, H: HeldPage + ?Sized>(
        &'q self,
        page: &'p H,
    ) -> LocalMapping<'q, 'p, P, M, L> {
        match self.try_enter_page(page) {
            // SAFETY: as in `try_map`.
            Ok((va, held)) => unsafe { LocalMapping::new(self, va, held) },
            Err(error) => rules::local_mappings_beyond_capacity(error.cpu, error.capacity),
        }
    }

    /// [`map`](Self::map), but a thread that holds all `L` of its local mappings gets
    /// an error, not a panic.
    #[inline]
    #[track_caller]
    pub fn try_map<'q, 'p, H: HeldPage + ?Sized>(
        &'q self,
        page: &'p H,
    ) -> Result<LocalMapping<'q, 'p, P, M, L>, LocalEnterError> {
        let (va, held) = self.try_enter_page(page)?;
        // SAFETY: `va` and `held` were just entered for `page` by this thread, and the
        // guard borrows `page` for `'p`; the guard is their only owner and removes them
        // exactly once.
        Ok(unsafe { LocalMapping::new(self, va, held) })
    }

    /// Map `page` at a local slot of the calling thread and return its address: the
    /// raw form of [`map`](Self::map), for code that cannot hold a guard (a C caller).
    /// Every address returned must be given back to [`remove`](Self::remove) by this
    /// thread before it exits or lets `page`'s hold go.
    ///
    /// # Panics
    ///
    /// As [`map`](Self::map).
    #[inline]
    #[track_caller]
    pub fn enter<H: HeldPage + ?Sized>(&self, page: &H) -> VirtAddr {
        match self.try_enter_page(page) {
            Ok((va, _)) => va,
            Err(error) => rules::local_mappings_beyond_capacity(error.cpu, error.capacity),
        }
    }

    /// [`enter`](Self::enter), but a thread that holds all its local mappings gets an
    /// error, not a panic.
    #[inline]
    #[track_caller]
    pub fn try_enter<H: HeldPage + ?Sized>(&self, page: &H) -> Result<VirtAddr, LocalEnterError> {
        self.try_enter_page(page).map(|(va, _)| va)
    }

    /// The address of `page`, and the slot it took (`None`: the direct map).
    #[inline(always)]
    #[track_caller]
    fn try_enter_page<H: HeldPage + ?Sized>(
        &self,
        page: &H,
    ) -> Result<(VirtAddr, Option<LocalHeld<L>>), LocalEnterError> {
        let (pa, attribute) = (page.phys_addr(), page.memory_attribute());
        if P::CONTEXT_POLICY == ContextPolicy::FreeBsd {
            platform::check_freebsd_context(&self.platform);
        }
        // Refused in an interrupt handler whatever the page, so that the mistake shows
        // on every machine, not only on those whose direct map misses the page.
        let Some(mappings) = self.platform.local_mappings() else {
            rules::local_mapping_in_interrupt_handler()
        };
        if self.routing.takes_direct_map(pa, attribute) {
            // Nothing is pinned: the count may land on another CPU, or be lost to a race.
            #[cfg(feature = "stats")]
            self.this_cpu().1.counters.count_direct_map_hit();
            return Ok((self.routing.direct_va(pa), None));
        }
        let held = self.enter_slot(mappings, pa, attribute)?;
        Ok((held.window.va, Some(held)))
    }

    /// Claim the thread's lowest free slot for `pa`, with preemption disabled for the
    /// few instructions that change the save area and the entry together (see the
    /// module documentation).
    #[inline(always)]
    fn enter_slot(
        &self,
        mappings: &LocalMappings<L>,
        pa: crate::addr::PhysAddr,
        attribute: MemoryAttribute,
    ) -> Result<LocalHeld<L>, LocalEnterError> {
        self.platform.critical_enter();
        let (cpu, slots) = self.this_cpu();
        let held = mappings.held();
        let free = !held & LocalMappings::<L>::ALL;
        if free == 0 {
            return Err(self.cold_local_slots_exhausted());
        }
        let slot = free.trailing_zeros() as usize;
        if held == 0 {
            // The thread's first local mapping: it stays on this CPU until its last is
            // gone, and its slots are this CPU's.
            mappings.cpu.store(cpu, Ordering::Relaxed);
            self.platform.migrate_disable();
        }
        mappings.set_entry(slot, WindowEntry::mapped(pa, attribute));
        mappings.set_held(held | 1 << slot);
        let window = Guarded::<L>::window(self.slot_base, cpu, slot);
        // The slot's entry is clear and its address uncached on this CPU: it was
        // invalidated when it was last cleared (see the module documentation).
        self.mmu.set_window_pte(window, pa, attribute);
        #[cfg(feature = "stats")]
        slots.counters.count_slot_map();
        self.platform.critical_exit();
        #[cfg(not(feature = "stats"))]
        let _ = slots;
        Ok(LocalHeld {
            mappings: NonNull::from(mappings),
            window,
            #[cfg(feature = "stats")]
            slots,
        })
    }

    /// The thread holds all its slots: nothing was claimed. Out of line, and named
    /// `cold_*` for the static check of the kernel's machine code. (It asks for the
    /// CPU itself, rather than take it from the caller: otherwise its code could be
    /// the same as the pinned kind's `cold_windows_exhausted`, which the compiler
    /// would then merge into one symbol, and the static check's report of each kind's
    /// paths would name the other kind's function.)
    #[cold]
    #[inline(never)]
    fn cold_local_slots_exhausted(&self) -> LocalEnterError {
        let cpu = self.platform.current_cpu();
        self.platform.critical_exit();
        LocalEnterError { cpu, capacity: L }
    }

    /// `kunmap_local`: remove the local mapping at `va` that [`enter`](Self::enter)
    /// returned to the calling thread, clearing its slot's entry and invalidating it on
    /// this CPU, so that the address faults from then on. When it was the thread's last
    /// local mapping, the thread may migrate again.
    ///
    /// # Safety
    ///
    /// 1. `va` was returned by `enter` to the calling thread and has not been removed
    ///    since;
    /// 2. nothing uses `va` (or pointers derived from it) after this call.
    ///
    /// With the feature `contract-checks` (on by default), the broken rules quickmap
    /// can see panic with the rule's name: `local remove by another thread` (a slot the
    /// caller does not hold: removed twice, or another thread's), `remove of a foreign
    /// address`.
    ///
    /// # Panics
    ///
    /// With `local mapping in an interrupt handler`, and with `contract-checks` as
    /// above; the panic names the caller's line.
    #[inline]
    #[track_caller]
    pub unsafe fn remove(&self, va: VirtAddr) {
        let offset = va.0.wrapping_sub(self.slot_base);
        let owner = Guarded::<L>::owner(offset);
        if owner >= self.cpus.len() {
            if self.routing.is_direct_address(va) {
                return; // A direct-map address took no slot and pinned nothing.
            }
            #[cfg(feature = "contract-checks")]
            rules::remove_of_foreign_address(
                va,
                "is neither in the local slot region nor in the direct map",
            );
            #[cfg(not(feature = "contract-checks"))]
            return;
        }
        let Some(mappings) = self.platform.local_mappings() else {
            rules::local_mapping_in_interrupt_handler()
        };
        let slot = Guarded::<L>::slot(offset);
        #[cfg(feature = "contract-checks")]
        self.check_remove(va, offset, owner, slot, mappings);
        self.remove_slot(LocalHeld {
            mappings: NonNull::from(mappings),
            window: Window {
                cpu: owner,
                slot,
                va,
                region_page: offset >> PAGE_SHIFT,
            },
            // The slot is the calling CPU's (the caller holds it, and cannot migrate).
            #[cfg(feature = "stats")]
            slots: self.this_cpu().1,
        });
    }

    /// The rules of `remove`'s contract that quickmap can see broken.
    #[cfg(feature = "contract-checks")]
    #[inline]
    #[track_caller]
    fn check_remove(
        &self,
        va: VirtAddr,
        offset: usize,
        owner: usize,
        slot: usize,
        mappings: &LocalMappings<L>,
    ) {
        if !Guarded::<L>::is_slot_start(offset) {
            rules::remove_of_foreign_address(
                va,
                "is inside the local slot region but not the start of a slot",
            );
        }
        // The thread cannot migrate while it holds a slot, so its slots are on the
        // CPU it runs on; a slot of another CPU is not the caller's.
        let cpu = self.platform.current_cpu();
        let held = mappings.held();
        if owner != cpu || held & 1 << slot == 0 {
            rules::local_remove_by_another_thread(va, owner, slot, cpu, held);
        }
    }

    /// Give back `held`, which the calling thread holds: its entry cleared and
    /// invalidated, then its bit freed, with preemption disabled throughout (see the
    /// module documentation).
    #[inline(always)]
    pub(crate) fn remove_slot(&self, slot: LocalHeld<L>) {
        let window = slot.window;
        // SAFETY: the save area outlives the thread's local mappings (promise 1 of
        // `LocalPlatform`), and only the thread itself gives its slots back (the
        // guard is not `Send`; `remove`'s contract), so this is its own, and alive.
        let mappings = unsafe { slot.mappings.as_ref() };
        self.platform.critical_enter();
        mappings.set_entry(window.slot, WindowEntry::CLEAN);
        self.mmu.clear_window_pte(window);
        self.mmu.invalidate_local(window.va);
        let held = mappings.held() & !(1 << window.slot);
        mappings.set_held(held);
        #[cfg(feature = "stats")]
        slot.slots.counters.count_slot_remove();
        if held == 0 {
            self.platform.migrate_enable();
        }
        self.platform.critical_exit();
    }

    /// Linux's `__kmap_local_sched_out`: the kernel's context switch calls it, with
    /// interrupts disabled, for the thread that stops running on this CPU. Each slot the
    /// thread holds is cleared and invalidated here, so that the next thread on the CPU
    /// neither sees it nor reaches its page through a cached translation; the save area
    /// keeps the entries for [`switch_in`](Self::switch_in).
    ///
    /// A load and a branch when the thread holds nothing.
    #[inline]
    pub fn switch_out(&self, mappings: &LocalMappings<L>) {
        let held = mappings.held();
        if held != 0 {
            self.cold_save_local_slots(held);
        }
    }

    /// The slots of a thread that is switched out: cleared and invalidated on this CPU.
    /// Out of line, and named `cold_*` for the static check of the kernel's machine
    /// code: one local invalidation per held slot.
    #[cold]
    #[inline(never)]
    fn cold_save_local_slots(&self, held: u32) {
        let (cpu, _slots) = self.this_cpu();
        let mut rest = held;
        while rest != 0 {
            let slot = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            let window = Guarded::<L>::window(self.slot_base, cpu, slot);
            self.mmu.clear_window_pte(window);
            self.mmu.invalidate_local(window.va);
        }
        #[cfg(feature = "stats")]
        _slots.counters.count_switch_out(held.count_ones());
    }

    /// Linux's `__kmap_local_sched_in`: the kernel's context switch calls it, with
    /// interrupts disabled, for the thread about to run on this CPU, after
    /// [`switch_out`](Self::switch_out) of the one before. Each slot the thread holds
    /// gets its entry back; no invalidation is needed (see the module documentation).
    ///
    /// A load and a branch when the thread holds nothing.
    ///
    /// # Panics
    ///
    /// With `contract-checks`, `local mappings migrated` when the thread's slots are
    /// another CPU's: the kernel moved a thread that holds local mappings.
    #[inline]
    #[track_caller]
    pub fn switch_in(&self, mappings: &LocalMappings<L>) {
        let held = mappings.held();
        if held != 0 {
            self.cold_restore_local_slots(mappings, held);
        }
    }

    /// The slots of a thread that is switched in: their entries written back. Out of
    /// line, and named `cold_*` for the static check: no invalidation.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn cold_restore_local_slots(&self, mappings: &LocalMappings<L>, held: u32) {
        let (cpu, _slots) = self.this_cpu();
        #[cfg(feature = "contract-checks")]
        {
            let owner = mappings.cpu.load(Ordering::Relaxed);
            if owner != cpu {
                rules::local_mappings_migrated(held, owner, cpu);
            }
        }
        let mut rest = held;
        while rest != 0 {
            let slot = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            let entry = mappings.entry(slot);
            let window = Guarded::<L>::window(self.slot_base, cpu, slot);
            self.mmu
                .set_window_pte(window, entry.page(), entry.attribute());
        }
        #[cfg(feature = "stats")]
        _slots.counters.count_switch_in(held.count_ones());
    }

    /// For a kernel's page-fault handler, about a fault it cannot handle: if `va` lies
    /// in a local slot of this instance, panic with the rule that explains it,
    /// `local slot not restored` (the running thread holds the slot: the kernel resumed
    /// it without [`switch_in`](Self::switch_in)) or `local slot not held` (a local
    /// mapping's address used after its guard dropped, or by another thread); return
    /// otherwise (the fault is someone else's to report). A fault on a slot's guard page
    /// is an overrun, which the kernel reports as any other.
    #[track_caller]
    pub fn check_fault(&self, va: VirtAddr) {
        let offset = va.0.wrapping_sub(self.slot_base);
        let owner = Guarded::<L>::owner(offset);
        let slot = Guarded::<L>::slot(offset);
        if owner >= self.cpus.len() || slot >= L || offset & PAGE_SIZE != 0 {
            return; // Not a slot's page: outside the region, a guard page or padding.
        }
        let cpu = self.platform.current_cpu();
        let held = self
            .platform
            .local_mappings()
            .map_or(0, LocalMappings::held);
        if owner == cpu && held & 1 << slot != 0 {
            rules::local_slot_not_restored(va, cpu, slot);
        }
        rules::local_slot_not_held(va, owner, slot, cpu, held);
    }

    /// The current CPU and its counters; valid only while the caller cannot migrate.
    #[inline(always)]
    #[track_caller]
    fn this_cpu(&self) -> (usize, &'static CpuLocalSlots) {
        platform::this_cpu(&self.platform, &self.cpus)
    }

    instance_accessors! {
        slots: "local slots",
        base: slot_base,
        per_cpu: L,
        stats: LocalStats,
    }
}
