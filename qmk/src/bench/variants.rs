//! What each variant does per pair, on one CPU.
//!
//! Every variant is one loop of the same shape as the empty loop
//! ([`Variant::EmptyLoop`], whose cost the host subtracts): `iterations` times,
//! take the next page of the thread's ring and do the pair(s) with it. Each
//! loop is its own `#[inline(never)]` function, so `objdump` shows exactly
//! what a variant runs. The FreeBSD-named variants call the exported
//! `pmap_quick_enter_page` / `pmap_quick_remove_page`, and the deferred ones
//! `qmk_deferred_enter_page` / `qmk_deferred_remove_page`: the code the static
//! check disassembles (calling them here also keeps them linked). The guard
//! variants inline quickmap's safe API (`quickmap().map(&page)`) into the loop.

use quickmap::untyped;
use quickmap::PAGE_SIZE;

use super::baselines::{GlobalWindow, ShootdownMap};
use super::pages::{direct_address, touch, PageRing, Pages, RING};
use crate::arch::quickmap_backend::BROADCAST_INVALIDATION;
use crate::memory::frame_allocator::Zone;
use crate::vm::quick::{
    pmap_copy_page, pmap_quick_enter_page, pmap_quick_remove_page, pmap_zero_page,
    qmk_deferred_enter_page, qmk_deferred_remove_page, quickmap, DEFERRED_WINDOWS_PER_CPU,
};

/// Pages in `deferred-window`'s ring: more than twice the deferred instance's
/// windows per CPU, so a page is never entered again before a full flush has
/// cleaned the window that last mapped it (no reuse: every pair is a fresh map).
pub const DEFERRED_RING: usize = 128;
const _: () = assert!(DEFERRED_RING > 2 * DEFERRED_WINDOWS_PER_CPU);

/// Pages in `deferred-pool`'s ring: a bounce-buffer pool, entered over and over.
pub const POOL: usize = 4;

/// One benchmark variant (`docs/kernel-protocol.md`, "mode=bench").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// The loop alone: what every variant's ticks include besides its pairs.
    EmptyLoop,
    DirectRaw,
    QuickmapWindow,
    QuickmapDirect,
    QuickmapGuard,
    QuickmapGuardDirect,
    QuickmapNested2,
    QuickmapNested4,
    DeferredWindow,
    DeferredPool,
    GlobalLockWindow,
    ShootdownMap,
    ShootdownBroadcast,
    ZeroPageQuickmap,
    ZeroPageDirect,
    CopyPageQuickmap,
    CopyPageDirect,
}

impl Variant {
    /// Every reported variant, in the protocol's order.
    pub const REPORTED: [Variant; 16] = [
        Variant::DirectRaw,
        Variant::QuickmapWindow,
        Variant::QuickmapDirect,
        Variant::QuickmapGuard,
        Variant::QuickmapGuardDirect,
        Variant::QuickmapNested2,
        Variant::QuickmapNested4,
        Variant::DeferredWindow,
        Variant::DeferredPool,
        Variant::GlobalLockWindow,
        Variant::ShootdownMap,
        Variant::ShootdownBroadcast,
        Variant::ZeroPageQuickmap,
        Variant::ZeroPageDirect,
        Variant::CopyPageQuickmap,
        Variant::CopyPageDirect,
    ];

    /// Whether this architecture can run the variant: `shootdown-broadcast`
    /// needs a broadcast invalidation instruction (aarch64's `tlbi vale1is`).
    pub fn exists_here(self) -> bool {
        self != Variant::ShootdownBroadcast || BROADCAST_INVALIDATION.is_some()
    }

