//! Views: several held pages at consecutive addresses of one CPU, with a guard page
//! after them, removed as one (`QuickMap::map_pages`, `QuickMap::map_range`).
//!
//! What each test catches is said above it; the teeth (backends that skip one page's
//! invalidation) show that the removal tests see a missing `invlpg`.

#[macro_use]
mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::{pattern, phys_page, ForgetsInvalidation};
use proptest::prelude::*;
use quickmap::sim::{SimConfig, SimMachine, SimMmu, SimPage, SimPlatform, WINDOW_BASE};
use quickmap::{
    HeldRange, MemoryAttribute, Mmu, PhysAddr, QuickMap, Strict, View, ViewError, VirtAddr, Window,
    WindowLayout, PAGE_SIZE,
};

fn machine() -> SimMachine {
    SimMachine::new(SimConfig {
        cpus: 4,
        phys_pages: 96,
        direct_map_pages: 16,
    })
}

fn high(machine: &SimMachine, index: usize) -> SimPage {
    SimPage::high_memory(machine, index)
}

/// A physically contiguous run of simulated pages (which the machine never frees).
#[derive(Clone, Copy, Debug)]
struct Run {
    start: PhysAddr,
    pages: usize,
    attribute: MemoryAttribute,
}

impl Run {
    fn of(first: SimPage, pages: usize) -> Run {
        Run {
            start: first.pa,
            pages,
            attribute: first.attribute,
        }
    }
}

// SAFETY: simulated memory is never reused; address, length and attribute are fixed.
unsafe impl HeldRange for Run {
    fn phys_addr(&self) -> PhysAddr {
        self.start
    }
    fn pages(&self) -> usize {
        self.pages
    }
    fn memory_attribute(&self) -> MemoryAttribute {
        self.attribute
    }
}

/// Whether reading the byte at `va` on the executing CPU faults on the simulated MMU.
fn faults<M: Mmu>(mmu: &M, va: VirtAddr) -> bool {
    let touched = catch_unwind(AssertUnwindSafe(|| {
        let mut byte = [0u8];
        // SAFETY: deliberately touches what may be unmapped; the simulated MMU turns a
        // missing translation into a panic ("sim: page fault").
        unsafe { mmu.read_bytes(va, &mut byte) };
    }));
    match touched {
        Ok(()) => false,
        Err(payload) => {
            let message = payload.downcast::<String>().map(|m| *m).unwrap_or_default();
            assert!(message.contains("sim: page fault"), "{message}");
            true
        }
    }
}

/// The windows a live view holds, as a mask of its CPU's windows.
fn view_windows<P: quickmap::Platform, M: Mmu, const N: usize>(
    view: &View<'_, '_, P, M, N>,
) -> u32 {
    let layout = WindowLayout::guarded(VirtAddr(WINDOW_BASE), N);
    let first = (view.va().0 - WINDOW_BASE) % layout.cpu_stride / layout.window_stride;
    let count = WindowLayout::windows_for_view(view.pages());
    (u32::MAX >> (32 - count)) << first
}

/// Catches: a view whose pages land in the wrong frames or the wrong order, and a copy
/// across a page boundary of the view that is split at the wrong place (in the view:
/// through `write`, an integer accessor, `copy_from` and `copy_to` of a mapping).
#[test]
fn a_copy_across_the_page_boundary_lands_in_the_right_frames() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    // Out of physical order, not neighbours, one of them direct-mapped.
    let pages = [high(&machine, 9), SimPage::new(4), high(&machine, 2)];
    let view = quickmap.map_pages(&pages);
    assert_eq!((view.pages(), view.len()), (3, 3 * PAGE_SIZE));
    for (index, page) in pages.iter().enumerate() {
        let va = view.va().add(index * PAGE_SIZE);
        assert_eq!(
            machine.window_pte(va).map(|(pa, _)| pa),
            Some(page.pa),
            "page {index}"
        );
    }
    // 16 bytes over the boundary between view pages 0 and 1, 8 over the one between 1 and 2.
    let bytes: Vec<u8> = (1..=16).collect();
    view.write(PAGE_SIZE - 10, &bytes);
    view.write_u64(2 * PAGE_SIZE - 3, 0x1122_3344_5566_7788);
    assert_eq!(
        &phys_page(&machine, pages[0].pa)[PAGE_SIZE - 10..],
        &bytes[..10]
    );
    assert_eq!(&phys_page(&machine, pages[1].pa)[..6], &bytes[10..]);
    let word = 0x1122_3344_5566_7788_u64.to_ne_bytes();
    assert_eq!(
        &phys_page(&machine, pages[1].pa)[PAGE_SIZE - 3..],
        &word[..3]
    );
    assert_eq!(&phys_page(&machine, pages[2].pa)[..5], &word[3..]);
    let mut back = [0u8; 16];
    view.read(PAGE_SIZE - 10, &mut back);
    assert_eq!(back.as_slice(), bytes.as_slice());
    assert_eq!(view.read_u64(2 * PAGE_SIZE - 3), 0x1122_3344_5566_7788);

    // A whole page from a mapping into the middle of the view, and back out.
    let (source, target) = (high(&machine, 20), high(&machine, 21));
    machine.phys_write(source.pa, &pattern(20, 1));
    let half = PAGE_SIZE / 2;
    view.copy_from(half, &quickmap.map(&source));
    assert_eq!(
        &phys_page(&machine, pages[0].pa)[half..],
        &pattern(20, 1)[..half]
    );
    assert_eq!(
        &phys_page(&machine, pages[1].pa)[..half],
        &pattern(20, 1)[half..]
    );
    view.compare(half, &pattern(20, 1))
        .expect("the view reads what it copied in");
    view.copy_to(half, &quickmap.map(&target));
    assert_eq!(phys_page(&machine, target.pa), pattern(20, 1));
    drop(view);
    assert_eq!(quickmap.windows_in_use(0), 0);
}

