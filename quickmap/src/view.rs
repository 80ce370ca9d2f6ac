//! Several held pages side by side: a [`View`] maps `K` pages at consecutive kernel
//! addresses of the current CPU's window region, with an unmapped guard page after
//! them, and removes them as one.
//!
//! COCONUT-SVSM's `PerCPUPageMappingGuard` maps a physical range, or scattered 4 KiB
//! pages, at one contiguous per-CPU range; FreeBSD's `pmap_qenter` maps an array of
//! pages at a range of kernel addresses and shoots the range down on every CPU at
//! `pmap_qremove`. A view is the per-CPU kind: claimed with one load and one store,
//! no lock, no inter-processor interrupt, invalidated on this CPU only.
//!
//! ## Design
//!
//! - **Where the pages go.** Over adjacent windows of this CPU and the guard pages
//!   between them: a view of `K` pages holds `K / 2 + 1` adjacent windows, and the page
//!   after it is one it holds and leaves unmapped. See
//!   [`WindowLayout`](crate::WindowLayout#views-several-pages-side-by-side) for the
//!   layout and why the guard pages stay guards.
//! - **Pinned like a mapping.** Making a view calls
//!   [`Platform::critical_enter`] once and dropping it
//!   [`Platform::critical_exit`]: the thread stays on this CPU meanwhile, and must not
//!   sleep (rule `sleep while mapped` counts a view's windows). Interrupt handlers map
//!   single pages, and views of their own, in the windows the view leaves free.
//! - **Always windows.** A view never uses the direct map, not even for write-back
//!   pages inside it: scattered pages are not side by side there, and the direct map
//!   has no guard page after a run of pages.
//! - **Checked like a page.** Every page passes the checks of
//!   [`QuickMap::enter`](crate::QuickMap::enter) (page alignment, the physical limit,
//!   the [`ContextPolicy`](crate::ContextPolicy)) before anything is claimed, so a
//!   refused view leaves nothing behind; residency is the [`HeldPage`] or
//!   [`HeldRange`] the view borrows; each page gets its own memory attribute.
//! - **Removed as one.** Dropping the view clears every entry it wrote and invalidates
//!   each page on this CPU (one local invalidation per page, `K` in all), then gives
//!   the windows back in one store. Not one local full flush for a large view, for
//!   three reasons: a strict instance's backend need not have a full flush at all
//!   ([`Mmu::invalidate_all_local`] may be left as its panicking default); a view
//!   has at most `2 * N - 1` pages (7 with 4 windows per CPU, 63 at the very most),
//!   while x86 Linux invalidates page by page up to 33 pages
//!   (`tlb_single_page_flush_ceiling`) before it prefers a full flush; and a full
//!   flush also throws away every other translation of the CPU, whose refill the view
//!   would pay for (under QEMU's TCG one CR3 reload cost as much as about 18
//!   `invlpg`s before any refill: see the README's benchmark notes).
//! - **Strict instances only.** `map_pages` and `map_range` exist on a
//!   `QuickMap<_, _, N, Strict>` and not on a [`Deferred`](crate::Deferred) one, a
//!   choice made by the type: a deferred pool's free windows may still map pages,
//!   with translations in the TLB until the pool's next full flush, and the pool keeps
//!   the state of window pages only, not of the guard pages a view maps; making a view
//!   there would need a full flush first, the cost the pool exists to avoid. A kernel
//!   that wants both keeps a strict instance next to its deferred one (as `qmk` does).
//! - **Counted like pages.** With `stats`, each page of a view counts as one window map
//!   and each page removed as one invalidation, against the window that holds it.
//! - **Refused inside.** With `contract-checks`, [`QuickMap::remove`] of an address
//!   inside a view panics (`remove of a foreign address`): a view is removed as one,
//!   by its guard.

use core::fmt;
use core::marker::PhantomData;

use crate::access::byte_accessors;
use crate::addr::{PhysAddr, VirtAddr, PAGE_SIZE};
use crate::guard::Mapping;
use crate::invalidation::Strict;
use crate::layout::WindowLayout;
use crate::mmu::{Mmu, Window};
use crate::page::{HeldPage, HeldRange, MemoryAttribute};
use crate::percpu::CpuWindows;
use crate::platform::{ContextPolicy, Platform};
use crate::quick_map::QuickMap;
use crate::rules;

