//! One CPU's windows: which are in use, and (for a deferred instance) what each free
//! window still maps; claimed and released without locks.
//!
//! ## Why plain loads and stores are enough
//!
//! Only this CPU touches its `CpuWindows`, from thread context (with preemption
//! disabled) or from interrupt handlers, and interrupt contexts on one CPU nest
//! strictly (the third promise of [`Platform`](crate::Platform)): a handler that
//! arrives between two instructions of the code it interrupts runs to completion first.
//! So no word here needs an atomic read-modify-write (no `lock` prefix is emitted);
//! what each word needs instead is an argument:
//!
//! - `free` is exact. A context claims a window with a load and a store; every
//!   context that runs between the two gives back each window it claimed before it
//!   returns, so its net effect on the word is nil and the store is still right.
//! - A window's `entry` (what its page-table entry holds) is written only by the context
//!   that has the window claimed, and read by a claimer only *after* its claim is
//!   stored: whatever an interrupt did to the window before the claim landed is then
//!   visible, and nothing can change it after.
//! - `flush_epoch`, `maybe_clean` and `hints` are only hints or conservative: a store
//!   that overwrites an interrupt's update costs at most a wasted probe or an extra
//!   flush, never a stale translation (see [`WindowEntry`] for the epoch's argument).
//!
//! The atomic types only keep the compiler from caching, tearing or eliding accesses.

use core::sync::atomic::{compiler_fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::addr::{PhysAddr, PAGE_SIZE};
use crate::page::MemoryAttribute;
#[cfg(feature = "stats")]
use crate::stats::CpuCounters;

/// Buckets of the "which window last mapped this frame" hint table: one byte each,
/// one cache line in all.
const HINT_BUCKETS: usize = 64;

/// The state of one CPU's `N` windows. Build an array of these, one per CPU, with
/// [`CpuWindows::new`], and give it to [`QuickMap::new`](crate::QuickMap::new).
///
/// Each CPU's state starts on its own cache line, so CPUs never write a shared line.
///
/// One array per instance, for the life of the program: [`QuickMap::new`] takes each
/// CPU's state for good and refuses one that another instance took
/// ([`ConfigError::WindowsAlreadyInUse`](crate::ConfigError::WindowsAlreadyInUse)).
///
/// [`QuickMap::new`]: crate::QuickMap::new
///
/// ```
/// use quickmap::CpuWindows;
/// static WINDOWS: [CpuWindows<4>; 16] = [const { CpuWindows::new() }; 16];
/// ```
#[repr(C, align(64))]
pub struct CpuWindows<const N: usize> {
    /// Bit `w` is set while window `w` is free, clear while it is claimed (mapped for a
    /// caller). Free bits rather than used ones: the claim searches them as they are.
    free: AtomicU32,
    /// Deferred instances: windows probably clean (entry clear and not cached by this
    /// CPU's TLB). A hint; `entries` decide.
    maybe_clean: AtomicU32,
    /// Deferred instances: one more than the number of local full flushes (so that a
    /// never-used window, [`WindowEntry::CLEAN`], is clean from the start).
    flush_epoch: AtomicU64,
    /// Deferred instances: what each window's page-table entry holds.
    entries: [AtomicU64; N],
    /// Deferred instances: the window that last mapped a frame, by a hash of the frame.
    hints: [AtomicU8; HINT_BUCKETS],
    /// Bit `w` is set while window `w` is held by a [`View`](crate::View), so that
    /// `remove` can refuse an address inside a view (feature `contract-checks`).
    #[cfg(feature = "contract-checks")]
    views: AtomicU32,
    #[cfg(feature = "stats")]
    pub(crate) counters: CpuCounters<N>,
    /// Set once, by the [`QuickMap::new`](crate::QuickMap::new) that takes this CPU's
    /// state, and never cleared (see [`bind`](Self::bind)).
    bound: AtomicBool,
}

/// What a window's page-table entry holds, as its claimer sees it.
///
/// - Bit 0 set: the entry is present and maps the page at bits 12.. with the memory
///   attribute whose index is in bits 1..4. The window may be entered again for exactly
///   that page and attribute with no page-table write and no invalidation.
/// - Bit 0 clear: the entry was cleared while the CPU's flush epoch was `value >> 1`.
///   The window is clean (no translation of it in this CPU's TLB) once the epoch has
///   passed that value: a full flush has run on this CPU since the entry was cleared.
///
/// Why an epoch that may lose an increment is still safe: every context that clears
/// entries flushes the TLB afterwards before it returns, and reads the epoch only after
/// the entry is clear. An epoch above the recorded one was stored after some flush that
/// followed the clear, or by a context that the clearing one interrupted, which resumes
/// only after the clearing context has flushed. A lost increment only makes windows
/// look dirty longer (an extra flush), never clean too early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WindowEntry(u64);

impl WindowEntry {
    /// Never mapped, or invalidated on its own at remove: clean in every epoch.
    pub(crate) const CLEAN: WindowEntry = WindowEntry(0);

    /// The entry maps `pa` with `attribute`.
    #[inline]
    pub(crate) fn mapped(pa: PhysAddr, attribute: MemoryAttribute) -> WindowEntry {
        WindowEntry(pa.0 | (attribute as u64) << 1 | 1)
    }

    /// The entry was cleared in `epoch`.
    #[inline]
    pub(crate) fn cleared_in(epoch: u64) -> WindowEntry {
        WindowEntry(epoch << 1)
    }

    /// The page a present entry maps.
    #[inline]
    pub(crate) fn page(self) -> PhysAddr {
        PhysAddr(self.0 & !(PAGE_SIZE as u64 - 1))
    }

    /// The memory attribute a present entry maps its page with.
    #[inline]
    pub(crate) fn attribute(self) -> MemoryAttribute {
        MemoryAttribute::ALL[(self.0 >> 1 & 0b111) as usize]
    }

    /// The entry as one word (a save area keeps it so).
    #[inline]
    pub(crate) fn bits(self) -> u64 {
        self.0
    }

    /// An entry kept as one word by [`bits`](Self::bits).
    #[inline]
    pub(crate) fn from_bits(bits: u64) -> WindowEntry {
        WindowEntry(bits)
    }

    /// Whether the entry is present.
    #[inline]
    pub(crate) fn is_mapped(self) -> bool {
        self.0 & 1 != 0
    }

    /// Whether the entry maps a write-back page (which a deferred remove leaves in place).
    #[inline]
    pub(crate) fn is_mapped_write_back(self) -> bool {
        self.0 & 0b1111 == WindowEntry::mapped(PhysAddr(0), MemoryAttribute::WriteBack).0
    }

    /// Whether the entry is clear and no translation of it can be cached any more.
    #[inline]
    pub(crate) fn is_clean(self, epoch: u64) -> bool {
        !self.is_mapped() && self.0 >> 1 < epoch
    }
}

/// The bits of the `count` windows from `first` (`count` from 1 to 32, the run inside
/// the 32 bits).
#[inline]
fn run_mask(first: usize, count: usize) -> u32 {
    (u32::MAX >> (32 - count)) << first
}

/// The hint bucket of the page at `pa` (Fibonacci hashing of the frame number, so
/// that runs of frames and strided frames spread over the buckets).
#[inline]
pub(crate) fn hint_bucket(pa: PhysAddr) -> usize {
    let frame = pa.0 / PAGE_SIZE as u64;
    (frame.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - HINT_BUCKETS.trailing_zeros())) as usize
}