/// Catches: a view with no guard page after it (for an even and an odd number of
/// pages, and wherever in the CPU's windows it lies), and a view whose first page is
/// not where it says.
#[test]
fn the_byte_past_the_view_faults_and_the_byte_before_it_too() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let pages: Vec<_> = (0..7).map(|i| high(&machine, i)).collect();
    for skip in 0..4 {
        for count in 1..=WindowLayout::max_view_pages(4) {
            if WindowLayout::windows_for_view(count) + skip > 4 {
                continue;
            }
            // `skip` windows held by single mappings push the view up.
            let held: Vec<_> = pages[..skip].iter().map(|p| quickmap.map(p)).collect();
            let view = quickmap.map_pages(&pages[..count]);
            let expected = VirtAddr(WINDOW_BASE + 2 * skip * PAGE_SIZE);
            assert_eq!(view.va(), expected, "{count} pages after {skip} windows");
            view.write_u64(view.len() - 8, 7);
            assert!(!faults(quickmap.mmu(), view.va().add(view.len() - 1)));
            assert!(
                faults(quickmap.mmu(), view.va().add(view.len())),
                "one byte past a view of {count} pages (after {skip} windows) must fault"
            );
            assert!(
                faults(quickmap.mmu(), VirtAddr(view.va().0 - 1)),
                "one byte before a view of {count} pages (after {skip} windows) must fault"
            );
            // The single mappings keep their guard pages too.
            for mapping in &held {
                assert!(faults(quickmap.mmu(), mapping.va().add(PAGE_SIZE)));
            }
            drop((view, held));
            assert_eq!(quickmap.windows_in_use(0), 0);
        }
    }
}

/// Catches: an accessor whose bound is a page (or nothing) instead of the view.
#[test]
#[should_panic(
    expected = "quickmap: access outside the view: 2 bytes at offset 12287 run past the \
                12288-byte view (3 page(s)); keep offset + length within the view"
)]
fn an_access_past_the_view_is_refused() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let pages = [high(&machine, 0), high(&machine, 1), high(&machine, 2)];
    let view = quickmap.map_pages(&pages);
    view.read_u16(3 * PAGE_SIZE - 2); // the last two bytes: fine
    view.write(3 * PAGE_SIZE - 1, &[1, 2]);
}

/// Catches: a copy into the view that ends past it (a page is copied whole).
#[test]
#[should_panic(expected = "quickmap: access outside the view: 4096 bytes at offset 4097")]
fn a_copy_past_the_view_is_refused() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let pages = [high(&machine, 0), high(&machine, 1)];
    let view = quickmap.map_pages(&pages);
    view.copy_from(PAGE_SIZE + 1, &quickmap.map(&high(&machine, 2)));
}

/// Catches: views and single mappings that share or overwrite each other's windows,
/// guard pages, or critical sections, whatever order they are made and dropped in.
#[test]
fn views_and_single_mappings_nest_in_any_order() {
    let machine = machine();
    let quickmap = machine.quickmap::<8>();
    let thread = machine.current_thread();
    let pages: Vec<_> = (0..12).map(|i| high(&machine, i)).collect();
    for (i, page) in pages.iter().enumerate() {
        machine.phys_write(page.pa, &pattern(i, 0));
    }
    // A single mapping, a view, another single mapping, another view.
    let a = quickmap.map(&pages[0]);
    let view = quickmap.map_pages(&pages[1..4]);
    let b = quickmap.map(&pages[4]);
    let second = quickmap.map_pages(&pages[5..9]);
    assert_eq!(machine.critical_depth(thread), 4);
    assert_eq!(
        quickmap.windows_in_use(0),
        0b1 | view_windows(&view) | 0b1 << 3 | view_windows(&second)
    );
    assert_eq!(view_windows(&view) & view_windows(&second), 0);
    for (guard, first, count) in [(&view, 1, 3), (&second, 5, 4)] {
        for k in 0..count {
            guard
                .compare(k * PAGE_SIZE, &pattern(first + k, 0))
                .unwrap();
        }
        assert!(faults(quickmap.mmu(), guard.va().add(guard.len())));
    }
    a.compare(0, &pattern(0, 0)).unwrap();
    b.compare(0, &pattern(4, 0)).unwrap();
    // Dropped out of order: the first view before the mappings around it.
    drop(view);
    let third = quickmap.map_pages(&pages[10..12]);
    assert_eq!(
        view_windows(&third),
        0b110,
        "the windows the first view gave back"
    );
    third.compare(PAGE_SIZE, &pattern(11, 0)).unwrap();
    let c = quickmap.map(&pages[9]);
    c.compare(0, &pattern(9, 0)).unwrap();
    drop(a);
    second.compare(3 * PAGE_SIZE, &pattern(8, 0)).unwrap();
    drop(second);
    drop(c);
    drop(third);
    b.compare(0, &pattern(4, 0)).unwrap();
    drop(b);
    assert_eq!(quickmap.windows_in_use(0), 0);
    assert_eq!(
        machine.critical_depth(thread),
        0,
        "every critical section closed"
    );
}