/// Why [`QuickMap::try_map_pages`] or [`QuickMap::try_map_range`] mapped nothing: the
/// calling CPU has no run of adjacent free windows long enough for the view.
///
/// A condition, not a bug (a view larger than any CPU's windows still panics, with
/// rule `view size`): nothing was mapped, preemption is as it was, and there is
/// nothing to undo. The caller may give back mappings of its own on this CPU and try
/// again, map fewer pages at once, or put the work off to a context that holds none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewError {
    /// The CPU that has no room.
    pub cpu: usize,
    /// Pages the view was to map.
    pub pages: usize,
    /// Adjacent free windows it needs ([`WindowLayout::windows_for_view`]).
    pub windows_needed: usize,
    /// That CPU's windows in use when the view was refused (bit `w`: window `w`).
    pub in_use: u32,
    /// How many windows each CPU has: the instance's `N`.
    pub capacity: usize,
}

impl fmt::Display for ViewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ViewError {
            cpu,
            pages,
            windows_needed,
            in_use,
            capacity,
        } = *self;
        write!(
            f,
            "quickmap: no room for the view: a view of {pages} page(s) needs {windows_needed} \
             adjacent free windows, but CPU {cpu} has windows {in_use:#b} of its {capacity} in \
             use; remove mappings of this CPU and try again, map fewer pages at once, or put the \
             work off to a context that holds none"
        )
    }
}

impl core::error::Error for ViewError {}

/// A live view of several held pages at consecutive kernel addresses, made by
/// [`QuickMap::map_pages`] or [`QuickMap::map_range`]; dropping it removes every page.
///
/// - Page `i` is at `va() + i * PAGE_SIZE`; the page after the last one is an unmapped
///   guard page, so running off the end faults (see
///   [`WindowLayout`](crate::WindowLayout#views-several-pages-side-by-side)).
/// - It borrows the pages, so they stay held while mapped.
/// - It is neither `Send` nor `Sync`, and preemption stays disabled until it drops, as
///   for a [`Mapping`]. Views and mappings may be dropped in any order.
/// - Byte access copies in and out across the whole view, page boundaries included,
///   with the accessors of [`Mapping`]; every access checks that it stays inside the
///   view and panics at the caller's line with `quickmap: access outside the view`
///   if not.
///
/// ```
/// # #[cfg(feature = "sim")] {
/// use quickmap::sim::{SimConfig, SimMachine, SimPage};
/// use quickmap::PAGE_SIZE;
///
/// let machine = SimMachine::new(SimConfig::default());
/// let quickmap = machine.quickmap::<4>();
/// // Two pages far apart in physical memory...
/// let pages = [SimPage::high_memory(&machine, 9), SimPage::high_memory(&machine, 2)];
/// let view = quickmap.map_pages(&pages);
/// assert_eq!(view.len(), 2 * PAGE_SIZE);
/// // ...side by side in the view: one write runs across the boundary between them.
/// view.write(PAGE_SIZE - 2, b"abcd");
/// assert_eq!(view.read_u32(PAGE_SIZE - 2), u32::from_ne_bytes(*b"abcd"));
/// drop(view); // both pages removed, and invalidated, at once
/// let mut head = [0u8; 2];
/// machine.phys_read(pages[1].pa, &mut head);
/// assert_eq!(&head, b"cd");
/// # }
/// ```
#[must_use = "dropping the view removes it at once"]
pub struct View<'q, 'p, P: Platform, M: Mmu, const N: usize> {
    quickmap: &'q QuickMap<P, M, N, Strict>,
    windows: &'static CpuWindows<N>,
    /// The window of the view's first page: its address is the view's.
    first: Window,
    pages: usize,
    _pages: PhantomData<&'p ()>,
    /// A raw pointer is neither `Send` nor `Sync`, and neither is the view.
    _pinned_to_this_cpu: PhantomData<*const ()>,
}

