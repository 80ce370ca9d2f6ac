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
    add(counter, 1);
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

/// A snapshot of a [`LocalQuickMap`](crate::LocalQuickMap)'s event counts.
///
/// Every count but `direct_map_hits` is exact: a local mapping's slot is claimed and
/// given back inside a short critical section, and the switch hooks run with interrupts
/// disabled, so each count is a plain load and store that nothing on its CPU can split.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalStats {
    /// Local mappings of a direct-mapped write-back page: its direct-map address, no
    /// slot. (May undercount, like [`Stats::direct_map_hits`].)
    pub direct_map_hits: u64,
    /// Local mappings that took a slot: one entry write each.
    pub slot_maps: u64,
    /// Their removals: one entry clear and one local invalidation each.
    pub slot_removes: u64,
    /// Context switches away from a thread that held local mappings (the calls to
    /// `switch_out` past its fast path).
    pub switch_outs: u64,
    /// Context switches to a thread that held local mappings.
    pub switch_ins: u64,
    /// Slots cleared and invalidated at those switch-outs: one per held mapping.
    pub slots_saved: u64,
    /// Slots written back at those switch-ins: one per held mapping.
    pub slots_restored: u64,
}

impl LocalStats {
    /// Local single-page invalidations: at removal and at switch-out.
    pub fn invalidations(&self) -> u64 {
        self.slot_removes + self.slots_saved
    }

    /// Page-table entries written: at mapping and at switch-in.
    pub fn entry_writes(&self) -> u64 {
        self.slot_maps + self.slots_restored
    }

    /// Sum of two snapshots.
    #[must_use]
    pub fn plus(self, other: LocalStats) -> LocalStats {
        LocalStats {
            direct_map_hits: self.direct_map_hits + other.direct_map_hits,
            slot_maps: self.slot_maps + other.slot_maps,
            slot_removes: self.slot_removes + other.slot_removes,
            switch_outs: self.switch_outs + other.switch_outs,
            switch_ins: self.switch_ins + other.switch_ins,
            slots_saved: self.slots_saved + other.slots_saved,
            slots_restored: self.slots_restored + other.slots_restored,
        }
    }
}

/// One CPU's [`LocalStats`] counters.
#[cfg(feature = "stats")]
pub(crate) struct LocalCounters {
    direct_map_hits: AtomicU64,
    slot_maps: AtomicU64,
    slot_removes: AtomicU64,
    switch_outs: AtomicU64,
    switch_ins: AtomicU64,
    slots_saved: AtomicU64,
    slots_restored: AtomicU64,
}

#[cfg(feature = "stats")]
impl LocalCounters {
    pub(crate) const fn new() -> Self {
        LocalCounters {
            direct_map_hits: AtomicU64::new(0),
            slot_maps: AtomicU64::new(0),
            slot_removes: AtomicU64::new(0),
            switch_outs: AtomicU64::new(0),
            switch_ins: AtomicU64::new(0),
            slots_saved: AtomicU64::new(0),
            slots_restored: AtomicU64::new(0),
        }
    }

    /// May miss a count under a race (see [`LocalStats`]).
    #[inline]
    pub(crate) fn count_direct_map_hit(&self) {
        bump(&self.direct_map_hits);
    }

    /// Only with preemption disabled on this CPU.
    #[inline]
    pub(crate) fn count_slot_map(&self) {
        bump(&self.slot_maps);
    }

    /// Only with preemption disabled on this CPU.
    #[inline]
    pub(crate) fn count_slot_remove(&self) {
        bump(&self.slot_removes);
    }

    /// Only with interrupts disabled on this CPU (in a switch hook).
    pub(crate) fn count_switch_out(&self, slots: u32) {
        bump(&self.switch_outs);
        add(&self.slots_saved, u64::from(slots));
    }

    /// Only with interrupts disabled on this CPU (in a switch hook).
    pub(crate) fn count_switch_in(&self, slots: u32) {
        bump(&self.switch_ins);
        add(&self.slots_restored, u64::from(slots));
    }

    pub(crate) fn snapshot(&self) -> LocalStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        LocalStats {
            direct_map_hits: load(&self.direct_map_hits),
            slot_maps: load(&self.slot_maps),
            slot_removes: load(&self.slot_removes),
            switch_outs: load(&self.switch_outs),
            switch_ins: load(&self.switch_ins),
            slots_saved: load(&self.slots_saved),
            slots_restored: load(&self.slots_restored),
        }
    }
}

#[cfg(feature = "stats")]
#[inline(always)]
fn add(counter: &AtomicU64, amount: u64) {
    counter.store(counter.load(Ordering::Relaxed) + amount, Ordering::Relaxed);
}