/// Catches: an interrupt handler that maps over a view its thread holds (a view's
/// windows, or its guard pages, handed out again), and a view that leaves a critical
/// section open in the handler.
#[test]
fn an_interrupt_maps_pages_and_views_while_a_view_is_held() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let pages: Vec<_> = (0..6).map(|i| high(&machine, i)).collect();
    for (i, page) in pages.iter().enumerate() {
        machine.phys_write(page.pa, &pattern(i, 0));
    }
    let view = quickmap.map_pages(&pages[..3]); // windows 0 and 1
    machine.interrupt(|| {
        let single = quickmap.map(&pages[3]);
        assert_eq!(
            single.va(),
            VirtAddr(WINDOW_BASE + 4 * PAGE_SIZE),
            "window 2"
        );
        single.write_u64(0, 0xfeed);
        // One window is left: a view of one page fits, of two does not.
        let error = quickmap.try_map_pages(&pages[4..]).unwrap_err();
        assert_eq!(error.windows_needed, 2);
        let small = quickmap.map_pages(&pages[4..5]);
        small.write_u64(8, 0xbeef);
        assert!(faults(quickmap.mmu(), small.va().add(PAGE_SIZE)));
    });
    for k in 0..3 {
        view.compare(k * PAGE_SIZE, &pattern(k, 0))
            .expect("the view is untouched");
    }
    drop(view);
    assert_eq!(quickmap.windows_in_use(0), 0);
    assert_eq!(
        &phys_page(&machine, pages[3].pa)[..8],
        &0xfeed_u64.to_ne_bytes()
    );
    assert_eq!(
        &phys_page(&machine, pages[4].pa)[8..16],
        &0xbeef_u64.to_ne_bytes()
    );
}

/// Catches: a view that takes windows that are free but not adjacent (its pages would
/// not be side by side, or would cover another mapping's window), a refusal that
/// leaves anything behind, and an error that misreports the CPU's windows.
#[test]
fn running_out_of_adjacent_windows_gives_the_error() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    machine.on_cpu(2);
    let thread = machine.current_thread();
    let pages: Vec<_> = (0..8).map(|i| high(&machine, i)).collect();
    let mut held: Vec<_> = pages[..3].iter().map(|p| quickmap.map(p)).collect();
    drop(held.remove(1)); // windows 0 and 2 in use, 1 and 3 free
    assert_eq!(quickmap.windows_in_use(2), 0b101);
    let (counters, stats) = (machine.counters(), quickmap.stats(2));
    let expected = ViewError {
        cpu: 2,
        pages: 2,
        windows_needed: 2,
        in_use: 0b101,
        capacity: 4,
    };
    assert_eq!(quickmap.try_map_pages(&pages[3..5]).err(), Some(expected));
    let run = Run::of(pages[3], 3);
    assert_eq!(
        quickmap.try_map_range(&run).err(),
        Some(ViewError {
            pages: 3,
            ..expected
        })
    );
    assert_eq!(
        expected.to_string(),
        "quickmap: no room for the view: a view of 2 page(s) needs 2 adjacent free windows, but \
         CPU 2 has windows 0b101 of its 4 in use; remove mappings of this CPU and try again, map \
         fewer pages at once, or put the work off to a context that holds none"
    );
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(expected);
    assert_eq!(boxed.to_string(), expected.to_string());
    assert_eq!(quickmap.windows_in_use(2), 0b101);
    assert_eq!(machine.critical_depth(thread), 2, "preemption as it was");
    assert_eq!(
        machine.counters(),
        counters,
        "nothing written or invalidated"
    );
    assert_eq!(quickmap.stats(2), stats, "nothing counted");
    // One page needs one window: the lowest free one.
    let one = quickmap
        .try_map_pages(&pages[3..4])
        .expect("one window is enough");
    assert_eq!(
        one.va(),
        VirtAddr(WINDOW_BASE + 2 * 8 * PAGE_SIZE + 2 * PAGE_SIZE)
    );
}