impl<P: Platform, M: Mmu, const N: usize> QuickMap<P, M, N, Strict> {
    /// Map the held pages of `pages`, in order, at consecutive addresses of this CPU
    /// for as long as the returned view lives, with an unmapped guard page after them;
    /// dropping the view removes them all. Each page keeps its own memory attribute.
    ///
    /// A view of `K` pages (`1 ..= 2 * N - 1`) takes `K / 2 + 1` adjacent free windows
    /// of this CPU ([`WindowLayout::windows_for_view`]) and disables preemption until
    /// it drops, like [`map`](Self::map). Only strict instances have views (see the
    /// [`View`] type's design notes).
    ///
    /// ```
    /// # #[cfg(feature = "sim")] {
    /// use quickmap::sim::{SimConfig, SimMachine, SimPage};
    /// use quickmap::{MemoryAttribute, PAGE_SIZE};
    ///
    /// let machine = SimMachine::new(SimConfig::default());
    /// let quickmap = machine.quickmap::<4>();
    /// let uncached = SimPage { attribute: MemoryAttribute::Uncacheable, ..SimPage::high_memory(&machine, 4) };
    /// let pages = [SimPage::high_memory(&machine, 7), uncached, SimPage::new(3)];
    /// let view = quickmap.map_pages(&pages);
    /// assert_eq!(machine.window_pte(view.va().add(PAGE_SIZE)), Some((uncached.pa, MemoryAttribute::Uncacheable)));
    /// // Direct-mapped page 3 takes a window too: it must sit right after the others.
    /// assert_eq!(machine.window_pte(view.va().add(2 * PAGE_SIZE)).map(|(pa, _)| pa), Some(pages[2].pa));
    /// assert_eq!(quickmap.windows_in_use(0), 0b11, "3 pages hold 2 windows");
    /// # }
    /// ```
    ///
    /// A [`Deferred`](crate::Deferred) instance has no views: asking one for a view
    /// does not compile.
    ///
    #[cfg_attr(feature = "sim", doc = "```compile_fail")]
    #[cfg_attr(not(feature = "sim"), doc = "```ignore")]
    /// use quickmap::sim::{SimConfig, SimMachine, SimPage};
    ///
    /// let machine = SimMachine::new(SimConfig::default());
    /// let pool = machine.quickmap_deferred::<32>();
    /// let pages = [SimPage::high_memory(&machine, 0), SimPage::high_memory(&machine, 1)];
    /// let view = pool.map_pages(&pages);
    /// ```
    ///
    /// # Panics
    ///
    /// With rule `view size` for an empty slice or one longer than `2 * N - 1`; with
    /// the rules of [`enter`](Self::enter) for a page that is unaligned or out of range
    /// or a context the [`ContextPolicy`] forbids; with rule `no room for the view`
    /// when this CPU has no `K / 2 + 1` adjacent free windows
    /// ([`try_map_pages`](Self::try_map_pages) returns an error instead). The panic
    /// names the caller's line.
    #[track_caller]
    pub fn map_pages<'q, 'p, H: HeldPage>(&'q self, pages: &'p [H]) -> View<'q, 'p, P, M, N> {
        match self.try_map_pages(pages) {
            Ok(view) => view,
            Err(error) => refuse_view(error),
        }
    }

