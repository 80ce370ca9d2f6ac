//! The facility: `enter` a page, get a kernel address; `remove` it.

use core::fmt;
use core::marker::PhantomData;

use crate::addr::{PhysAddr, VirtAddr, PAGE_SIZE};
use crate::guard::Mapping;
use crate::instance::instance_accessors;
use crate::invalidation::{Invalidation, Strict};
use crate::layout::{ConfigError, DirectMap, Guarded, WindowLayout};
use crate::mmu::{Mmu, Window};
use crate::page::{HeldPage, MemoryAttribute};
use crate::percpu::CpuWindows;
use crate::platform::{self, ContextPolicy, Platform};
use crate::routing::Routing;
use crate::rules;

/// How a kernel sets up quickmap at boot.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Where CPU 0's first window is; the rest follow in the guarded layout of
    /// [`WindowLayout::guarded`] (a guard page after each window, each CPU's windows
    /// padded to a cache line of page-table entries). Aligned to the CPU stride.
    pub window_base: VirtAddr,
    /// The kernel's direct map, if it has one: write-back pages inside it are entered
    /// without a window.
    pub direct_map: Option<DirectMap>,
    /// Physical addresses at or above this cannot be mapped (the MMU's physical address
    /// width, or the end of RAM and device memory).
    pub phys_limit: PhysAddr,
}

/// Why [`QuickMap::try_enter`] or [`QuickMap::try_map`] mapped nothing: every window
/// of the calling CPU is in use, by the calling context or by the contexts it
/// interrupted.
///
/// A condition, not a bug (the bugs, such as an unaligned page, still panic): nothing
/// was mapped, preemption is as it was, and there is nothing to undo. The caller may
/// give back one of its own mappings on this CPU and try again, or put the work off to
/// a context that holds no window (e.g. from an interrupt handler to a thread).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnterError {
    /// The CPU whose windows are all in use.
    pub cpu: usize,
    /// How many windows that CPU has: the instance's `N`.
    pub capacity: usize,
}

impl fmt::Display for EnterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let EnterError { cpu, capacity } = *self;
        write!(
            f,
            "quickmap: no free window: CPU {cpu} already holds all {capacity} of its windows; \
             remove a mapping of this CPU and try again, or put the work off to a context that \
             holds none"
        )
    }
}

impl core::error::Error for EnterError {}

/// A window the calling context holds, with its CPU's state: all that giving it back
/// needs, so a guard drops without decoding an address or finding its CPU again.
#[derive(Clone, Copy)]
pub(crate) struct Held<const N: usize> {
    pub(crate) windows: &'static CpuWindows<N>,
    pub(crate) window: Window,
}

/// Fast, temporary, per-CPU kernel mappings of single physical pages.
///
/// `N` windows per CPU (1 to 32, checked at compile time), claimable and released in
/// any order, by threads and by the interrupt handlers that interrupt them; when all
/// are in use, [`enter`](Self::enter) and [`map`](Self::map) panic, and
/// [`try_enter`](Self::try_enter) and [`try_map`](Self::try_map) return an
/// [`EnterError`]. `I` says when a removed window's
/// translation leaves the TLB: [`Strict`] (the default) at every remove,
/// [`Deferred`](crate::Deferred) at a local full flush once the CPU's clean windows are
/// used up (see [`invalidation`](crate::invalidation)). See the
/// [crate documentation](crate) for the contract and an example.
pub struct QuickMap<P, M, const N: usize, I = Strict> {
    platform: P,
    mmu: M,
    cpus: &'static [CpuWindows<N>],
    window_base: usize,
    /// The direct map's fast path and the page checks.
    routing: Routing,
    _invalidation: PhantomData<I>,
}

pub(crate) const PAGE_SHIFT: u32 = PAGE_SIZE.trailing_zeros();

