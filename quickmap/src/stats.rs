//! Event counters (feature `stats`).
//!
//! Window counters are kept per window and updated only by the context that has
//! claimed the window, so a plain load and store is exact even when interrupt handlers
//! use other windows of the same CPU, and no `lock` instruction enters the window path.
//!
//! The direct-map path pins nothing, and an atomic add would put a `lock` prefix on
//! `enter`, so its counter is a plain load and store on the current CPU's line: it can
//! miss a hit when the thread is interrupted or migrated between the two and another
//! context counts on the same CPU meanwhile. It is a statistic, not an invariant. So is
//! `full_flushes`, counted the same way by whichever context flushes (a flush nested
//! inside another's two-instruction count can be missed). `window_maps`,
//! `window_reuses` and `invalidations` are exact.

#[cfg(feature = "stats")]
use core::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of quickmap's event counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// `enter` calls that returned a direct-map address: no page-table write. (May
    /// undercount under races; see the module documentation.)
    pub direct_map_hits: u64,
    /// `enter` calls that mapped a window: one page-table write each. A view counts
    /// one for each of its pages.
    pub window_maps: u64,
    /// `enter` calls that took back a window whose entry still mapped the page (deferred
    /// instances): no page-table write, no invalidation.
    pub window_reuses: u64,
    /// Local single-page TLB invalidations (strict: one per window `remove`, and one per
    /// page of a view when it drops; deferred: one per `remove` of a page that is not
    /// write-back).
    pub invalidations: u64,
    /// Local full TLB flushes (deferred instances: one each time a CPU runs out of
    /// clean windows). May undercount under a race (see the module documentation).
    pub full_flushes: u64,
}

impl Stats {
    /// All `enter` calls.
    pub fn enters(&self) -> u64 {
        self.direct_map_hits + self.window_maps + self.window_reuses
    }

    /// Invalidating operations: single-page invalidations and full flushes alike.
    pub fn invalidating_operations(&self) -> u64 {
        self.invalidations + self.full_flushes
    }

    /// Sum of two snapshots.
    #[must_use]
    pub fn plus(self, other: Stats) -> Stats {
        Stats {
            direct_map_hits: self.direct_map_hits + other.direct_map_hits,
            window_maps: self.window_maps + other.window_maps,
            window_reuses: self.window_reuses + other.window_reuses,
            invalidations: self.invalidations + other.invalidations,
            full_flushes: self.full_flushes + other.full_flushes,
        }
    }
}

#[cfg(feature = "stats")]
#[inline(always)]
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

#[cfg(feature = "stats")]
pub(crate) struct CpuCounters<const N: usize> {
    direct_map_hits: AtomicU64,
    full_flushes: AtomicU64,
    window_maps: [AtomicU64; N],
    window_reuses: [AtomicU64; N],
    invalidations: [AtomicU64; N],
}

#[cfg(feature = "stats")]
impl<const N: usize> CpuCounters<N> {
    pub(crate) const fn new() -> Self {
        CpuCounters {
            direct_map_hits: AtomicU64::new(0),
            full_flushes: AtomicU64::new(0),
            window_maps: [const { AtomicU64::new(0) }; N],
            window_reuses: [const { AtomicU64::new(0) }; N],
            invalidations: [const { AtomicU64::new(0) }; N],
        }
    }

    /// May miss a count under a race (see the module documentation).
    pub(crate) fn count_direct_map_hit(&self) {
        bump(&self.direct_map_hits);
    }

    /// Only while `slot` is claimed by the caller.
    pub(crate) fn count_window_map(&self, slot: usize) {
        bump(&self.window_maps[slot]);
    }

    /// May miss a count under a race (see the module documentation).
    pub(crate) fn count_full_flush(&self) {
        bump(&self.full_flushes);
    }

    /// Only while `slot` is claimed by the caller.
    pub(crate) fn count_window_reuse(&self, slot: usize) {
        bump(&self.window_reuses[slot]);
    }

    /// Only while `slot` is claimed by the caller.
    pub(crate) fn count_invalidation(&self, slot: usize) {
        bump(&self.invalidations[slot]);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let sum =
            |counters: &[AtomicU64; N]| counters.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        Stats {
            direct_map_hits: self.direct_map_hits.load(Ordering::Relaxed),
            window_maps: sum(&self.window_maps),
            window_reuses: sum(&self.window_reuses),
            invalidations: sum(&self.invalidations),
            full_flushes: self.full_flushes.load(Ordering::Relaxed),
        }
    }
}
