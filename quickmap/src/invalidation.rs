//! When a window's old translation leaves the TLB: at every remove ([`Strict`]), or
//! at a local full flush once a CPU has used up its clean windows ([`Deferred`]).
//!
//! ## The trade-off, in one paragraph
//!
//! A strict quickmap clears the window's entry and invalidates it on this CPU at every
//! `remove`, so the old address faults from then on; that costs one `invlpg` per pair
//! (100–260 cycles on hardware, most of a pair's cost). A deferred quickmap leaves the
//! entry in place at `remove` and never enters a window again until this CPU has flushed
//! its TLB since the window's last use; when no clean window is left, one local full
//! flush cleans them all at once (Linux `kmap()`'s flush-on-wrap, made per CPU and
//! lock-free), so a CPU with 32 windows pays one flush per 32 pairs, and a page that is
//! entered again while a free window still maps it takes that window back with no
//! page-table write at all. The price: **after `remove`, the old address may still reach
//! the page until the next flush** on that CPU (FreeBSD i386 leaves a stale entry behind
//! too). Only write-back pages are deferred: a window that mapped any other memory type
//! is invalidated at remove, always, so a frame never keeps a stale uncached or
//! write-combining alias. Pick [`Strict`] (the default) when a removed address must
//! fault — hardening, debugging, pages that change owner right after the copy; pick
//! [`Deferred`] for throughput on RAM: page zeroing, copy-on-write copies, busdma bounce
//! buffers.

/// How a [`QuickMap`](crate::QuickMap) takes a window's translation out of the TLB.
///
/// Implemented by [`Strict`] and [`Deferred`] only; chosen per instance as the last
/// type parameter of `QuickMap`, so the choice costs nothing at run time.
pub trait Invalidation: sealed::Sealed {
    /// Whether `remove` of a write-back window leaves its entry for a later full flush.
    const DEFERRED: bool;
}

/// Invalidate at every `remove`: the removed address faults from then on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Strict;

/// Leave write-back windows mapped at `remove`; flush the whole local TLB once the
/// CPU has no clean window left. See the [module documentation](self) for the trade-off.
/// Give such an instance many windows per CPU (32 is the most, and the best).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deferred;

impl Invalidation for Strict {
    const DEFERRED: bool = false;
}

impl Invalidation for Deferred {
    const DEFERRED: bool = true;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Strict {}
    impl Sealed for super::Deferred {}
}