    /// The protocol name.
    pub fn name(self) -> &'static str {
        match self {
            Variant::EmptyLoop => "empty-loop",
            Variant::DirectRaw => "direct-raw",
            Variant::QuickmapWindow => "quickmap-window",
            Variant::QuickmapDirect => "quickmap-direct",
            Variant::QuickmapGuard => "quickmap-guard",
            Variant::QuickmapGuardDirect => "quickmap-guard-direct",
            Variant::QuickmapNested2 => "quickmap-nested2",
            Variant::QuickmapNested4 => "quickmap-nested4",
            Variant::DeferredWindow => "deferred-window",
            Variant::DeferredPool => "deferred-pool",
            Variant::GlobalLockWindow => "global-lock-window",
            Variant::ShootdownMap => "shootdown-map",
            Variant::ShootdownBroadcast => "shootdown-broadcast",
            Variant::ZeroPageQuickmap => "zero-page-quickmap",
            Variant::ZeroPageDirect => "zero-page-direct",
            Variant::CopyPageQuickmap => "copy-page-quickmap",
            Variant::CopyPageDirect => "copy-page-direct",
        }
    }

    /// Enter/remove pairs (or pages zeroed/copied) per loop iteration.
    pub fn pairs_per_iteration(self) -> u64 {
        match self {
            Variant::QuickmapNested2 => 2,
            Variant::QuickmapNested4 => 4,
            _ => 1,
        }
    }

    /// How many times fewer pairs than the others this variant runs: page
    /// zeroing and copying move a whole page per pair, and a shootdown waits
    /// for every other CPU (thousands of times slower than a window under TCG
    /// at 4 CPUs), so that the whole boot stays within about a minute.
    pub fn pairs_divisor(self) -> u64 {
        match self {
            Variant::ZeroPageQuickmap
            | Variant::ZeroPageDirect
            | Variant::CopyPageQuickmap
            | Variant::CopyPageDirect => 8,
            Variant::ShootdownMap => 64,
            _ => 1,
        }
    }

    /// Where the variant's pages come from: high memory for the window paths,
    /// the direct map for the paths that go through it.
    pub fn zone(self) -> Zone {
        match self {
            Variant::EmptyLoop
            | Variant::DirectRaw
            | Variant::QuickmapDirect
            | Variant::QuickmapGuardDirect
            | Variant::ZeroPageDirect
            | Variant::CopyPageDirect => Zone::DirectMapped,
            _ => Zone::High,
        }
    }

    /// Pages in each thread's ring.
    pub fn ring_pages(self) -> usize {
        match self {
            Variant::DeferredWindow => DEFERRED_RING,
            Variant::DeferredPool => POOL,
            _ => RING,
        }
    }

    /// Whether the variant goes through quickmap, whose statistics then count
    /// its events (the baselines and the direct accesses count their own).
    pub fn uses_quickmap(self) -> bool {
        !matches!(
            self,
            Variant::EmptyLoop
                | Variant::DirectRaw
                | Variant::GlobalLockWindow
                | Variant::ShootdownMap
                | Variant::ShootdownBroadcast
                | Variant::ZeroPageDirect
                | Variant::CopyPageDirect
        )
    }

    /// Whether the variant uses the kernel's deferred instance (which exists on
    /// machines with at most `DEFERRED_MAX_CPUS` CPUs).
    pub fn uses_deferred(self) -> bool {
        matches!(self, Variant::DeferredWindow | Variant::DeferredPool)
    }

    /// Whether the loop must run with interrupts enabled: a shootdown waits
    /// for the other CPUs to answer its IPI. Every other loop runs with
    /// interrupts disabled, so that timer ticks neither add instructions to
    /// the count nor count the scheduler's lock as the variant's.
    pub fn needs_interrupts(self) -> bool {
        self == Variant::ShootdownMap
    }

    /// Runs `iterations` iterations on CPU `cpu` (the caller is pinned there)
    /// with the pages of `ring`. Returns the events the variant counts itself
    /// (the baselines, which have no statistics of their own).
    pub fn run(self, cpu: usize, ring: &PageRing, iterations: usize) -> OwnCounts {
        match self {
            Variant::DeferredWindow => return deferred_window(ring.pages(), iterations),
            Variant::DeferredPool => return deferred_pool(ring.pages(), iterations),
            _ => {}
        }
        let ring = ring.pages::<RING>();
        match self {
            Variant::EmptyLoop => empty_loop(ring, iterations),
            Variant::DirectRaw => direct_raw(ring, iterations),
            Variant::QuickmapWindow | Variant::QuickmapDirect => quickmap_pairs(ring, iterations),
            Variant::QuickmapGuard | Variant::QuickmapGuardDirect => {
                quickmap_guard(ring, iterations)
            }
            Variant::QuickmapNested2 => quickmap_nested::<2>(ring, iterations),
            Variant::QuickmapNested4 => quickmap_nested::<4>(ring, iterations),
            Variant::GlobalLockWindow => global_lock_window(ring, iterations),
            Variant::ShootdownMap => shootdown_map(cpu, ring, iterations),
            Variant::ShootdownBroadcast => shootdown_broadcast(cpu, ring, iterations),
            Variant::ZeroPageQuickmap => zero_page_quickmap(ring, iterations),
            Variant::ZeroPageDirect => zero_page_direct(ring, iterations),
            Variant::CopyPageQuickmap => copy_page_quickmap(ring, iterations),
            Variant::CopyPageDirect => copy_page_direct(ring, iterations),
            Variant::DeferredWindow | Variant::DeferredPool => unreachable!(),
        }
    }

    /// What runs before the counters are read and the clock starts: the
    /// bounce-buffer pool is entered once, so that the loop measures the steady
    /// state in which each pool page still has its window.
    pub fn warm_up(self, ring: &PageRing) {
        if self == Variant::DeferredPool {
            deferred_pool(ring.pages(), POOL);
        }
    }
}