/// Catches: the panicking variant returning something, or panicking with another rule.
#[test]
#[should_panic(
    expected = "quickmap: no room for the view: a view of 4 page(s) needs 3 adjacent free \
                windows, but CPU 0 has windows 0b10 of its 4 in use; remove mappings of this CPU \
                first, or map fewer pages at once (or use `try_map_pages`/`try_map_range` where \
                running out is expected)"
)]
fn map_pages_without_room_panics_with_the_rule() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let pages: Vec<_> = (0..5).map(|i| high(&machine, i)).collect();
    let _first = quickmap.map(&pages[0]);
    let _second = quickmap.map(&pages[1]);
    drop(_first);
    let _view = quickmap.map_pages(&pages[1..]);
}

/// Catches: a size that could never fit being reported as a condition (or accepted).
#[test]
#[should_panic(
    expected = "quickmap: view size: a view of 8 page(s) cannot be mapped: with 4 windows per \
                CPU a view maps 1 to 7 pages (one of K pages takes K / 2 + 1 adjacent windows); \
                split the work into views of at most that many pages"
)]
fn a_view_larger_than_the_windows_is_refused() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let pages: Vec<_> = (0..8).map(|i| high(&machine, i)).collect();
    let _ = quickmap.try_map_pages(&pages);
}

#[test]
#[should_panic(expected = "quickmap: view size: a view of 0 page(s) cannot be mapped")]
fn an_empty_view_is_refused() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let _ = quickmap.map_pages::<SimPage>(&[]);
}

/// Catches: the largest view not fitting, or reaching past the CPU's last window (into
/// its last guard page, or the next CPU's windows).
#[test]
fn the_largest_view_takes_every_window_and_keeps_the_cpus_last_guard_page() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    machine.on_cpu(1);
    let pages: Vec<_> = (0..7).map(|i| high(&machine, i)).collect();
    let view = quickmap.map_pages(&pages);
    assert_eq!(quickmap.windows_in_use(1), 0b1111);
    let last_window = quickmap.layout().window_va(1, 3);
    assert_eq!(view.va().add(6 * PAGE_SIZE), last_window);
    assert!(faults(quickmap.mmu(), last_window.add(PAGE_SIZE)));
    assert_eq!(quickmap.windows_in_use(0) | quickmap.windows_in_use(2), 0);
    let error = quickmap.try_map(&high(&machine, 8)).unwrap_err();
    assert_eq!(
        error.capacity, 4,
        "a view's windows are in use for single pages too"
    );
}

/// Catches: a removal that leaves an entry present or a translation cached, for any
/// page of the view (a window page or a guard page between windows): the windows,
/// taken again for other pages, must reach the new pages.
#[test]
fn removal_leaves_no_entry_and_no_stale_translation() {
    let machine = machine();
    assert_eq!(reuse_after_view(&machine, machine.mmu()), None);
}

/// Map a view of 5 pages (each page touched, so its translation is cached), drop it,
/// then map 5 other pages into the same windows and guard pages; the first page of the
/// second view that does not read its own contents, if any.
fn reuse_after_view<M: Mmu>(machine: &SimMachine, mmu: M) -> Option<usize> {
    let quickmap: QuickMap<SimPlatform<'_>, M, 4, Strict> =
        machine.quickmap_with(machine.quickmap_config(), machine.platform(), mmu);
    let old: Vec<_> = (0..5).map(|i| high(machine, i)).collect();
    let new: Vec<_> = (5..10).map(|i| high(machine, i)).collect();
    for (i, page) in old.iter().chain(&new).enumerate() {
        machine.phys_write(page.pa, &pattern(i, 3));
    }
    let view = quickmap.map_pages(&old);
    let va = view.va();
    for k in 0..5 {
        view.read_u64(k * PAGE_SIZE);
        assert!(machine.tlb_holds(0, va.add(k * PAGE_SIZE)));
    }
    #[cfg(feature = "stats")]
    let before = quickmap.stats(0);
    drop(view);
    #[cfg(feature = "stats")]
    assert_eq!(quickmap.stats(0).invalidations, before.invalidations + 5);
    for k in 0..5 {
        assert_eq!(
            machine.window_pte(va.add(k * PAGE_SIZE)),
            None,
            "page {k}'s entry"
        );
    }
    let again = quickmap.map_pages(&new);
    assert_eq!(again.va(), va, "the same windows and guard pages");
    (0..5).find(|&k| again.compare(k * PAGE_SIZE, &pattern(5 + k, 3)).is_err())
}

/// Skips the invalidation of one address: a removal that forgets one page of a view.
struct SkipsInvalidationOf<M> {
    inner: M,
    skipped: VirtAddr,
}