    /// [`map_pages`](Self::map_pages), but a CPU without enough adjacent free windows
    /// is an error, not a panic.
    ///
    /// ```
    /// # #[cfg(feature = "sim")] {
    /// use quickmap::sim::{SimConfig, SimMachine, SimPage};
    /// use quickmap::ViewError;
    ///
    /// let machine = SimMachine::new(SimConfig::default());
    /// let quickmap = machine.quickmap::<4>();
    /// let pages: Vec<_> = (0..6).map(|i| SimPage::high_memory(&machine, i)).collect();
    /// let single = quickmap.map(&pages[0]); // takes window 0
    /// // 6 pages need all 4 windows: window 0 is in use.
    /// let error = quickmap.try_map_pages(&pages).unwrap_err();
    /// assert_eq!(error, ViewError { cpu: 0, pages: 6, windows_needed: 4, in_use: 0b1, capacity: 4 });
    /// // 5 pages fit in windows 1 to 3.
    /// let view = quickmap.try_map_pages(&pages[1..]).unwrap();
    /// assert_eq!(quickmap.windows_in_use(0), 0b1111);
    /// # drop((single, view));
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// As [`map_pages`](Self::map_pages), except when there is no room.
    #[track_caller]
    pub fn try_map_pages<'q, 'p, H: HeldPage>(
        &'q self,
        pages: &'p [H],
    ) -> Result<View<'q, 'p, P, M, N>, ViewError> {
        let frame = |index: usize| {
            let page = &pages[index];
            (page.phys_addr(), page.memory_attribute())
        };
        // SAFETY: the frames are the pages of `pages`, which the view borrows for `'p`.
        unsafe { self.try_enter_view(pages.len(), frame) }
    }

    /// Map the physically contiguous run `range` at consecutive addresses of this CPU,
    /// as [`map_pages`](Self::map_pages) maps scattered pages: the same windows, guard
    /// page, pinning and removal, with the run's one memory attribute for every page.
    ///
    /// ```
    /// # #[cfg(feature = "sim")] {
    /// use quickmap::sim::{SimConfig, SimMachine};
    /// use quickmap::{HeldRange, PhysAddr, PAGE_SIZE};
    ///
    /// /// Pages 20 to 22 of the simulated machine, which never frees its memory.
    /// struct Run;
    /// // SAFETY: simulated memory is never reused; the run is page-aligned.
    /// unsafe impl HeldRange for Run {
    ///     fn phys_addr(&self) -> PhysAddr { PhysAddr(20 * PAGE_SIZE as u64) }
    ///     fn pages(&self) -> usize { 3 }
    /// }
    ///
    /// let machine = SimMachine::new(SimConfig::default());
    /// let quickmap = machine.quickmap::<4>();
    /// let view = quickmap.map_range(&Run);
    /// view.fill(0, view.len(), 0x5a);
    /// drop(view);
    /// let mut last = [0u8; 1];
    /// machine.phys_read(PhysAddr(23 * PAGE_SIZE as u64 - 1), &mut last);
    /// assert_eq!(last, [0x5a]);
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// As [`map_pages`](Self::map_pages); [`try_map_range`](Self::try_map_range)
    /// returns an error instead when there is no room.
    #[track_caller]
    pub fn map_range<'q, 'p, R: HeldRange + ?Sized>(
        &'q self,
        range: &'p R,
    ) -> View<'q, 'p, P, M, N> {
        match self.try_map_range(range) {
            Ok(view) => view,
            Err(error) => refuse_view(error),
        }
    }

    /// [`map_range`](Self::map_range), but a CPU without enough adjacent free windows
    /// is an error, not a panic (see [`try_map_pages`](Self::try_map_pages)).
    ///
    /// # Panics
    ///
    /// As [`map_range`](Self::map_range), except when there is no room.
    #[track_caller]
    pub fn try_map_range<'q, 'p, R: HeldRange + ?Sized>(
        &'q self,
        range: &'p R,
    ) -> Result<View<'q, 'p, P, M, N>, ViewError> {
        let (start, attribute) = (range.phys_addr(), range.memory_attribute());
        // A run that wraps around the top of the physical address space reaches the
        // last page there, which no limit admits.
        let frame = |index: usize| {
            let offset = (index * PAGE_SIZE) as u64;
            let pa = start
                .0
                .checked_add(offset)
                .unwrap_or(!(PAGE_SIZE as u64 - 1));
            (PhysAddr(pa), attribute)
        };
        // SAFETY: the frames are the run's pages, which the view borrows for `'p`.
        unsafe { self.try_enter_view(range.pages(), frame) }
    }