impl<P: Platform, M: Mmu, const N: usize, I: Invalidation> QuickMap<P, M, N, I> {
    /// Set up quickmap for `cpus.len()` CPUs.
    ///
    /// The window region's page tables must already exist with every entry clear
    /// ([`WindowLayout::region_pages`] entries); quickmap only ever writes the entries of
    /// windows, and of the guard pages between them that a [`View`](crate::View) maps.
    ///
    /// `N` is checked when `new` is compiled: one word of bits tracks a CPU's windows,
    /// so an instance has 1 to 32 windows per CPU:
    ///
    /// ```
    /// # use quickmap::{Config, CpuWindows, MemoryAttribute, Mmu, PhysAddr, Platform, QuickMap};
    /// # use quickmap::{VirtAddr, Window};
    /// # struct OneCpu;
    /// # // SAFETY: one CPU, which nothing preempts.
    /// # unsafe impl Platform for OneCpu {
    /// #     fn current_cpu(&self) -> usize { 0 }
    /// #     fn critical_enter(&self) {}
    /// #     fn critical_exit(&self) {}
    /// # }
    /// # struct Unused;
    /// # // SAFETY: nothing is entered, so nothing here is called.
    /// # unsafe impl Mmu for Unused {
    /// #     fn set_window_pte(&self, _: Window, _: PhysAddr, _: MemoryAttribute) { unreachable!() }
    /// #     fn clear_window_pte(&self, _: Window) { unreachable!() }
    /// #     fn invalidate_local(&self, _: VirtAddr) { unreachable!() }
    /// # }
    /// # let config = Config {
    /// #     window_base: VirtAddr(0xffff_c000_0000_0000),
    /// #     direct_map: None,
    /// #     phys_limit: PhysAddr(1 << 40),
    /// # };
    /// static CPUS: [CpuWindows<32>; 1] = [const { CpuWindows::new() }; 1];
    /// let quickmap = QuickMap::<_, _, 32>::new(config, OneCpu, Unused, &CPUS);
    /// assert!(quickmap.is_ok());
    /// ```
    ///
    /// Any other `N` fails to build, 33 as well as 0:
    ///
    /// ```compile_fail,E0080
    /// # use quickmap::{Config, CpuWindows, MemoryAttribute, Mmu, PhysAddr, Platform, QuickMap};
    /// # use quickmap::{VirtAddr, Window};
    /// # struct OneCpu;
    /// # // SAFETY: one CPU, which nothing preempts.
    /// # unsafe impl Platform for OneCpu {
    /// #     fn current_cpu(&self) -> usize { 0 }
    /// #     fn critical_enter(&self) {}
    /// #     fn critical_exit(&self) {}
    /// # }
    /// # struct Unused;
    /// # // SAFETY: nothing is entered, so nothing here is called.
    /// # unsafe impl Mmu for Unused {
    /// #     fn set_window_pte(&self, _: Window, _: PhysAddr, _: MemoryAttribute) { unreachable!() }
    /// #     fn clear_window_pte(&self, _: Window) { unreachable!() }
    /// #     fn invalidate_local(&self, _: VirtAddr) { unreachable!() }
    /// # }
    /// # let config = Config {
    /// #     window_base: VirtAddr(0xffff_c000_0000_0000),
    /// #     direct_map: None,
    /// #     phys_limit: PhysAddr(1 << 40),
    /// # };
    /// static CPUS: [CpuWindows<33>; 1] = [const { CpuWindows::new() }; 1];
    /// let quickmap = QuickMap::<_, _, 33>::new(config, OneCpu, Unused, &CPUS);
    /// ```
    ///
    /// ```compile_fail,E0080
    /// # use quickmap::{Config, CpuWindows, MemoryAttribute, Mmu, PhysAddr, Platform, QuickMap};
    /// # use quickmap::{VirtAddr, Window};
    /// # struct OneCpu;
    /// # // SAFETY: one CPU, which nothing preempts.
    /// # unsafe impl Platform for OneCpu {
    /// #     fn current_cpu(&self) -> usize { 0 }
    /// #     fn critical_enter(&self) {}
    /// #     fn critical_exit(&self) {}
    /// # }
    /// # struct Unused;
    /// # // SAFETY: nothing is entered, so nothing here is called.
    /// # unsafe impl Mmu for Unused {
    /// #     fn set_window_pte(&self, _: Window, _: PhysAddr, _: MemoryAttribute) { unreachable!() }
    /// #     fn clear_window_pte(&self, _: Window) { unreachable!() }
    /// #     fn invalidate_local(&self, _: VirtAddr) { unreachable!() }
    /// # }
    /// # let config = Config {
    /// #     window_base: VirtAddr(0xffff_c000_0000_0000),
    /// #     direct_map: None,
    /// #     phys_limit: PhysAddr(1 << 40),
    /// # };
    /// static CPUS: [CpuWindows<0>; 1] = [const { CpuWindows::new() }; 1];
    /// let quickmap = QuickMap::<_, _, 0>::new(config, OneCpu, Unused, &CPUS);
    /// ```
    pub fn new(
        config: Config,
        platform: P,
        mmu: M,
        cpus: &'static [CpuWindows<N>],
    ) -> Result<Self, ConfigError> {
        const {
            assert!(
                N >= 1 && N <= 32,
                "quickmap: a QuickMap has 1 to 32 windows per CPU (one word of bits tracks them)"
            )
        };
        let layout = WindowLayout::guarded(config.window_base, N);
        let routing = Routing::new(&config, layout, cpus.len(), M::PHYS_LIMIT)?;
        // Last, so that a configuration refused for any other reason leaves the
        // array free for a corrected one.
        if let Some(cpu) = cpus.iter().position(|windows| !windows.bind()) {
            return Err(ConfigError::WindowsAlreadyInUse { cpu });
        }
        Ok(QuickMap {
            platform,
            mmu,
            cpus,
            window_base: layout.base.0,
            routing,
            _invalidation: PhantomData,
        })
    }

