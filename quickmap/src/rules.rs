//! The rules of the contract that can be broken at run time, one function each.
//!
//! Every check in quickmap ends here, so a panic message always names the rule and the
//! values, and says what the caller should do instead; a reader can find each rule of
//! `pmap_quick_enter_page(9)` by name. Each function is `#[track_caller]`, as is every
//! function on the way from a public entry point to it, so the panic reports the line
//! that called quickmap, not a line of quickmap. The
//! functions are cold and never inlined: the fast paths carry only a branch to them.
//! The rules of the unsafe contracts (`remove`'s, and `Platform`'s CPU numbering) exist
//! only with the feature `contract-checks`.

#[cfg(feature = "contract-checks")]
use crate::addr::VirtAddr;
use crate::addr::{PhysAddr, PAGE_SIZE};

/// *"calls to pmap_quick_enter_page() must not be nested"*: FreeBSD guarantees one
/// page per thread; quickmap gives each CPU `capacity` windows (shared by the thread and
/// the interrupt handlers that interrupt it), and running out is this panic (an
/// [`EnterError`](crate::EnterError) from `try_enter` and `try_map`), never a silent
/// reuse of a window that is still in use.
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn nesting_beyond_capacity(cpu: usize, capacity: usize) -> ! {
    panic!(
        "quickmap: nesting beyond capacity: CPU {cpu} already holds all {capacity} of its windows; \
         remove a mapping before entering another (or use `try_enter`/`try_map` where running out \
         is expected)"
    )
}

/// *"pmap_quick_remove_page() removes a mapping previously created by
/// pmap_quick_enter_page() at kva"*: removing a window that is not mapped means the
/// mapping was already removed (or never made).
#[cfg(feature = "contract-checks")]
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn double_remove(cpu: usize, slot: usize, va: VirtAddr) -> ! {
    panic!(
        "quickmap: double remove: window {slot} of CPU {cpu} at {va} is not mapped; remove each \
         address `enter` returned exactly once (or use `map`, whose guard removes itself)"
    )
}

/// *"it must disable preemption on the local CPU. The corresponding call to
/// pmap_quick_remove_page() then re-enables preemption"*: a window belongs to the CPU
/// that entered it, so the remove must run there.
#[cfg(feature = "contract-checks")]
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn remove_on_other_cpu(va: VirtAddr, owner: usize, current: usize) -> ! {
    panic!(
        "quickmap: remove on another CPU: window {va} belongs to CPU {owner} but remove runs on CPU {current} \
         (was the caller migrated while holding the mapping, or the address handed to another CPU?); \
         remove a mapping on the CPU, and in the context, that entered it"
    )
}

/// `remove` takes only addresses that `enter` returned.
#[cfg(feature = "contract-checks")]
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn remove_of_foreign_address(va: VirtAddr, why: &'static str) -> ! {
    panic!(
        "quickmap: remove of a foreign address: {va} {why}; pass `remove` only an address `enter` \
         returned, unchanged (or use `map`, whose guard removes itself)"
    )
}

/// *"It is therefore not safe for machine-independent code to sleep or perform locking
/// operations while holding these mappings."*
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn sleep_while_mapped(cpu: usize, held: u32) -> ! {
    panic!(
        "quickmap: sleep while mapped: the thread on CPU {cpu} would block while holding {held} quickmap \
         window(s); remove them first"
    )
}

/// *"accepts a single page m"*: a page starts on a page boundary.
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn unaligned_page(pa: PhysAddr) -> ! {
    panic!(
        "quickmap: unaligned page: physical address {pa} is not a multiple of the page size {PAGE_SIZE:#x}; \
         a `HeldPage` reports the address of its page's first byte"
    )
}

/// A physical address the MMU cannot map.
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn page_out_of_range(pa: PhysAddr, limit: PhysAddr) -> ! {
    panic!(
        "quickmap: page out of range: physical address {pa} is not below the physical limit {limit}; \
         map only pages below `Config::phys_limit`"
    )
}