    /// Check the `pages` frames that `frame` names, then claim adjacent windows of
    /// this CPU and map them there, preemption disabled until the view drops; or, when
    /// there is no room, an error with preemption as it was.
    ///
    /// # Safety
    ///
    /// `frame(i)` for `i < pages` is the address and attribute of a page that stays
    /// held for `'p`, the same at every call.
    #[track_caller]
    unsafe fn try_enter_view<'q, 'p>(
        &'q self,
        pages: usize,
        frame: impl Fn(usize) -> (PhysAddr, MemoryAttribute),
    ) -> Result<View<'q, 'p, P, M, N>, ViewError> {
        let needed = WindowLayout::windows_for_view(pages);
        if pages == 0 || needed > N {
            rules::view_size(pages, N);
        }
        if P::CONTEXT_POLICY == ContextPolicy::FreeBsd {
            self.check_freebsd_context();
        }
        // Every page before anything is claimed: a refused page leaves nothing behind.
        for index in 0..pages {
            self.check_window_page(frame(index).0);
        }
        // "it must disable preemption on the local CPU": the windows are this CPU's.
        self.platform().critical_enter();
        let (cpu, windows) = self.this_cpu();
        let Some(slot) = windows.claim_run(needed) else {
            let in_use = windows.in_use_mask();
            self.platform().critical_exit();
            return Err(ViewError {
                cpu,
                pages,
                windows_needed: needed,
                in_use,
                capacity: N,
            });
        };
        let view = View {
            quickmap: self,
            windows,
            first: self.window(cpu, slot),
            pages,
            _pages: PhantomData,
            _pinned_to_this_cpu: PhantomData,
        };
        // The windows, and the guard pages between them, were cleared and invalidated
        // when they were last given back (a guard page is only ever mapped by a view),
        // so no stale translation can exist: no invalidation on this side either.
        for index in 0..pages {
            let (pa, attribute) = frame(index);
            let window = view.page_window(index);
            self.mmu().set_window_pte(window, pa, attribute);
            #[cfg(feature = "stats")]
            windows.counters.count_window_map(window.slot);
        }
        #[cfg(feature = "contract-checks")]
        windows.set_view(slot, needed, true);
        Ok(view)
    }
}

/// The panic of `map_pages` and `map_range` when there is no room.
#[cold]
#[inline(never)]
#[track_caller]
fn refuse_view(error: ViewError) -> ! {
    rules::no_room_for_view(
        error.cpu,
        error.pages,
        error.windows_needed,
        error.in_use,
        error.capacity,
    )
}

impl<P: Platform, M: Mmu, const N: usize> View<'_, '_, P, M, N> {
    /// The kernel virtual address of the view's first page; page `i` is at
    /// `va() + i * PAGE_SIZE`, and `va() + len()` is the guard page.
    pub fn va(&self) -> VirtAddr {
        self.first.va
    }