/// Events a baseline counts for itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnCounts {
    /// TLB invalidations (on any CPU).
    pub invalidations: u64,
    /// Page-table entries written to install a translation.
    pub pte_writes: u64,
}

/// The loop every variant shares. The index passes through an empty `asm!`
/// each iteration, so the compiler cannot count the trips and unroll: every
/// variant then runs the same loop as the empty one, and subtracting the empty
/// loop's ticks leaves exactly the pairs' cost.
#[inline(always)]
fn each(iterations: usize, mut body: impl FnMut(usize)) {
    let mut index = 0;
    while index < iterations {
        body(index);
        index = opaque(index + 1);
    }
}

/// `value`, hidden from the optimiser (no instruction is emitted).
#[inline(always)]
fn opaque(mut value: usize) -> usize {
    // SAFETY: an empty instruction sequence that only claims to change a register.
    unsafe {
        core::arch::asm!("/* {0} */", inout(reg) value, options(nomem, nostack, preserves_flags))
    };
    value
}

#[inline(never)]
fn empty_loop(ring: Pages<RING>, iterations: usize) -> OwnCounts {
    each(iterations, |i| {
        opaque(ring.get(i) as *const _ as usize);
    });
    OwnCounts::default()
}

#[inline(never)]
fn direct_raw(ring: Pages<RING>, iterations: usize) -> OwnCounts {
    each(iterations, |i| touch(direct_address(ring.get(i))));
    OwnCounts::default()
}

#[inline(never)]
fn quickmap_pairs(ring: Pages<RING>, iterations: usize) -> OwnCounts {
    each(iterations, |i| {
        let va = pmap_quick_enter_page(ring.get(i));
        touch(va);
        // SAFETY: `va` was entered just now by this thread and is not used
        // after the remove.
        unsafe { pmap_quick_remove_page(va) };
    });
    OwnCounts::default()
}

/// quickmap's safe API, inlined: `map(&page)`, touch, drop. The guard carries
/// its window, so its drop neither decodes the address nor checks the rules of
/// the unsafe `remove`. The instance is fetched once, as a kernel that keeps a
/// `&'static QuickMap` does: what is measured is quickmap, not qmk's accessor.
#[inline(never)]
fn quickmap_guard(ring: Pages<RING>, iterations: usize) -> OwnCounts {
    let quickmap = quickmap();
    each(iterations, |i| {
        let page = ring.held(i);
        let mapping = quickmap.map(&page);
        touch(mapping.as_mut_ptr() as usize);
        drop(mapping);
    });
    OwnCounts::default()
}

/// The deferred instance over [`DEFERRED_RING`] distinct pages: every pair maps
/// a window afresh, and one local full flush per `DEFERRED_WINDOWS_PER_CPU`
/// pairs cleans them all.
#[inline(never)]
fn deferred_window(ring: Pages<DEFERRED_RING>, iterations: usize) -> OwnCounts {
    deferred_pairs(ring, iterations)
}