// SAFETY: test-only; deliberately breaks promise 2 of `Mmu` for one address.
unsafe impl<M: Mmu> Mmu for SkipsInvalidationOf<M> {
    fn set_window_pte(&self, window: Window, pa: PhysAddr, attribute: MemoryAttribute) {
        self.inner.set_window_pte(window, pa, attribute)
    }
    fn clear_window_pte(&self, window: Window) {
        self.inner.clear_window_pte(window)
    }
    fn invalidate_local(&self, va: VirtAddr) {
        if va != self.skipped {
            self.inner.invalidate_local(va)
        }
    }
    forward_byte_movers!(inner);
}

/// The teeth of the removal test: a backend that skips the invalidation of any one page
/// of the view (a window page or a guard page), or of all, is caught at that page.
#[test]
fn removal_that_skips_one_page_is_caught() {
    for k in 0..5 {
        let machine = machine();
        let skipped = VirtAddr(WINDOW_BASE + k * PAGE_SIZE);
        let broken = SkipsInvalidationOf {
            inner: machine.mmu(),
            skipped,
        };
        assert_eq!(
            reuse_after_view(&machine, broken),
            Some(k),
            "page {k} skipped"
        );
    }
    let machine = machine();
    assert_eq!(
        reuse_after_view(&machine, ForgetsInvalidation(machine.mmu())),
        Some(0)
    );
}

/// Catches: a view that maps every page with the first page's attribute (or with
/// write-back), and a range that does not apply its attribute to every page.
#[test]
fn each_page_keeps_its_memory_attribute() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let pages: Vec<_> = MemoryAttribute::ALL
        .iter()
        .enumerate()
        .map(|(i, &attribute)| SimPage {
            attribute,
            ..high(&machine, 10 + i)
        })
        .collect();
    let view = quickmap.map_pages(&pages);
    for (k, page) in pages.iter().enumerate() {
        assert_eq!(
            machine.window_pte(view.va().add(k * PAGE_SIZE)),
            Some((page.pa, page.attribute)),
            "{:?}",
            page.attribute
        );
    }
    drop(view);
    let run = Run::of(
        SimPage {
            attribute: MemoryAttribute::WriteCombining,
            ..high(&machine, 30)
        },
        4,
    );
    let view = quickmap.map_range(&run);
    for k in 0..4 {
        let pa = PhysAddr(run.start.0 + (k * PAGE_SIZE) as u64);
        assert_eq!(
            machine.window_pte(view.va().add(k * PAGE_SIZE)),
            Some((pa, MemoryAttribute::WriteCombining))
        );
    }
}

/// Catches: a range mapped out of order or short, and a direct-mapped write-back range
/// returned at its direct-map address (which has no guard page after it).
#[test]
fn a_range_maps_its_frames_in_order_through_windows() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    for first in [SimPage::new(2), high(&machine, 40)] {
        let run = Run::of(first, 5);
        for k in 0..5 {
            machine.phys_write(
                PhysAddr(run.start.0 + (k * PAGE_SIZE) as u64),
                &pattern(k, 9),
            );
        }
        let view = quickmap.map_range(&run);
        assert!(view.va().0 >= WINDOW_BASE, "a range always takes windows");
        for k in 0..5 {
            view.compare(k * PAGE_SIZE, &pattern(k, 9)).unwrap();
        }
        assert!(faults(quickmap.mmu(), view.va().add(view.len())));
    }
}

/// Catches: a page of a view that skips the checks of a single page (alignment, the
/// physical limit, a range that wraps around), and a refusal that claims windows or
/// leaves a critical section open before it panics.
#[test]
fn every_page_passes_the_checks_of_a_single_page_before_anything_is_claimed() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let thread = machine.current_thread();
    let refused = |call: &dyn Fn()| {
        let message = catch_unwind(AssertUnwindSafe(call))
            .expect_err("refused")
            .downcast::<String>()
            .map(|m| *m)
            .unwrap_or_default();
        assert_eq!(quickmap.windows_in_use(0), 0, "{message}");
        assert_eq!(machine.critical_depth(thread), 0, "{message}");
        assert_eq!(machine.counters().pte_writes, 0, "{message}");
        message
    };
    let unaligned = SimPage {
        pa: PhysAddr(0x20010),
        attribute: MemoryAttribute::WriteBack,
    };
    let beyond = SimPage::new(96);
    let ok = high(&machine, 0);
    let message = refused(&|| drop(quickmap.map_pages(&[ok, ok, unaligned])));
    assert!(
        message.starts_with("quickmap: unaligned page: physical address 0x20010"),
        "{message}"
    );
    let message = refused(&|| drop(quickmap.try_map_pages(&[ok, beyond])));
    assert!(
        message.starts_with("quickmap: page out of range: physical address 0x60000"),
        "{message}"
    );
    // A run whose last page is past the limit, one that starts unaligned, one that wraps.
    let message = refused(&|| drop(quickmap.map_range(&Run::of(SimPage::new(94), 3))));
    assert!(
        message.starts_with("quickmap: page out of range: physical address 0x60000"),
        "{message}"
    );
    let message = refused(&|| drop(quickmap.map_range(&Run::of(unaligned, 2))));
    assert!(message.starts_with("quickmap: unaligned page"), "{message}");
    let wraps = Run {
        start: PhysAddr(u64::MAX - 2 * PAGE_SIZE as u64 + 1),
        pages: 1,
        attribute: MemoryAttribute::WriteBack,
    };
    let message = refused(&|| drop(quickmap.map_range(&wraps)));
    assert!(
        message.starts_with("quickmap: page out of range"),
        "{message}"
    );
    let message = refused(&|| drop(quickmap.map_range(&Run { pages: 4, ..wraps })));
    assert!(
        message.starts_with("quickmap: page out of range"),
        "{message}"
    );
}