    /// `pmap_quick_enter_page(9)`: map `page` and return its kernel address.
    ///
    /// Never sleeps, takes no lock, and always returns a valid address (or panics with
    /// the rule broken). A write-back page inside the direct map comes back at its
    /// direct-map address and pins nothing; any other page gets one of this CPU's
    /// windows and disables preemption until [`remove`](Self::remove).
    ///
    /// Every address returned must be given back to `remove`, on this CPU and in this
    /// context (thread or interrupt handler), before the context blocks, returns from
    /// the interrupt, or lets `page`'s hold go. Prefer [`map`](Self::map), whose guard
    /// does all that by itself.
    ///
    /// # Panics
    ///
    /// With the rule's name, at the caller's line: when every window of this CPU is in
    /// use (`nesting beyond capacity`; [`try_enter`](Self::try_enter) returns an error
    /// instead), when `page` is not page aligned or not below the physical limit, and
    /// when the [`ContextPolicy`] forbids the calling context.
    #[inline]
    #[track_caller]
    pub fn enter<H: HeldPage + ?Sized>(&self, page: &H) -> VirtAddr {
        match self.try_enter_page(page) {
            Ok((va, _)) => va,
            Err(error) => rules::nesting_beyond_capacity(error.cpu, error.capacity),
        }
    }

    /// [`enter`](Self::enter), but a CPU whose windows are all in use is an error, not a
    /// panic: nothing is mapped, and preemption is left as it was.
    ///
    /// For code that can do without the page for now, or give one of its own mappings
    /// back first (an interrupt handler, say, whose CPU's windows the interrupted thread
    /// may hold). The other rules of `enter` are bugs and still panic.
    #[inline]
    #[track_caller]
    pub fn try_enter<H: HeldPage + ?Sized>(&self, page: &H) -> Result<VirtAddr, EnterError> {
        self.try_enter_page(page).map(|(va, _)| va)
    }

    /// The address of `page`, and the window it took (`None`: the direct map); an error
    /// when this CPU has no window free.
    #[inline(always)]
    #[track_caller]
    fn try_enter_page<H: HeldPage + ?Sized>(
        &self,
        page: &H,
    ) -> Result<(VirtAddr, Option<Held<N>>), EnterError> {
        let (pa, attribute) = (page.phys_addr(), page.memory_attribute());
        if P::CONTEXT_POLICY == ContextPolicy::FreeBsd {
            self.check_freebsd_context();
        }
        if self.routing.takes_direct_map(pa, attribute) {
            // Nothing is pinned here: the count may land on the CPU the thread just
            // left, or be lost to a race (see `stats`).
            #[cfg(feature = "stats")]
            self.this_cpu().1.counters.count_direct_map_hit();
            return Ok((self.routing.direct_va(pa), None));
        }
        let held = self.enter_window(pa, attribute)?;
        Ok((held.window.va, Some(held)))
    }

    /// A window of this CPU for `pa`, preemption disabled until its remove; or, when
    /// every window is in use, an error with preemption as it was.
    #[inline(always)]
    #[track_caller]
    fn enter_window(
        &self,
        pa: PhysAddr,
        attribute: MemoryAttribute,
    ) -> Result<Held<N>, EnterError> {
        // "it must disable preemption on the local CPU": the window is this CPU's.
        self.platform.critical_enter();
        let (cpu, windows) = self.this_cpu();
        let window = if I::DEFERRED {
            self.enter_deferred(cpu, windows, pa, attribute)
        } else {
            self.enter_strict(cpu, windows, pa, attribute)
        };
        match window {
            Some(window) => Ok(Held { windows, window }),
            None => Err(self.cold_windows_exhausted(cpu)),
        }
    }

    /// Every window of `cpu` is in use: nothing was entered, so nothing keeps this CPU
    /// any more. Out of line, so that the paths that inline `enter` stay small, and
    /// named `cold_*`: the static check of the kernel's machine code tells this slow
    /// path apart by that name.
    #[cold]
    #[inline(never)]
    fn cold_windows_exhausted(&self, cpu: usize) -> EnterError {
        self.platform.critical_exit();
        EnterError { cpu, capacity: N }
    }