    /// A raw pointer to the view's first byte, valid for [`len`](Self::len) bytes until
    /// the view drops. Dereferencing it is the caller's business, as for
    /// [`Mapping::as_mut_ptr`]: the frames may be mapped elsewhere at the same time.
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.first.va.as_mut_ptr()
    }

    /// Bytes mapped: `pages() * PAGE_SIZE`.
    pub fn len(&self) -> usize {
        self.pages * PAGE_SIZE
    }

    /// Always `false`: a view maps at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Pages mapped.
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// Copy all of the page `source` maps into the view at `offset`, across a page
    /// boundary of the view if `offset` is not a multiple of the page size.
    ///
    /// ```
    /// # #[cfg(feature = "sim")] {
    /// use quickmap::sim::{SimConfig, SimMachine, SimPage};
    /// use quickmap::PAGE_SIZE;
    ///
    /// let machine = SimMachine::new(SimConfig::default());
    /// let quickmap = machine.quickmap::<4>();
    /// let pages = [SimPage::high_memory(&machine, 0), SimPage::high_memory(&machine, 1)];
    /// let (source, target) = (SimPage::high_memory(&machine, 2), SimPage::high_memory(&machine, 3));
    /// let view = quickmap.map_pages(&pages);
    /// let page = quickmap.map(&source);
    /// page.fill(0, PAGE_SIZE, 0xee);
    /// view.copy_from(PAGE_SIZE / 2, &page); // the second half of page 0, the first of page 1
    /// assert_eq!(view.read_u16(PAGE_SIZE - 1), 0xeeee);
    /// // One page's worth from the byte before the copy: a zero, then 4095 bytes of 0xee.
    /// view.copy_to(PAGE_SIZE / 2 - 1, &quickmap.map(&target));
    /// let copied = quickmap.map(&target);
    /// assert_eq!(copied.compare(0, &[0]), Ok(()));
    /// assert_eq!(copied.compare(1, &[0xee; PAGE_SIZE - 1]), Ok(()));
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// With `quickmap: access outside the view` unless `offset + PAGE_SIZE <= self.len()`.
    #[track_caller]
    pub fn copy_from(&self, offset: usize, source: &Mapping<'_, '_, P, M, N>) {
        let va = self.checked_range(offset, PAGE_SIZE);
        // SAFETY: the range lies in the view and the page is mapped while its guard
        // lives; a view and a mapping never share a window (nor does a window overlap
        // the direct map).
        unsafe { self.span_mmu().copy_bytes(va, source.va(), PAGE_SIZE) }
    }

    /// Copy one page's worth of the view, from `offset`, into the page `destination`
    /// maps (see [`copy_from`](Self::copy_from), which has an example).
    ///
    /// # Panics
    ///
    /// With `quickmap: access outside the view` unless `offset + PAGE_SIZE <= self.len()`.
    #[track_caller]
    pub fn copy_to(&self, offset: usize, destination: &Mapping<'_, '_, P, M, N>) {
        let va = self.checked_range(offset, PAGE_SIZE);
        // SAFETY: as in `copy_from`.
        unsafe { self.span_mmu().copy_bytes(destination.va(), va, PAGE_SIZE) }
    }

    byte_accessors! {
        span: "view",
        bound: "self.len()",
        rule: "access outside the view",
        setup: "use quickmap::sim::{SimConfig, SimMachine, SimPage};
use quickmap::PAGE_SIZE;

let machine = SimMachine::new(SimConfig::default());
let quickmap = machine.quickmap::<4>();
let pages = [SimPage::high_memory(&machine, 5), SimPage::high_memory(&machine, 0)];
let view = quickmap.map_pages(&pages);",
        guard: "view",
        end: "view.len()",
        odd: "PAGE_SIZE - 1",
    }

    /// Where the accessors' bytes start.
    #[inline(always)]
    fn span_va(&self) -> VirtAddr {
        self.first.va
    }

    #[inline(always)]
    fn span_len(&self) -> usize {
        self.len()
    }

    #[inline(always)]
    #[track_caller]
    fn refuse_access(&self, offset: usize, len: usize) -> ! {
        rules::access_outside_view(offset, len, self.len())
    }

    /// The window-region page that holds page `index` of the view: the page of window
    /// `first + index / 2` for an even `index`, that window's guard page for an odd one.
    #[inline]
    fn page_window(&self, index: usize) -> Window {
        Window {
            cpu: self.first.cpu,
            slot: self.first.slot + index / 2,
            va: self.first.va.add(index * PAGE_SIZE),
            region_page: self.first.region_page + index,
        }
    }
}

impl<P: Platform, M: Mmu, const N: usize> Drop for View<'_, '_, P, M, N> {
    fn drop(&mut self) {
        // The view owns its windows and this is their only removal; it is not `Send`,
        // so this runs in the context, and on the CPU, that made it.
        let run = WindowLayout::windows_for_view(self.pages);
        #[cfg(feature = "contract-checks")]
        self.windows.set_view(self.first.slot, run, false);
        // Each page the view mapped: its entry cleared, its translation dropped on this
        // CPU. The window the view holds past an even number of pages was never
        // mapped (it is the guard page) and needs nothing.
        for index in 0..self.pages {
            self.quickmap
                .invalidate_window(self.windows, self.page_window(index));
        }
        self.windows.release_run(self.first.slot, run);
        self.quickmap.platform().critical_exit();
    }
}

impl<P: Platform, M: Mmu, const N: usize> fmt::Debug for View<'_, '_, P, M, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("View")
            .field("va", &self.first.va)
            .field("pages", &self.pages)
            .finish()
    }
}