/// Catches: a view that does not pin its thread, that the might-sleep check does not
/// see, or that leaves preemption disabled after it drops.
#[test]
fn a_view_pins_its_thread_until_it_drops() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let thread = machine.current_thread();
    let other = machine.spawn(0);
    let pages = [high(&machine, 0), high(&machine, 1)];
    let view = quickmap.map_pages(&pages);
    assert_eq!(
        machine.critical_depth(thread),
        1,
        "one critical section for the view"
    );
    assert!(
        machine.migrate(thread, 1).is_err(),
        "no migration while viewed"
    );
    assert!(
        machine.switch_to(other).is_err(),
        "no preemption while viewed"
    );
    let asleep = catch_unwind(AssertUnwindSafe(|| quickmap.assert_may_sleep()));
    let message = *asleep.unwrap_err().downcast::<String>().unwrap();
    assert!(
        message.starts_with(
            "quickmap: sleep while mapped: the thread on CPU 0 would block while holding 2"
        ),
        "{message}"
    );
    drop(view);
    assert_eq!(machine.critical_depth(thread), 0);
    quickmap.assert_may_sleep();
    machine
        .migrate(thread, 1)
        .expect("free to move once removed");
}

/// Catches: counters that miss a view's pages, and a removal that flushes the whole TLB
/// (which a strict backend need not have) instead of one invalidation per page.
#[test]
fn a_view_counts_one_entry_and_one_invalidation_per_page() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let pages: Vec<_> = (0..7).map(|i| high(&machine, i)).collect();
    for count in 1..=7 {
        drop(quickmap.map_pages(&pages[..count]));
    }
    let pairs = (1..=7).sum::<u64>();
    let counters = machine.counters();
    assert_eq!(
        (
            counters.pte_writes,
            counters.pte_clears,
            counters.invalidations,
            counters.full_flushes
        ),
        (pairs, pairs, pairs, 0)
    );
    let stats = quickmap.total_stats();
    assert_eq!(
        (
            stats.window_maps,
            stats.invalidations,
            stats.direct_map_hits,
            stats.full_flushes
        ),
        (pairs, pairs, 0, 0)
    );
}

/// Catches: views of one CPU that use, or invalidate, another CPU's windows.
#[test]
fn views_on_different_cpus_are_independent() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let threads: Vec<_> = (0..4).map(|cpu| machine.spawn(cpu)).collect();
    let pages: Vec<_> = (0..16).map(|i| high(&machine, i)).collect();
    let mut views = Vec::new();
    for (cpu, thread) in threads.iter().enumerate() {
        machine.switch_to(*thread).unwrap();
        let view = quickmap.map_pages(&pages[4 * cpu..4 * cpu + 4]);
        assert_eq!(view.va(), quickmap.layout().window_va(cpu, 0));
        view.fill(0, view.len(), cpu as u8 + 1);
        views.push((cpu, view));
    }
    for (cpu, view) in views {
        machine.on_cpu(cpu);
        assert_eq!(
            view.read_u64(3 * PAGE_SIZE),
            u64::from_ne_bytes([cpu as u8 + 1; 8])
        );
        drop(view);
        assert_eq!(quickmap.windows_in_use(cpu), 0);
    }
}

/// Catches: `remove` of an address inside a view (the contract forbids it; with
/// `contract-checks` it is caught before the view is damaged).
#[test]
#[cfg(feature = "contract-checks")]
#[should_panic(
    expected = "quickmap: remove of a foreign address: 0xffffc00000002000 is a window of a view, \
                which is removed as one when its guard drops"
)]
fn remove_of_a_window_of_a_view_is_refused() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let pages = [
        high(&machine, 0),
        high(&machine, 1),
        high(&machine, 2),
        high(&machine, 3),
    ];
    let view = quickmap.map_pages(&pages);
    // SAFETY: none: breaks `remove`'s contract on purpose, to show it is caught.
    unsafe { quickmap.remove(view.va().add(2 * PAGE_SIZE)) };
}

