//! Event counters (feature `stats`).
//!
//! Window counters are kept per window and updated only by the context that has
//! claimed the window, so a plain load and store is exact even when interrupt handlers
//! use other windows of the same CPU, and no `lock` instruction enters the window path.
//!
//! The direct-map path pins nothing, and an atomic add would put a `lock` prefix on
//! `enter`, so its counter is a plain load and store on the current CPU's line: it can
//! miss a hit when the thread is interrupted or migrated between the two and another
//! context counts on the same CPU meanwhile. It is a statistic, not an invariant;
//! `window_maps` and `invalidations` are exact.

#[cfg(feature = "stats")]
use core::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of quickmap's event counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// `enter` calls that returned a direct-map address: no page-table write. (May
    /// undercount under races; see the module documentation.)
    pub direct_map_hits: u64,
    /// `enter` calls that mapped a window: one page-table write each.
    pub window_maps: u64,
    /// Local TLB invalidations (one per window `remove`).
    pub invalidations: u64,
}

impl Stats {
    /// All `enter` calls.
    pub fn enters(&self) -> u64 {
        self.direct_map_hits + self.window_maps
    }

    /// Sum of two snapshots.
    #[must_use]
    pub fn plus(self, other: Stats) -> Stats {
        Stats {
            direct_map_hits: self.direct_map_hits + other.direct_map_hits,
            window_maps: self.window_maps + other.window_maps,
            invalidations: self.invalidations + other.invalidations,
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
    window_maps: [AtomicU64; N],
    invalidations: [AtomicU64; N],
}

#[cfg(feature = "stats")]
impl<const N: usize> CpuCounters<N> {
    pub(crate) const fn new() -> Self {
        CpuCounters {
            direct_map_hits: AtomicU64::new(0),
            window_maps: [const { AtomicU64::new(0) }; N],
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
            invalidations: sum(&self.invalidations),
        }
    }
}