impl<const N: usize> CpuWindows<N> {
    /// All windows free and clean.
    pub const fn new() -> Self {
        CpuWindows {
            free: AtomicU32::new(Self::ALL),
            maybe_clean: AtomicU32::new(u32::MAX),
            flush_epoch: AtomicU64::new(1),
            entries: [const { AtomicU64::new(0) }; N],
            hints: [const { AtomicU8::new(0) }; HINT_BUCKETS],
            #[cfg(feature = "contract-checks")]
            views: AtomicU32::new(0),
            #[cfg(feature = "stats")]
            counters: CpuCounters::new(),
            bound: AtomicBool::new(false),
        }
    }

    /// Claim this state for one instance, for the rest of the program: `false` if an
    /// instance has it already.
    ///
    /// Two instances over one state would be unsound from safe code, not merely
    /// wasteful: a deferred instance's per-window entries say what *its* region's
    /// entries map, and another instance with another region would trust them (a
    /// window taken back for a page its own entry does not map). Never released, not
    /// even when the instance is dropped, for the same reason: the entries outlive it.
    pub(crate) fn bind(&self) -> bool {
        !self.bound.swap(true, Ordering::AcqRel)
    }

    /// One bit per window.
    const ALL: u32 = match 1u32.checked_shl(N as u32) {
        Some(bit) => bit - 1,
        None => u32::MAX,
    };

    /// Claim the lowest free window. `None` when all `N` are in use.
    ///
    /// Callable only on this CPU with preemption disabled (as are all the methods
    /// below but [`in_use_mask`](Self::in_use_mask)).
    #[inline(always)]
    pub(crate) fn claim(&self) -> Option<usize> {
        let free = self.free.load(Ordering::Relaxed);
        if free == 0 {
            return None;
        }
        // `free` has no bit at or above `N`, so the lowest set bit is a window; and
        // `free & (free - 1)` clears exactly that bit.
        let slot = free.trailing_zeros() as usize;
        self.store_claimed(free & (free - 1));
        Some(slot)
    }