/// The window past an even view is held, unmapped: removing it is refused too.
#[test]
#[cfg(feature = "contract-checks")]
#[should_panic(
    expected = "quickmap: remove of a foreign address: 0xffffc00000002000 is a window of a view"
)]
fn remove_of_the_window_past_an_even_view_is_refused() {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let pages = [high(&machine, 0), high(&machine, 1)];
    let view = quickmap.map_pages(&pages);
    // SAFETY: none: breaks `remove`'s contract on purpose, to show it is caught.
    unsafe { quickmap.remove(view.va().add(2 * PAGE_SIZE)) };
}

/// One step of a random program on CPU 0 of a strict instance with 4 windows.
#[derive(Clone, Debug)]
enum Op {
    /// `try_map_pages` of these high pages.
    View(Vec<usize>),
    /// `try_map_range` of `count` high pages from `first`.
    Range(usize, usize),
    /// `try_map` of a high page.
    Single(usize),
    /// Write `len` bytes of `byte` at `offset` (modulo its length) of the `n`-th guard.
    Write {
        n: usize,
        offset: usize,
        len: usize,
        byte: u8,
    },
    /// Drop the `n`-th guard (modulo the live count).
    Drop(usize),
    /// An interrupt maps a view of these pages, writes `byte` across it, and drops it.
    Interrupt(Vec<usize>, u8),
}

const PROGRAM_PAGES: usize = 12;

fn program_op() -> impl Strategy<Value = Op> {
    let page = 0..PROGRAM_PAGES;
    prop_oneof![
        3 => prop::collection::vec(page.clone(), 1..=7).prop_map(Op::View),
        1 => (page.clone(), 1..=5usize).prop_map(|(first, count)| Op::Range(first.min(PROGRAM_PAGES - count), count)),
        2 => page.clone().prop_map(Op::Single),
        3 => (any::<usize>(), 0..3 * PAGE_SIZE, 1..PAGE_SIZE + 64, any::<u8>())
            .prop_map(|(n, offset, len, byte)| Op::Write { n, offset, len, byte }),
        3 => any::<usize>().prop_map(Op::Drop),
        1 => (prop::collection::vec(page, 1..=3), any::<u8>()).prop_map(|(pages, byte)| Op::Interrupt(pages, byte)),
    ]
}

/// A live guard of a program: a view, or a single mapping, and its pages in order.
enum Live<'q, 'p> {
    View(View<'q, 'p, SimPlatform<'q>, SimMmu<'q>, 4>),
    Single(quickmap::Mapping<'q, 'p, SimPlatform<'q>, SimMmu<'q>, 4>),
}

impl Live<'_, '_> {
    fn va(&self) -> VirtAddr {
        match self {
            Live::View(view) => view.va(),
            Live::Single(mapping) => mapping.va(),
        }
    }
    fn len(&self) -> usize {
        match self {
            Live::View(view) => view.len(),
            Live::Single(_) => PAGE_SIZE,
        }
    }
    fn write(&self, offset: usize, bytes: &[u8]) {
        match self {
            Live::View(view) => view.write(offset, bytes),
            Live::Single(mapping) => mapping.write(offset, bytes),
        }
    }
    fn windows(&self) -> u32 {
        match self {
            Live::View(view) => view_windows(view),
            Live::Single(mapping) => 1 << ((mapping.va().0 - WINDOW_BASE) / (2 * PAGE_SIZE)),
        }
    }
}

/// Whether the CPU's windows `in_use` leave a run of `count` adjacent free ones.
fn has_room(in_use: u32, count: usize) -> bool {
    (0..=4 - count.min(4)).any(|first| in_use & ((1 << count) - 1) << first == 0) && count <= 4
}

/// Write `bytes` at `offset` of the run of `pages` in the model of memory.
fn model_write(model: &mut [Vec<u8>], pages: &[usize], offset: usize, bytes: &[u8]) {
    for (i, byte) in bytes.iter().enumerate() {
        let at = offset + i;
        model[pages[at / PAGE_SIZE]][at % PAGE_SIZE] = *byte;
    }
}