/// The deferred instance over a pool of [`POOL`] pages entered again and
/// again (bounce buffers): each page finds the window that still maps it.
#[inline(never)]
fn deferred_pool(ring: Pages<POOL>, iterations: usize) -> OwnCounts {
    deferred_pairs(ring, iterations)
}

#[inline(always)]
fn deferred_pairs<const N: usize>(ring: Pages<N>, iterations: usize) -> OwnCounts {
    each(iterations, |i| {
        let va = qmk_deferred_enter_page(ring.get(i));
        touch(va);
        // SAFETY: `va` was entered just now by this thread and is not used
        // after the remove.
        unsafe { qmk_deferred_remove_page(va) };
    });
    OwnCounts::default()
}

/// `K` windows held at once; removed in the order entered (not LIFO:
/// quickmap releases windows in any order).
#[inline(never)]
fn quickmap_nested<const K: usize>(ring: Pages<RING>, iterations: usize) -> OwnCounts {
    each(iterations, |i| {
        let vas: [usize; K] = core::array::from_fn(|j| pmap_quick_enter_page(ring.get(i * K + j)));
        for va in vas {
            touch(va);
        }
        for va in vas {
            // SAFETY: each was entered above by this thread and is not used
            // after its remove.
            unsafe { pmap_quick_remove_page(va) };
        }
    });
    OwnCounts::default()
}

#[inline(never)]
fn global_lock_window(ring: Pages<RING>, iterations: usize) -> OwnCounts {
    let window = GlobalWindow::get();
    each(iterations, |i| window.pair(ring.get(i)));
    OwnCounts {
        invalidations: iterations as u64,
        pte_writes: iterations as u64,
    }
}

#[inline(never)]
fn shootdown_map(cpu: usize, ring: Pages<RING>, iterations: usize) -> OwnCounts {
    let map = ShootdownMap::get();
    each(iterations, |i| map.pair(cpu, ring.get(i)));
    OwnCounts {
        // Every CPU online invalidates the page once per shootdown.
        invalidations: iterations as u64 * crate::cpu::cpu_count() as u64,
        pte_writes: iterations as u64,
    }
}

#[inline(never)]
fn shootdown_broadcast(cpu: usize, ring: Pages<RING>, iterations: usize) -> OwnCounts {
    let map = ShootdownMap::get();
    let Some(invalidate) = BROADCAST_INVALIDATION else {
        unreachable!("shootdown-broadcast runs only where `exists_here`");
    };
    // SAFETY: `invalidate` is the architecture's `BROADCAST_INVALIDATION`.
    each(iterations, |i| unsafe {
        map.pair_broadcast(cpu, ring.get(i), invalidate)
    });
    OwnCounts {
        // One instruction, which every CPU's TLB acts on.
        invalidations: iterations as u64,
        pte_writes: iterations as u64,
    }
}

#[inline(never)]
fn zero_page_quickmap(ring: Pages<RING>, iterations: usize) -> OwnCounts {
    each(iterations, |i| pmap_zero_page(ring.get(i)));
    OwnCounts::default()
}

#[inline(never)]
fn zero_page_direct(ring: Pages<RING>, iterations: usize) -> OwnCounts {
    each(iterations, |i| {
        let va = direct_address(ring.get(i));
        // SAFETY: the page is direct-mapped, writable and this thread's own;
        // the same routine quickmap's `zero_page` uses.
        unsafe { untyped::fill(va as *mut u8, PAGE_SIZE, 0) };
    });
    OwnCounts::default()
}

#[inline(never)]
fn copy_page_quickmap(ring: Pages<RING>, iterations: usize) -> OwnCounts {
    each(iterations, |i| pmap_copy_page(ring.get(i), ring.get(i + 1)));
    OwnCounts::default()
}

#[inline(never)]
fn copy_page_direct(ring: Pages<RING>, iterations: usize) -> OwnCounts {
    each(iterations, |i| {
        let source = direct_address(ring.get(i));
        let destination = direct_address(ring.get(i + 1));
        // SAFETY: both pages are direct-mapped, this thread's own, and
        // distinct (the ring has more than one page); the same routine
        // quickmap's `copy_page` uses.
        unsafe { untyped::copy(destination as *mut u8, source as *const u8, PAGE_SIZE) };
    });
    OwnCounts::default()
}
