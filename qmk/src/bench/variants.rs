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
//!
//! Local mappings: `local-window` calls the exported `qmk_local_enter_page` /
//! `qmk_local_remove_page`, `local-guard` inlines `local_quickmap().map(&page)`.
//! `local-switchK` measures the context switch itself: two threads bound to the
//! CPU, each holding `K` local mappings (0, 1, or all 4 slots), hand the CPU to
//! each other with `yield_now` (interrupts off, so that nothing else switches);
//! a "pair" is one switch, with one switch-out and one switch-in hook of `K`
//! slots each.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use quickmap::untyped;
use quickmap::PAGE_SIZE;

use super::baselines::{GlobalWindow, ShootdownMap};
use super::pages::{direct_address, touch, PageRing, Pages, RING};
use crate::arch::interrupts::{disable_interrupts, enable_interrupts, interrupts_enabled};
use crate::arch::quickmap_backend::BROADCAST_INVALIDATION;
use crate::memory::frame_allocator::Zone;
use crate::sched::JoinHandle;
use crate::vm::page::VmPage;
use crate::vm::quick::{
    local_quickmap, pmap_copy_page, pmap_quick_enter_page, pmap_quick_remove_page, pmap_zero_page,
    qmk_deferred_enter_page, qmk_deferred_remove_page, qmk_local_enter_page, qmk_local_remove_page,
    quickmap, DEFERRED_WINDOWS_PER_CPU, LOCAL_SLOTS,
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
    LocalWindow,
    LocalGuard,
    LocalSwitch0,
    LocalSwitch1,
    LocalSwitch4,
}

impl Variant {
    /// Every reported variant, in the protocol's order.
    pub const REPORTED: [Variant; 21] = [
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
        Variant::LocalWindow,
        Variant::LocalGuard,
        Variant::LocalSwitch0,
        Variant::LocalSwitch1,
        Variant::LocalSwitch4,
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
            Variant::LocalWindow => "local-window",
            Variant::LocalGuard => "local-guard",
            Variant::LocalSwitch0 => "local-switch0",
            Variant::LocalSwitch1 => "local-switch1",
            Variant::LocalSwitch4 => "local-switch4",
        }
    }

    /// Enter/remove pairs (or pages zeroed/copied) per loop iteration.
    pub fn pairs_per_iteration(self) -> u64 {
        match self {
            Variant::QuickmapNested2 => 2,
            Variant::QuickmapNested4 => 4,
            // Away to the partner and back.
            _ if self.switch_held().is_some() => 2,
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
            // A switch is a few thousand instructions.
            _ if self.switch_held().is_some() => 8,
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

    /// Whether the variant's events are the kernel's local mappings' (its local
    /// pairs, or the switch hooks of its held slots).
    pub fn uses_local(self) -> bool {
        matches!(self, Variant::LocalWindow | Variant::LocalGuard) || self.switch_held().is_some()
    }

    /// For a switch variant, the local mappings each of its two threads holds.
    pub fn switch_held(self) -> Option<usize> {
        match self {
            Variant::LocalSwitch0 => Some(0),
            Variant::LocalSwitch1 => Some(1),
            Variant::LocalSwitch4 => Some(LOCAL_SLOTS),
            _ => None,
        }
    }

    /// What must run on the CPU before the variant's loop: a switch variant's
    /// partner thread, bound to `cpu`, holding its local mappings and yielding
    /// with interrupts off.
    pub fn partner(self, cpu: usize) -> Option<Partner> {
        self.switch_held().map(|held| Partner::start(cpu, held))
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
            Variant::LocalWindow => local_pairs(ring, iterations),
            Variant::LocalGuard => local_guard(ring, iterations),
            Variant::LocalSwitch0 => local_switches::<0>(ring, iterations),
            Variant::LocalSwitch1 => local_switches::<1>(ring, iterations),
            Variant::LocalSwitch4 => local_switches::<LOCAL_SLOTS>(ring, iterations),
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
    exported_pairs(
        ring,
        iterations,
        pmap_quick_enter_page,
        pmap_quick_remove_page,
    )
}

/// `iterations` pairs of one of the kernel's exported enter/remove functions:
/// enter the ring's next page, touch it, remove it. Inlined into each variant's
/// own loop, so that the calls are direct.
#[inline(always)]
fn exported_pairs<const N: usize>(
    ring: Pages<N>,
    iterations: usize,
    enter: extern "C" fn(&VmPage) -> usize,
    remove: unsafe extern "C" fn(usize),
) -> OwnCounts {
    each(iterations, |i| {
        let va = enter(ring.get(i));
        touch(va);
        // SAFETY: `va` was entered just now by this thread and is not used
        // after the remove (the contract of each exported remove).
        unsafe { remove(va) };
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
    exported_pairs(
        ring,
        iterations,
        qmk_deferred_enter_page,
        qmk_deferred_remove_page,
    )
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

/// The exported `kmap_local_page`-style pair of the kernel's local mappings.
#[inline(never)]
fn local_pairs(ring: Pages<RING>, iterations: usize) -> OwnCounts {
    exported_pairs(
        ring,
        iterations,
        qmk_local_enter_page,
        qmk_local_remove_page,
    )
}

/// The local mappings' safe API, inlined: `map(&page)`, touch, drop (the instance
/// fetched once, as for `quickmap-guard`).
#[inline(never)]
fn local_guard(ring: Pages<RING>, iterations: usize) -> OwnCounts {
    let local = local_quickmap();
    each(iterations, |i| {
        let page = ring.held(i);
        let mapping = local.map(&page);
        touch(mapping.as_mut_ptr() as usize);
        drop(mapping);
    });
    OwnCounts::default()
}

/// `K` local mappings held (the ring's first pages) while the CPU goes to the
/// partner and back, `iterations` times: two switches per iteration.
#[inline(never)]
fn local_switches<const K: usize>(ring: Pages<RING>, iterations: usize) -> OwnCounts {
    let local = local_quickmap();
    let held: [_; K] = core::array::from_fn(|i| ring.held(i));
    let mappings: Vec<_> = held.iter().map(|page| local.map(page)).collect();
    each(iterations, |_| crate::sched::yield_now());
    drop(mappings);
    OwnCounts::default()
}

/// A switch variant's second thread on the CPU: it holds its own local mappings
/// and hands the CPU back at once, with interrupts off, until told to stop.
pub struct Partner {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Partner {
    /// Starts the partner on `cpu` (the caller's CPU) holding `held` local
    /// mappings, and returns once it is yielding.
    fn start(cpu: usize, held: usize) -> Partner {
        let stop = Arc::new(AtomicBool::new(false));
        let ready = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, ready) = (stop.clone(), ready.clone());
            crate::sched::spawn_pinned("bench-partner", cpu, move || {
                let ring = PageRing::new(Zone::High, held.max(1));
                let pages: Vec<_> = (0..held).map(|i| ring.held_page(i)).collect();
                let mappings: Vec<_> = pages
                    .iter()
                    .map(|page| local_quickmap().map(page))
                    .collect();
                let were_enabled = interrupts_enabled();
                disable_interrupts();
                ready.store(true, Ordering::Release);
                while !stop.load(Ordering::Acquire) {
                    crate::sched::yield_now();
                }
                if were_enabled {
                    enable_interrupts();
                }
                drop(mappings);
            })
        };
        while !ready.load(Ordering::Acquire) {
            crate::sched::yield_now();
        }
        Partner { stop, thread }
    }

    /// Stops the partner and waits for it (interrupts on: this may block).
    pub fn finish(self) {
        self.stop.store(true, Ordering::Release);
        self.thread.join();
    }
}