    /// The window path of `enter` on a strict instance, with preemption disabled:
    /// `None` when every window is in use.
    #[inline(always)]
    fn enter_strict(
        &self,
        cpu: usize,
        windows: &CpuWindows<N>,
        pa: PhysAddr,
        attribute: MemoryAttribute,
    ) -> Option<Window> {
        let slot = windows.claim()?;
        let window = self.window(cpu, slot);
        // The entry was cleared and invalidated at the last remove, so no stale
        // translation can exist: no invalidation on this side of the pair.
        self.mmu.set_window_pte(window, pa, attribute);
        #[cfg(feature = "stats")]
        windows.counters.count_window_map(slot);
        Some(window)
    }

    /// Window `slot` of `cpu`.
    #[inline(always)]
    pub(crate) fn window(&self, cpu: usize, slot: usize) -> Window {
        Guarded::<N>::window(self.window_base, cpu, slot)
    }

    /// `pmap_quick_remove_page(9)`: remove the mapping at `va` that
    /// [`enter`](Self::enter) returned, making its window free for reuse, and enable
    /// preemption again.
    ///
    /// A strict instance clears the window's entry and invalidates it on this CPU before
    /// the window is free again, so the old address faults from then on (FreeBSD i386
    /// leaves the stale translation in the TLB until the next enter; quickmap does not).
    /// A [`Deferred`](crate::Deferred) instance leaves a write-back window's entry for
    /// the next local full flush (see [`invalidation`](crate::invalidation)).
    ///
    /// # Safety
    ///
    /// 1. `va` was returned by `enter` in the calling context (the same thread, or the
    ///    same run of the same interrupt handler) and has not been removed since;
    /// 2. nothing uses `va` (or pointers derived from it) after this call.
    ///
    /// With the feature `contract-checks` (on by default), broken rules that quickmap
    /// can see panic with the rule's name: double remove, remove on another CPU, remove
    /// of an address that is not a window. Without it they are not checked.
    ///
    /// # Panics
    ///
    /// With `contract-checks`, when one of the rules above is broken; the panic names
    /// the caller's line.
    #[inline]
    #[track_caller]
    pub unsafe fn remove(&self, va: VirtAddr) {
        let offset = va.0.wrapping_sub(self.window_base);
        let owner = Guarded::<N>::owner(offset);
        // Compared with the CPU count itself, so indexing `cpus` with it needs no
        // second check.
        if owner >= self.cpus.len() {
            if self.routing.is_direct_address(va) {
                return; // Direct-map entries pinned nothing and changed nothing.
            }
            #[cfg(feature = "contract-checks")]
            rules::remove_of_foreign_address(
                va,
                "is neither in the window region nor in the direct map",
            );
            #[cfg(not(feature = "contract-checks"))]
            return;
        }
        let slot = Guarded::<N>::slot(offset);
        #[cfg(feature = "contract-checks")]
        self.check_remove(va, offset, owner, slot);
        let window = Window {
            cpu: owner,
            slot,
            va,
            region_page: offset >> PAGE_SHIFT,
        };
        self.remove_window(Held {
            windows: &self.cpus[owner],
            window,
        });
    }

    /// The rules of `remove`'s contract that quickmap can see broken.
    #[cfg(feature = "contract-checks")]
    #[inline]
    #[track_caller]
    fn check_remove(&self, va: VirtAddr, offset: usize, owner: usize, slot: usize) {
        if !Guarded::<N>::is_slot_start(offset) {
            rules::remove_of_foreign_address(
                va,
                "is inside the window region but not the start of a window",
            );
        }
        // `owner` is a CPU quickmap serves, so the CPU the platform names is checked
        // by comparing the two: no separate `unknown CPU` check is needed here.
        let cpu = self.platform.current_cpu();
        if owner != cpu {
            rules::remove_on_other_cpu(va, owner, cpu);
        }
        if !self.cpus[owner].is_claimed(slot) {
            rules::double_remove(cpu, slot, va);
        }
        if self.cpus[owner].is_in_view(slot) {
            rules::remove_of_foreign_address(
                va,
                "is a window of a view, which is removed as one when its guard drops",
            );
        }
    }

    /// Give back `held`, which the calling context entered on this CPU.
    #[inline(always)]
    pub(crate) fn remove_window(&self, held: Held<N>) {
        let Held { windows, window } = held;
        if !I::DEFERRED {
            self.invalidate_window(windows, window);
            windows.release(window.slot);
        } else if windows.entry(window.slot).is_mapped_write_back() {
            // Left mapped until the next local full flush.
            windows.release(window.slot);
        } else {
            self.cold_remove_uncached(window.cpu, window.slot);
        }
        self.platform.critical_exit();
    }