    /// Claim window `slot` if it is free.
    #[inline]
    pub(crate) fn claim_slot(&self, slot: usize) -> bool {
        let free = self.free.load(Ordering::Relaxed);
        if free & 1 << slot == 0 {
            return false;
        }
        self.store_claimed(free & !(1 << slot));
        true
    }

    /// Claim the lowest run of `count` adjacent free windows (`1 ..= N` of them) and
    /// return the first one's index; `None` when there is no such run. One load and one
    /// store, like [`claim`](Self::claim), so the same argument keeps it exact (see the
    /// module documentation).
    #[inline]
    pub(crate) fn claim_run(&self, count: usize) -> Option<usize> {
        let free = self.free.load(Ordering::Relaxed);
        // Bit `w` of `starts` survives while windows `w .. w + shift + 1` are all free;
        // `free` has no bit at or above `N`, so no run reaches past the last window.
        let mut starts = free;
        for shift in 1..count {
            starts &= free >> shift;
        }
        if starts == 0 {
            return None;
        }
        let first = starts.trailing_zeros() as usize;
        self.store_claimed(free & !run_mask(first, count));
        Some(first)
    }

    /// Release the `count` windows from `first` that [`claim_run`](Self::claim_run)
    /// claimed, once their entries are clear and invalidated.
    #[inline]
    pub(crate) fn release_run(&self, first: usize, count: usize) {
        compiler_fence(Ordering::SeqCst);
        let free = self.free.load(Ordering::Relaxed);
        self.free
            .store(free | run_mask(first, count), Ordering::Relaxed);
    }

    /// Mark the `count` windows from `first` as held by a view, or as no longer held by
    /// one; only while the caller has them claimed.
    #[cfg(feature = "contract-checks")]
    #[inline]
    pub(crate) fn set_view(&self, first: usize, count: usize, held: bool) {
        let views = self.views.load(Ordering::Relaxed);
        let run = run_mask(first, count);
        let views = if held { views | run } else { views & !run };
        self.views.store(views, Ordering::Relaxed);
    }

    /// Whether window `slot` is held by a view.
    #[cfg(feature = "contract-checks")]
    #[inline]
    pub(crate) fn is_in_view(&self, slot: usize) -> bool {
        self.views.load(Ordering::Relaxed) & 1 << slot != 0
    }

    #[inline]
    fn store_claimed(&self, free: u32) {
        self.free.store(free, Ordering::Relaxed);
        // The claim must be visible to an interrupt handler on this CPU before the
        // window's entry is read or written: forbid the compiler to sink the store.
        compiler_fence(Ordering::SeqCst);
    }

    /// Whether `slot` is claimed.
    #[cfg(any(test, feature = "contract-checks"))]
    #[inline]
    pub(crate) fn is_claimed(&self, slot: usize) -> bool {
        self.free.load(Ordering::Relaxed) & 1 << slot == 0
    }

    /// Release `slot`, once its entry is in the state its `entry` records.
    #[inline]
    pub(crate) fn release(&self, slot: usize) {
        // The entry must be settled before another context on this CPU may claim the
        // slot.
        compiler_fence(Ordering::SeqCst);
        let free = self.free.load(Ordering::Relaxed);
        self.free.store(free | 1 << slot, Ordering::Relaxed);
    }

    /// Windows in use on this CPU, as a bit mask.
    pub fn in_use_mask(&self) -> u32 {
        !self.free.load(Ordering::Relaxed) & Self::ALL
    }

    /// Windows free on this CPU, as a bit mask.
    #[inline(always)]
    pub(crate) fn free_mask(&self) -> u32 {
        self.free.load(Ordering::Relaxed)
    }

    /// What window `slot`'s entry holds; exact only while the caller has it claimed.
    #[inline]
    pub(crate) fn entry(&self, slot: usize) -> WindowEntry {
        WindowEntry(self.entries[slot].load(Ordering::Relaxed))
    }

    /// Record what window `slot`'s entry holds; only while the caller has it claimed.
    #[inline]
    pub(crate) fn set_entry(&self, slot: usize, entry: WindowEntry) {
        self.entries[slot].store(entry.0, Ordering::Relaxed);
    }

    /// The current flush epoch.
    #[inline]
    pub(crate) fn flush_epoch(&self) -> u64 {
        self.flush_epoch.load(Ordering::Relaxed)
    }

    /// Count a local full flush that has just completed.
    #[inline]
    pub(crate) fn advance_flush_epoch(&self) {
        compiler_fence(Ordering::SeqCst);
        let epoch = self.flush_epoch.load(Ordering::Relaxed);
        self.flush_epoch.store(epoch + 1, Ordering::Relaxed);
    }