fn run_program(ops: &[Op]) -> Result<(), TestCaseError> {
    let machine = machine();
    let quickmap = machine.quickmap::<4>();
    let thread = machine.current_thread();
    let sim_pages: Vec<_> = (0..PROGRAM_PAGES).map(|i| high(&machine, i)).collect();
    let runs: Vec<Vec<Run>> = (0..PROGRAM_PAGES)
        .map(|first| {
            (0..=5)
                .map(|count| Run::of(sim_pages[first], count))
                .collect()
        })
        .collect();
    let mut model: Vec<Vec<u8>> = (0..PROGRAM_PAGES).map(|i| pattern(i, 0)).collect();
    for (page, contents) in sim_pages.iter().zip(&model) {
        machine.phys_write(page.pa, contents);
    }
    let mut live: Vec<(Live<'_, '_>, Vec<usize>)> = Vec::new();
    for op in ops {
        let in_use = quickmap.windows_in_use(0);
        match op {
            Op::View(pages) => {
                let chosen: Vec<SimPage> = pages.iter().map(|&p| sim_pages[p]).collect();
                let chosen: &'static [SimPage] = Box::leak(chosen.into_boxed_slice());
                let room = has_room(in_use, WindowLayout::windows_for_view(pages.len()));
                match quickmap.try_map_pages(chosen) {
                    Ok(view) => {
                        prop_assert!(room, "a view of {} pages in {in_use:#b}", pages.len());
                        live.push((Live::View(view), pages.clone()));
                    }
                    Err(error) => {
                        prop_assert!(!room, "refused with room: {error}");
                        prop_assert_eq!(error.in_use, in_use);
                    }
                }
            }
            Op::Range(first, count) => {
                let room = has_room(in_use, WindowLayout::windows_for_view(*count));
                match quickmap.try_map_range(&runs[*first][*count]) {
                    Ok(view) => {
                        prop_assert!(room);
                        live.push((Live::View(view), (*first..first + count).collect()));
                    }
                    Err(_) => prop_assert!(!room),
                }
            }
            Op::Single(page) => match quickmap.try_map(&sim_pages[*page]) {
                Ok(mapping) => live.push((Live::Single(mapping), vec![*page])),
                Err(_) => prop_assert_eq!(in_use, 0b1111),
            },
            Op::Write {
                n,
                offset,
                len,
                byte,
            } => {
                if let Some((guard, pages)) = live.get(n % live.len().max(1)) {
                    let offset = offset % guard.len();
                    let len = (*len).min(guard.len() - offset);
                    let bytes = vec![*byte; len];
                    guard.write(offset, &bytes);
                    model_write(&mut model, pages, offset, &bytes);
                }
            }
            Op::Drop(n) => {
                if !live.is_empty() {
                    let (guard, _) = live.remove(n % live.len());
                    let (va, len) = (guard.va(), guard.len());
                    drop(guard);
                    for k in 0..len / PAGE_SIZE {
                        prop_assert!(!machine.tlb_holds(0, va.add(k * PAGE_SIZE)));
                        prop_assert_eq!(machine.window_pte(va.add(k * PAGE_SIZE)), None);
                    }
                }
            }
            Op::Interrupt(pages, byte) => {
                let chosen: Vec<SimPage> = pages.iter().map(|&p| sim_pages[p]).collect();
                let room = has_room(in_use, WindowLayout::windows_for_view(pages.len()));
                let wrote = machine.interrupt(|| match quickmap.try_map_pages(&chosen) {
                    Ok(view) => {
                        view.fill(0, view.len(), *byte);
                        true
                    }
                    Err(_) => false,
                });
                prop_assert_eq!(wrote, room);
                if wrote {
                    for &page in pages {
                        model[page].fill(*byte);
                    }
                }
            }
        }
        // The invariants: the windows in use are exactly the live guards'; no two
        // guards share a window; every guard reads the model through each of its pages,
        // and the page after it is unmapped.
        let mut claimed = 0;
        for (guard, pages) in &live {
            prop_assert_eq!(claimed & guard.windows(), 0, "two guards share a window");
            claimed |= guard.windows();
            for (k, &page) in pages.iter().enumerate() {
                let va = guard.va().add(k * PAGE_SIZE);
                prop_assert_eq!(
                    machine.window_pte(va).map(|(pa, _)| pa),
                    Some(sim_pages[page].pa)
                );
                let mut bytes = vec![0; PAGE_SIZE];
                // SAFETY: `va` maps `page` while its guard lives.
                unsafe { quickmap.mmu().read_bytes(va, &mut bytes) };
                prop_assert!(bytes == model[page], "page {} through {:?}", page, va);
            }
            prop_assert_eq!(
                machine.window_pte(guard.va().add(guard.len())),
                None,
                "guard page"
            );
        }
        prop_assert_eq!(quickmap.windows_in_use(0), claimed);
        prop_assert_eq!(machine.critical_depth(thread), live.len() as u32);
    }
    drop(live);
    prop_assert_eq!(quickmap.windows_in_use(0), 0);
    prop_assert_eq!(machine.critical_depth(thread), 0);
    for page in 0..8 {
        let va = VirtAddr(WINDOW_BASE + page * PAGE_SIZE);
        prop_assert_eq!(machine.window_pte(va), None);
        prop_assert!(!machine.tlb_holds(0, va), "a stale translation of {:?}", va);
    }
    for (page, contents) in sim_pages.iter().zip(&model) {
        prop_assert!(phys_page(&machine, page.pa) == *contents);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Random programs of views (of scattered pages and of ranges), single mappings,
    /// writes across page boundaries, drops in any order and interrupts that make views
    /// of their own, checked against a model of memory and of the windows.
    #[test]
    fn random_programs_of_views_and_mappings_keep_every_guard_page(
        ops in prop::collection::vec(program_op(), 1..40)
    ) {
        run_program(&ops)?;
    }
}