/// The platform reported a CPU the facility was not built for.
#[cfg(feature = "contract-checks")]
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn unknown_cpu(cpu: usize, cpus: usize) -> ! {
    panic!(
        "quickmap: unknown CPU: the platform says CPU {cpu}, but quickmap was set up for {cpus} CPUs; \
         give `QuickMap::new` one `CpuWindows` for each CPU the platform numbers (from 0)"
    )
}

/// *"It is safe to use these functions under all types of locks except spin mutexes."*
/// Enforced only under [`ContextPolicy::FreeBsd`](crate::ContextPolicy::FreeBsd).
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn under_spin_lock(held: u32) -> ! {
    panic!(
        "quickmap: called under a spin lock ({held} held), which the FreeBSD context policy forbids \
         (\"safe under all types of locks except spin mutexes\"); map before taking the lock or after \
         releasing it"
    )
}

/// *"It is also safe to use them in all thread contexts except primary interrupt
/// context."* Enforced only under [`ContextPolicy::FreeBsd`](crate::ContextPolicy::FreeBsd).
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn in_primary_interrupt() -> ! {
    panic!(
        "quickmap: called in primary interrupt context, which the FreeBSD context policy forbids \
         (\"all thread contexts except primary interrupt context\"); map from the interrupt's thread \
         instead"
    )
}

/// A byte access through a mapping must stay inside the one page mapped.
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn access_outside_page(offset: usize, len: usize) -> ! {
    panic!(
        "quickmap: access outside the page: {len} bytes at offset {offset} run past the {PAGE_SIZE}-byte page; \
         keep offset + length within the page"
    )
}

/// `pmap_copy_page` maps its source and its destination at once, so it takes two
/// windows of the CPU; an instance with fewer per CPU could copy only between pages of
/// the direct map, so it refuses every copy, whatever the pages.
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn copy_page_needs_two_windows(capacity: usize) -> ! {
    panic!(
        "quickmap: copy_page needs two windows: it maps source and destination at once, but this \
         instance has {capacity} window(s) per CPU; build it with at least 2 (4 recommended), or \
         copy through a buffer with `copy_from_pages` and `copy_to_pages`"
    )
}

/// A copy to or from a run of pages must stay inside the run.
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn copy_outside_pages(offset: usize, len: usize, pages: usize) -> ! {
    panic!(
        "quickmap: copy outside the pages: {len} bytes at offset {offset} run past {pages} page(s) \
         ({} bytes); keep offset + length within the run",
        pages * PAGE_SIZE
    )
}

/// A view of `pages` pages takes `⌊pages / 2⌋ + 1` adjacent windows of one CPU (see
/// [`View`](crate::View)), so an instance with `capacity` windows per CPU maps 1 to
/// `2 * capacity - 1` pages in one view; any other size could never be mapped, on
/// any CPU, so it is a bug (not an error to handle).
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn view_size(pages: usize, capacity: usize) -> ! {
    panic!(
        "quickmap: view size: a view of {pages} page(s) cannot be mapped: with {capacity} windows \
         per CPU a view maps 1 to {} pages (one of K pages takes K / 2 + 1 adjacent windows); \
         split the work into views of at most that many pages",
        2 * capacity - 1
    )
}

/// *"calls to pmap_quick_enter_page() must not be nested"*, for views: the calling CPU
/// has no run of `needed` adjacent free windows for a view of `pages` pages (a
/// [`ViewError`](crate::ViewError) from `try_map_pages` and `try_map_range`).
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn no_room_for_view(
    cpu: usize,
    pages: usize,
    needed: usize,
    in_use: u32,
    capacity: usize,
) -> ! {
    panic!(
        "quickmap: no room for the view: a view of {pages} page(s) needs {needed} adjacent free \
         windows, but CPU {cpu} has windows {in_use:#b} of its {capacity} in use; remove mappings \
         of this CPU first, or map fewer pages at once (or use `try_map_pages`/`try_map_range` \
         where running out is expected)"
    )
}

/// A byte access through a view must stay inside the view's pages: the page after the
/// view is its guard page.
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn access_outside_view(offset: usize, len: usize, view_len: usize) -> ! {
    panic!(
        "quickmap: access outside the view: {len} bytes at offset {offset} run past the \
         {view_len}-byte view ({} page(s)); keep offset + length within the view",
        view_len / PAGE_SIZE
    )
}
