//! One CPU's windows: which are in use, claimed and released without locks.

use core::sync::atomic::{compiler_fence, AtomicU32, Ordering};

#[cfg(feature = "stats")]
use crate::stats::CpuCounters;

/// The state of one CPU's `N` windows. Build an array of these, one per CPU, with
/// [`CpuWindows::new`], and give it to [`QuickMap::new`](crate::QuickMap::new).
///
/// Each CPU's state fills its own cache line, so CPUs never write a shared line.
///
/// ```
/// use quickmap::CpuWindows;
/// static WINDOWS: [CpuWindows<4>; 16] = [const { CpuWindows::new() }; 16];
/// ```
#[repr(C, align(64))]
pub struct CpuWindows<const N: usize> {
    /// Bit `w` is set while window `w` is mapped.
    ///
    /// Only this CPU touches the word, from thread context (with preemption disabled) or
    /// from interrupt handlers. Claim and release are a plain load and a plain store, not
    /// an atomic read-modify-write: an interrupt that arrives between the two runs to
    /// completion and releases every window it claimed before the interrupted code
    /// resumes (the third promise of [`Platform`](crate::Platform)), so the word the
    /// interrupted code stores is still the right one. The atomic type only keeps the
    /// compiler from caching, tearing or eliding the accesses; no `lock` prefix is
    /// emitted.
    in_use: AtomicU32,
    #[cfg(feature = "stats")]
    pub(crate) counters: CpuCounters<N>,
}

impl<const N: usize> CpuWindows<N> {
    /// All windows free.
    pub const fn new() -> Self {
        CpuWindows {
            in_use: AtomicU32::new(0),
            #[cfg(feature = "stats")]
            counters: CpuCounters::new(),
        }
    }

    /// Claim the lowest free window. `None` when all `N` are in use.
    ///
    /// Callable only on this CPU with preemption disabled.
    #[inline]
    pub(crate) fn claim(&self) -> Option<usize> {
        let in_use = self.in_use.load(Ordering::Relaxed);
        let slot = (!in_use).trailing_zeros() as usize;
        if slot >= N {
            return None;
        }
        self.in_use.store(in_use | (1 << slot), Ordering::Relaxed);
        // The claim must be visible to an interrupt handler on this CPU before the
        // window's page-table entry is written: forbid the compiler to sink the store.
        compiler_fence(Ordering::SeqCst);
        Some(slot)
    }

    /// Whether `slot` is claimed.
    #[inline]
    pub(crate) fn is_claimed(&self, slot: usize) -> bool {
        self.in_use.load(Ordering::Relaxed) & (1 << slot) != 0
    }

    /// Release `slot`, after its page-table entry is cleared and invalidated.
    #[inline]
    pub(crate) fn release(&self, slot: usize) {
        // The entry must be gone before another context on this CPU may claim the slot.
        compiler_fence(Ordering::SeqCst);
        let in_use = self.in_use.load(Ordering::Relaxed);
        self.in_use.store(in_use & !(1 << slot), Ordering::Relaxed);
    }

    /// Windows in use on this CPU, as a bit mask.
    pub fn in_use_mask(&self) -> u32 {
        self.in_use.load(Ordering::Relaxed)
    }
}

impl<const N: usize> Default for CpuWindows<N> {
    fn default() -> Self {
        Self::new()
    }
}