    /// Windows probably clean (a hint).
    #[inline]
    pub(crate) fn maybe_clean(&self) -> u32 {
        self.maybe_clean.load(Ordering::Relaxed)
    }

    /// Replace the clean hint.
    #[inline]
    pub(crate) fn set_maybe_clean(&self, mask: u32) {
        self.maybe_clean.store(mask, Ordering::Relaxed);
    }

    /// The window that last mapped a page of `bucket` (a hint; always below `N`).
    #[inline]
    pub(crate) fn hint(&self, bucket: usize) -> usize {
        self.hints[bucket].load(Ordering::Relaxed) as usize
    }

    /// Remember that window `slot` maps a page of `bucket`.
    #[inline]
    pub(crate) fn set_hint(&self, bucket: usize, slot: usize) {
        self.hints[bucket].store(slot as u8, Ordering::Relaxed);
    }
}

impl<const N: usize> Default for CpuWindows<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_tell_mapped_write_back_cleared_and_clean_apart() {
        let page = PhysAddr(0x1234_5000);
        let write_back = WindowEntry::mapped(page, MemoryAttribute::WriteBack);
        assert!(write_back.is_mapped() && write_back.is_mapped_write_back());
        assert!(!write_back.is_clean(u64::MAX));
        for attribute in &MemoryAttribute::ALL[1..] {
            let other = WindowEntry::mapped(page, *attribute);
            assert!(
                other.is_mapped() && !other.is_mapped_write_back(),
                "{attribute:?}"
            );
            assert_ne!(other, write_back);
        }
        assert_ne!(
            WindowEntry::mapped(PhysAddr(0x2000), MemoryAttribute::WriteBack),
            WindowEntry::mapped(PhysAddr(0x3000), MemoryAttribute::WriteBack)
        );
        let cleared = WindowEntry::cleared_in(7);
        assert!(!cleared.is_mapped() && !cleared.is_mapped_write_back());
        assert!(!cleared.is_clean(7), "not before a flush after the clear");
        assert!(cleared.is_clean(8));
        assert!(WindowEntry::CLEAN.is_clean(1), "clean in the first epoch");
        for attribute in MemoryAttribute::ALL {
            let entry = WindowEntry::mapped(page, attribute);
            assert_eq!((entry.page(), entry.attribute()), (page, attribute));
            assert_eq!(WindowEntry::from_bits(entry.bits()), entry);
        }
    }

    #[test]
    fn hint_buckets_spread_a_run_of_frames() {
        let mut used = [false; HINT_BUCKETS];
        for frame in 0..16u64 {
            used[hint_bucket(PhysAddr(0x10_0000 + frame * PAGE_SIZE as u64))] = true;
        }
        let distinct = used.iter().filter(|&&u| u).count();
        assert!(
            distinct >= 14,
            "16 consecutive frames share buckets: {distinct} distinct"
        );
    }

    #[test]
    fn claims_take_free_windows_only() {
        let windows = CpuWindows::<3>::new();
        assert!(windows.claim_slot(1));
        assert!(!windows.claim_slot(1));
        assert_eq!(windows.claim(), Some(0));
        assert_eq!(windows.claim(), Some(2));
        assert_eq!(windows.claim(), None);
        windows.release(1);
        assert_eq!(windows.in_use_mask(), 0b101);
        assert!(windows.is_claimed(0) && !windows.is_claimed(1));
    }

    #[test]
    fn runs_take_the_lowest_adjacent_free_windows_only() {
        let windows = CpuWindows::<6>::new();
        assert!(windows.claim_slot(1) && windows.claim_slot(4));
        // Free: 0, 2, 3, 5.
        assert_eq!(windows.claim_run(3), None, "no three adjacent free windows");
        assert_eq!(windows.claim_run(2), Some(2));
        assert_eq!(windows.in_use_mask(), 0b011110);
        assert_eq!(
            windows.claim_run(2),
            None,
            "0 and 5 are free but not adjacent"
        );
        assert_eq!(windows.claim_run(1), Some(0));
        windows.release_run(2, 2);
        assert_eq!(windows.in_use_mask(), 0b010011);
        windows.release_run(4, 1);
        assert_eq!(
            windows.claim_run(4),
            Some(2),
            "a run may end at the last window"
        );
        assert_eq!(windows.in_use_mask(), 0b111111);
        let all = CpuWindows::<32>::new();
        assert_eq!(all.claim_run(32), Some(0));
        assert_eq!(all.in_use_mask(), u32::MAX);
        all.release_run(0, 32);
        assert_eq!(all.in_use_mask(), 0);
    }
}