    /// Clear `window`'s entry and drop its translation on this CPU.
    #[inline(always)]
    pub(crate) fn invalidate_window(&self, windows: &CpuWindows<N>, window: Window) {
        self.mmu.clear_window_pte(window);
        self.mmu.invalidate_local(window.va);
        #[cfg(feature = "stats")]
        windows.counters.count_invalidation(window.slot);
        #[cfg(not(feature = "stats"))]
        let _ = windows;
    }

    /// Make every free window of this CPU clean now: on a deferred instance, clear the
    /// entries that removed windows left behind and flush the local TLB once, so that no
    /// removed address reaches its page any more (e.g. before a page changes owner, or
    /// on a security boundary). Windows in use stay mapped. On a strict instance every
    /// free window is clean already, and this does nothing.
    #[track_caller]
    pub fn flush_local(&self) {
        if !I::DEFERRED {
            return;
        }
        self.platform.critical_enter();
        let (cpu, windows) = self.this_cpu();
        self.cold_flush_free_windows(cpu, windows);
        self.platform.critical_exit();
    }

    /// The per-CPU window states.
    #[inline]
    pub(crate) fn cpus(&self) -> &'static [CpuWindows<N>] {
        self.cpus
    }

    /// Map `page` for as long as the returned guard lives; dropping it removes the
    /// mapping. The guard borrows `page`, so the page stays held while it is mapped.
    ///
    /// # Panics
    ///
    /// As [`enter`](Self::enter) does; [`try_map`](Self::try_map) returns an error
    /// instead when every window of this CPU is in use.
    #[inline]
    #[track_caller]
    pub fn map<'q, 'p, H: HeldPage + ?Sized>(&'q self, page: &'p H) -> Mapping<'q, 'p, P, M, N, I> {
        match self.try_enter_page(page) {
            // SAFETY: as in `try_map`.
            Ok((va, held)) => unsafe { Mapping::new(self, va, held) },
            Err(error) => rules::nesting_beyond_capacity(error.cpu, error.capacity),
        }
    }

    /// [`map`](Self::map), but a CPU whose windows are all in use is an error, not a
    /// panic (see [`try_enter`](Self::try_enter)).
    #[inline]
    #[track_caller]
    pub fn try_map<'q, 'p, H: HeldPage + ?Sized>(
        &'q self,
        page: &'p H,
    ) -> Result<Mapping<'q, 'p, P, M, N, I>, EnterError> {
        let (va, held) = self.try_enter_page(page)?;
        // SAFETY: `va` and `window` were just entered for `page` in this context, and
        // the guard borrows `page` for `'p`; the guard is their only owner and removes
        // them exactly once.
        Ok(unsafe { Mapping::new(self, va, held) })
    }

    /// The check behind a kernel's `might_sleep()`: panics if the calling thread holds
    /// windows. Kernels call it wherever a thread may block.
    ///
    /// A thread that holds a window cannot be preempted, so windows in use on the CPU
    /// of a thread that is about to sleep are that thread's own.
    #[track_caller]
    pub fn assert_may_sleep(&self) {
        self.platform.critical_enter();
        let (cpu, windows) = self.this_cpu();
        let held = windows.in_use_mask().count_ones();
        self.platform.critical_exit();
        if held != 0 {
            rules::sleep_while_mapped(cpu, held);
        }
    }

    /// Windows in use on `cpu` (a bit mask), e.g. to check at the end of a test that
    /// every window is free.
    pub fn windows_in_use(&self, cpu: usize) -> u32 {
        self.cpus[cpu].in_use_mask()
    }

    instance_accessors! {
        slots: "windows",
        base: window_base,
        per_cpu: N,
        stats: Stats,
    }

    /// The current CPU and its windows; valid only with preemption disabled.
    #[inline(always)]
    #[track_caller]
    pub(crate) fn this_cpu(&self) -> (usize, &'static CpuWindows<N>) {
        platform::this_cpu(&self.platform, &self.cpus)
    }

    /// Refuse `pa` unless it is the first byte of a page below the limit: what every
    /// page that takes a window must be (a view's pages all do).
    #[inline]
    #[track_caller]
    pub(crate) fn check_window_page(&self, pa: PhysAddr) {
        self.routing.check_window_page(pa);
    }

    #[inline(always)]
    #[track_caller]
    pub(crate) fn check_freebsd_context(&self) {
        platform::check_freebsd_context(&self.platform);
    }
}
