//! The window pool of a [`Deferred`](crate::Deferred) instance: reuse a window that
//! still maps the page, else take a clean one, else flush the local TLB once and make
//! every free window clean.
//!
//! The rule it keeps: **a window is entered for a new page only when it is clean**, its
//! entry clear and no translation of it left in this CPU's TLB (it was never used,
//! or it was invalidated on its own at remove, or a full flush ran after its entry was
//! cleared). A window whose entry still maps page `p` with attribute `a` may be entered
//! again for `p` with `a` and nothing else: any translation the TLB holds for it is
//! exactly the one its entry gives. See `percpu.rs` for why plain loads and stores keep
//! this rule when interrupt handlers use the pool in the middle of a thread's pair.

use crate::addr::PhysAddr;
use crate::invalidation::Invalidation;
use crate::mmu::{Mmu, Window};
use crate::page::MemoryAttribute;
use crate::percpu::{hint_bucket, CpuWindows, WindowEntry};
use crate::platform::Platform;
use crate::quick_map::QuickMap;

/// What [`QuickMap::enter_deferred_clean`] returns when every window is in use: no
/// window's index.
const ALL_IN_USE: usize = usize::MAX;

impl<P: Platform, M: Mmu, const N: usize, I: Invalidation> QuickMap<P, M, N, I> {
    /// The window path of `enter` on a deferred instance, with preemption disabled:
    /// `None` when every window is in use (windows that are free but dirty are not in
    /// use: they are cleaned by a flush).
    ///
    /// The reuse of a window that still maps the page is inlined; taking a clean window
    /// (a page-table write, sometimes a flush) is a call, which keeps the reuse path
    /// free of the registers the search needs.
    #[inline(always)]
    pub(crate) fn enter_deferred(
        &self,
        cpu: usize,
        windows: &CpuWindows<N>,
        pa: PhysAddr,
        attribute: MemoryAttribute,
    ) -> Option<Window> {
        let wanted = WindowEntry::mapped(pa, attribute);
        let bucket = hint_bucket(pa);
        // The window that last mapped a page of this bucket may still map this page.
        // Its entry is peeked before the claim (a hint) and decided after (exact).
        let hinted = Self::slot_of_hint(windows.hint(bucket));
        if windows.entry(hinted) == wanted && windows.claim_slot(hinted) {
            if windows.entry(hinted) == wanted {
                #[cfg(feature = "stats")]
                windows.counters.count_window_reuse(hinted);
                return Some(self.window(cpu, hinted));
            }
            // An interrupt re-used or flushed it between the peek and the claim.
            windows.release(hinted);
        }
        let slot = self.enter_deferred_clean(cpu, windows, pa, attribute, bucket);
        if slot == ALL_IN_USE {
            return None;
        }
        Some(self.window(cpu, slot))
    }

    /// A hint is always a window's index; the remainder says so to the compiler (one
    /// `and` for a power-of-two `N`) instead of a bounds check.
    #[inline(always)]
    fn slot_of_hint(hint: usize) -> usize {
        hint % N
    }

    /// Take a clean window for `pa` and return its slot, flushing first when none is
    /// left; [`ALL_IN_USE`] only when every window is in use (a sentinel rather than an
    /// `Option`: one register back, and nothing more to set on the way).
    #[inline(never)]
    fn enter_deferred_clean(
        &self,
        cpu: usize,
        windows: &CpuWindows<N>,
        pa: PhysAddr,
        attribute: MemoryAttribute,
        bucket: usize,
    ) -> usize {
        loop {
            let candidates = windows.maybe_clean() & windows.free_mask();
            if candidates == 0 {
                if windows.free_mask() == 0 {
                    return ALL_IN_USE;
                }
                self.cold_flush_free_windows(cpu, windows);
                continue;
            }
            let slot = candidates.trailing_zeros() as usize;
            if !windows.claim_slot(slot) {
                continue; // Only if an interrupt took it since the mask was read.
            }
            if windows.entry(slot).is_clean(windows.flush_epoch()) {
                self.mmu()
                    .set_window_pte(self.window(cpu, slot), pa, attribute);
                windows.set_entry(slot, WindowEntry::mapped(pa, attribute));
                windows.set_maybe_clean(windows.maybe_clean() & !(1 << slot));
                windows.set_hint(bucket, slot);
                #[cfg(feature = "stats")]
                windows.counters.count_window_map(slot);
                return slot;
            }
            // The hint was stale: an interrupt used the window since it was marked.
            windows.release(slot);
            windows.set_maybe_clean(windows.maybe_clean() & !(1 << slot));
        }
    }

    /// The remove of a window that maps anything but write-back memory: invalidated at
    /// once, always, so that a frame never keeps a stale uncached or write-combining
    /// alias; the window is then clean in every epoch.
    ///
    /// Out of line and named `cold_*`: deferred instances serve RAM, and the static
    /// check of the kernel's machine code tells this `invlpg` apart by that name.
    #[cold]
    #[inline(never)]
    pub(crate) fn cold_remove_uncached(&self, cpu: usize, slot: usize) {
        let windows = &self.cpus()[cpu];
        let window = self.window(cpu, slot);
        self.invalidate_window(windows, window);
        windows.set_entry(window.slot, WindowEntry::CLEAN);
        windows.set_maybe_clean(windows.maybe_clean() | 1 << window.slot);
        windows.release(window.slot);
    }

    /// Every window is in use or dirty: clear the entries of the free ones, then flush
    /// this CPU's TLB once, which makes every free window clean.
    ///
    /// Each window is claimed while its entry is cleared, one at a time, so an
    /// interrupt that arrives meanwhile still finds the others free (and may flush on
    /// its own: both flushes come after every clear they vouch for).
    ///
    /// Out of line and named `cold_*`: it runs once per `N` pairs at most, and the
    /// static check of the kernel's machine code tells its cost apart by that name.
    #[cold]
    #[inline(never)]
    pub(crate) fn cold_flush_free_windows(&self, cpu: usize, windows: &CpuWindows<N>) {
        let mut cleaned = 0;
        for slot in 0..N {
            if !windows.claim_slot(slot) {
                continue; // In use: its entry stays, and is cleared at a later flush.
            }
            if windows.entry(slot).is_mapped() {
                self.mmu().clear_window_pte(self.window(cpu, slot));
                // The epoch is read after the entry is clear (see `WindowEntry`).
                core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
                windows.set_entry(slot, WindowEntry::cleared_in(windows.flush_epoch()));
            }
            windows.release(slot);
            cleaned |= 1 << slot;
        }
        self.mmu().invalidate_all_local();
        windows.advance_flush_epoch();
        windows.set_maybe_clean(cleaned);
        #[cfg(feature = "stats")]
        windows.counters.count_full_flush();
    }
}
