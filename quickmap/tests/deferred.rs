//! Deferred invalidation on the simulated machine: reuse of a window that still maps
//! the page, one local full flush per pool of windows, and the trade-off (a removed
//! address reaches its page until the flush, and faults after it).

mod common;

use std::cell::Cell;

use common::{pattern, phys_page, with_interrupt_controller, Hook, MidPairInterrupts, Phase};
use quickmap::sim::{SimConfig, SimMachine, SimPage};
use quickmap::{Deferred, MemoryAttribute, Mmu, Platform, QuickMap, VirtAddr, PAGE_SIZE};

fn machine() -> SimMachine {
    SimMachine::new(SimConfig {
        cpus: 2,
        phys_pages: 256,
        direct_map_pages: 16,
    })
}

fn read_byte(mmu: &impl Mmu, va: VirtAddr) -> Result<u8, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut byte = [0u8];
        // SAFETY: the simulated MMU turns a missing translation into a panic.
        unsafe { mmu.read_bytes(va, &mut byte) };
        byte[0]
    }))
    .map_err(|panic| *panic.downcast::<String>().unwrap())
}

#[test]
fn a_recurring_page_takes_its_window_back_with_no_entry_write() {
    let machine = machine();
    let quickmap = machine.quickmap_deferred::<32>();
    let pool: Vec<SimPage> = (0..4).map(|i| SimPage::high_memory(&machine, i)).collect();
    let mut addresses = Vec::new();
    for round in 0..50u64 {
        for (index, page) in pool.iter().enumerate() {
            let mapping = quickmap.map(page);
            mapping.write_u64(0, round);
            if round == 0 {
                addresses.push(mapping.va());
            } else {
                assert_eq!(
                    mapping.va(),
                    addresses[index],
                    "page {index} keeps its window"
                );
            }
        }
    }
    let counters = machine.counters();
    assert_eq!(
        counters.pte_writes, 4,
        "one entry write per page, then none"
    );
    assert_eq!((counters.invalidations, counters.full_flushes), (0, 0));
    let stats = quickmap.total_stats();
    assert_eq!((stats.window_maps, stats.window_reuses), (4, 196));
    for page in &pool {
        assert_eq!(phys_page(&machine, page.pa)[..8], 49u64.to_le_bytes());
    }
}

#[test]
fn distinct_pages_pay_one_full_flush_per_pool_of_windows() {
    let machine = machine();
    let quickmap = machine.quickmap_deferred::<32>();
    let pages: Vec<SimPage> = (0..200)
        .map(|i| SimPage::high_memory(&machine, i))
        .collect();
    for (index, page) in pages.iter().cycle().take(3200).enumerate() {
        let mapping = quickmap.map(page);
        mapping.write_u64(8, index as u64);
        assert_eq!(mapping.read_u64(8), index as u64);
    }
    let counters = machine.counters();
    assert_eq!(counters.invalidations, 0);
    assert_eq!(
        counters.full_flushes,
        3200 / 32 - 1,
        "the first 32 windows start clean"
    );
    assert_eq!(counters.pte_writes, 3200);
}

#[test]
fn a_removed_window_reaches_its_page_until_the_flush_and_faults_after() {
    let machine = machine();
    let quickmap = machine.quickmap_deferred::<32>();
    let page = SimPage::high_memory(&machine, 0);
    machine.phys_write(page.pa, &pattern(0, 1));
    let va = quickmap.map(&page).va();
    assert_eq!(
        read_byte(quickmap.mmu(), va),
        Ok(pattern(0, 1)[0]),
        "stale until the flush"
    );
    quickmap.flush_local();
    let fault = read_byte(quickmap.mmu(), va).unwrap_err();
    assert!(fault.contains("page fault"), "{fault}");
    assert_eq!(machine.window_pte(va), None);
    assert_eq!(quickmap.total_stats().full_flushes, 1);
}

#[test]
fn windows_of_other_memory_types_are_invalidated_at_remove() {
    let machine = machine();
    let quickmap = machine.quickmap_deferred::<32>();
    for attribute in &MemoryAttribute::ALL[1..] {
        let page = SimPage {
            attribute: *attribute,
            ..SimPage::high_memory(&machine, 3)
        };
        let va = quickmap.map(&page).va();
        assert!(
            read_byte(quickmap.mmu(), va).is_err(),
            "{attribute:?}: no stale alias after remove"
        );
        assert_eq!(machine.window_pte(va), None);
    }
    assert_eq!(machine.counters().invalidations, 5);
    assert_eq!(machine.counters().full_flushes, 0);
}

#[test]
fn a_page_entered_with_another_attribute_gets_another_window() {
    let machine = machine();
    let quickmap = machine.quickmap_deferred::<32>();
    let page = SimPage::high_memory(&machine, 5);
    let write_back = quickmap.map(&page).va();
    let combining = SimPage {
        attribute: MemoryAttribute::WriteCombining,
        ..page
    };
    let mapping = quickmap.map(&combining);
    assert_ne!(mapping.va(), write_back);
    assert_eq!(
        machine.window_pte(mapping.va()).map(|(_, a)| a),
        Some(MemoryAttribute::WriteCombining)
    );
    assert_eq!(mapping.as_mut_ptr() as usize % PAGE_SIZE, 0);
}

/// The handler of the interrupts below: map 40 distinct pages one after another (more
/// than the clean windows left, so the pool flushes), then hold three and
/// `flush_local` with them mapped; every mapping must reach its page.
fn interrupt_storm<P: Platform, M: Mmu>(
    machine: &SimMachine,
    quickmap: &QuickMap<P, M, 32, Deferred>,
    first_page: usize,
) {
    let flushes = quickmap.total_stats().full_flushes;
    for index in first_page..first_page + 40 {
        let page = SimPage::high_memory(machine, index);
        let mapping = quickmap.map(&page);
        mapping.write_u64(16, index as u64);
        assert_eq!(
            mapping.read_u64(16),
            index as u64,
            "interrupt's page {index}"
        );
    }
    let pages: Vec<SimPage> = (0..3)
        .map(|i| SimPage::high_memory(machine, first_page + 40 + i))
        .collect();
    let held: Vec<_> = pages.iter().map(|page| quickmap.map(page)).collect();
    quickmap.flush_local();
    for (mapping, page) in held.iter().zip(&pages) {
        assert_eq!(
            machine.window_pte(mapping.va()),
            Some((page.pa, page.attribute))
        );
        mapping.write_u64(24, 0x1f);
    }
    drop(held);
    assert!(
        quickmap.total_stats().full_flushes >= flushes + 2,
        "the interrupt flushed on its own and with flush_local"
    );
}

/// Which step of the thread an interrupt arrives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// The enter of the thread's page.
    EnterOfKept,
    /// Enters while the thread holds windows, one of which runs a flush.
    EntersThatFlush,
    /// The remove of an uncached page.
    UncachedRemove,
    /// Pairs while the thread holds windows, which run flushes.
    PairsThatFlush,
}

#[test]
fn interrupts_that_flush_in_the_middle_of_a_pair_leave_the_threads_mapping_intact() {
    let places = [
        (Hook::SetPte, Phase::Before, Step::EnterOfKept),
        (Hook::SetPte, Phase::After, Step::EnterOfKept),
        (Hook::ClearPte, Phase::Before, Step::EntersThatFlush),
        (Hook::ClearPte, Phase::After, Step::EntersThatFlush),
        (Hook::InvalidateAll, Phase::Before, Step::EntersThatFlush),
        (Hook::InvalidateAll, Phase::After, Step::EntersThatFlush),
        (Hook::ClearPte, Phase::Before, Step::UncachedRemove),
        (Hook::InvalidateLocal, Phase::Before, Step::UncachedRemove),
        (Hook::InvalidateLocal, Phase::After, Step::UncachedRemove),
        (Hook::ClearPte, Phase::After, Step::PairsThatFlush),
        (Hook::InvalidateAll, Phase::Before, Step::PairsThatFlush),
    ];
    for (hook, phase, step) in places {
        let place = format!("{hook:?} {phase:?} in {step:?}");
        let machine = machine();
        let quickmap: QuickMap<_, _, 32, Deferred> = machine.quickmap_with(
            machine.quickmap_config(),
            machine.platform(),
            MidPairInterrupts(machine.mmu()),
        );
        let kept = SimPage::high_memory(&machine, 0);
        machine.phys_write(kept.pa, &pattern(kept.pa.0 as usize, 1));
        let uncached = SimPage {
            attribute: MemoryAttribute::Uncacheable,
            ..SimPage::high_memory(&machine, 1)
        };
        let held_pages: Vec<SimPage> = (30..40)
            .map(|index| SimPage::high_memory(&machine, index))
            .collect();
        let armed = Cell::new(false);
        let fired = Cell::new(0);
        let controller = |at_hook, at_phase| {
            if armed.get() && (at_hook, at_phase) == (hook, phase) {
                armed.set(false);
                fired.set(fired.get() + 1);
                machine.interrupt(|| interrupt_storm(&machine, &quickmap, 100));
            }
        };
        // Arm the interrupt for the thread's step `now` only.
        let during = |now: Step, run: &mut dyn FnMut()| {
            armed.set(now == step);
            run();
            armed.set(false);
        };
        with_interrupt_controller(&controller, || {
            // Use up most clean windows, so that the thread's enters below flush.
            for index in 2..30 {
                quickmap
                    .map(&SimPage::high_memory(&machine, index))
                    .write_u64(0, 1);
            }
            let mut mapping = None;
            during(Step::EnterOfKept, &mut || {
                mapping = Some(quickmap.map(&kept))
            });
            let mapping = mapping.unwrap();
            let mut held = Vec::new();
            during(Step::EntersThatFlush, &mut || {
                held = held_pages.iter().map(|page| quickmap.map(page)).collect();
            });
            during(Step::UncachedRemove, &mut || drop(quickmap.map(&uncached)));
            during(Step::PairsThatFlush, &mut || {
                for index in 40..80 {
                    quickmap
                        .map(&SimPage::high_memory(&machine, index))
                        .write_u64(0, 2);
                }
            });
            assert_eq!(fired.get(), 1, "{place}: the interrupt arrived");

            assert_eq!(
                machine.window_pte(mapping.va()),
                Some((kept.pa, MemoryAttribute::WriteBack)),
                "{place}"
            );
            assert!(
                mapping.compare(0, &pattern(kept.pa.0 as usize, 1)).is_ok(),
                "{place}: the thread's page through its window"
            );
            mapping.write_u64(8, 0xfeed);
            for (mapping, page) in held.iter().zip(&held_pages) {
                assert_eq!(
                    machine.window_pte(mapping.va()).map(|(pa, _)| pa),
                    Some(page.pa),
                    "{place}"
                );
                assert_eq!(mapping.read_u64(0), 0, "{place}");
                mapping.write_u64(0, 3);
            }
            drop(held);
            drop(mapping);
        });
        assert_eq!(
            phys_page(&machine, kept.pa)[8..16],
            0xfeedu64.to_le_bytes(),
            "{place}: the thread's write reached its page"
        );
        for page in &held_pages {
            assert_eq!(
                phys_page(&machine, page.pa)[..8],
                3u64.to_le_bytes(),
                "{place}"
            );
        }
        assert!(quickmap.total_stats().full_flushes >= 3, "{place}");
        assert_eq!(quickmap.windows_in_use(0), 0);
        assert_eq!(machine.critical_depth(machine.current_thread()), 0);
    }
}

/// An interrupt that uses a window right after a flush's TLB flush (before the flush
/// is done with its bookkeeping) leaves that window dirty although the flush counted it
/// clean; the next flush clears its entry, and an interrupt that arrives before that
/// flush's TLB flush must not enter it yet: its old translation is still cached.
#[test]
fn a_window_used_inside_a_flush_is_not_entered_again_before_the_next_flush_is_done() {
    let machine = machine();
    let quickmap: QuickMap<_, _, 32, Deferred> = machine.quickmap_with(
        machine.quickmap_config(),
        machine.platform(),
        MidPairInterrupts(machine.mmu()),
    );
    let (first, second) = (
        SimPage::high_memory(&machine, 0),
        SimPage::high_memory(&machine, 1),
    );
    machine.phys_write(first.pa, &pattern(first.pa.0 as usize, 0));
    machine.phys_write(second.pa, &pattern(second.pa.0 as usize, 0));
    let script = [
        (Phase::After, first),   // inside the first flush, after its TLB flush
        (Phase::Before, second), // inside the second, before its TLB flush
    ];
    let next = Cell::new(0);
    let controller = |hook, phase| {
        let Some(&(at_phase, page)) = script.get(next.get()) else {
            return;
        };
        if (hook, phase) == (Hook::InvalidateAll, at_phase) {
            next.set(next.get() + 1);
            machine.interrupt(|| {
                let mapping = quickmap.map(&page);
                assert!(
                    mapping.compare(0, &pattern(page.pa.0 as usize, 0)).is_ok(),
                    "{:?} read through {} is another page",
                    page.pa,
                    mapping.va()
                );
                assert_eq!(
                    machine.tlb_entry(0, mapping.va()).map(|(pa, _)| pa),
                    Some(page.pa)
                );
            });
        }
    };
    with_interrupt_controller(&controller, || {
        quickmap.flush_local();
        quickmap.flush_local();
    });
    assert_eq!(next.get(), 2, "both interrupts arrived");
}

#[test]
fn flush_local_keeps_the_windows_in_use_mapped() {
    let machine = machine();
    let quickmap = machine.quickmap_deferred::<32>();
    let held_pages: Vec<SimPage> = (0..3).map(|i| SimPage::high_memory(&machine, i)).collect();
    for page in &held_pages {
        machine.phys_write(page.pa, &pattern(page.pa.0 as usize, 2));
    }
    let held: Vec<_> = held_pages.iter().map(|page| quickmap.map(page)).collect();
    let removed: Vec<VirtAddr> = (10..20)
        .map(|i| quickmap.map(&SimPage::high_memory(&machine, i)).va())
        .collect();
    assert!(
        removed.iter().all(|&va| machine.window_pte(va).is_some()),
        "left mapped"
    );

    quickmap.flush_local();

    for (mapping, page) in held.iter().zip(&held_pages) {
        assert_eq!(
            machine.window_pte(mapping.va()),
            Some((page.pa, page.attribute))
        );
        assert!(mapping.compare(0, &pattern(page.pa.0 as usize, 2)).is_ok());
        mapping.write_u64(0, 0xabcd);
        assert_eq!(phys_page(&machine, page.pa)[..8], 0xabcdu64.to_le_bytes());
    }
    for &va in &removed {
        assert_eq!(machine.window_pte(va), None, "free windows are cleared");
        assert!(!machine.tlb_holds(0, va), "and no longer cached");
    }
    assert_eq!(quickmap.windows_in_use(0), 0b111);
    let stats = quickmap.total_stats();
    assert_eq!((stats.full_flushes, stats.invalidations), (1, 0));

    // Removed after the flush, the held windows are left mapped for the next one.
    let windows: Vec<VirtAddr> = held.iter().map(|mapping| mapping.va()).collect();
    drop(held);
    assert!(windows.iter().all(|&va| machine.window_pte(va).is_some()));
    quickmap.flush_local();
    assert!(windows.iter().all(|&va| machine.window_pte(va).is_none()));
}

fn panic_message(run: impl FnOnce()) -> String {
    let panic =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).expect_err("expected a panic");
    *panic.downcast::<String>().unwrap()
}

#[test]
fn a_deferred_instance_refuses_a_33rd_window() {
    let machine = machine();
    let quickmap = machine.quickmap_deferred::<32>();
    let pages: Vec<SimPage> = (0..64).map(|i| SimPage::high_memory(&machine, i)).collect();
    // Dirty windows first, so that filling all 32 runs a flush on the way.
    for page in &pages[32..52] {
        quickmap.map(page).write_u64(0, 1);
    }
    let held: Vec<_> = pages[..32].iter().map(|page| quickmap.map(page)).collect();
    assert_eq!(quickmap.windows_in_use(0), u32::MAX);
    assert_eq!(quickmap.total_stats().full_flushes, 1);
    let expected = "quickmap: nesting beyond capacity: CPU 0 already holds all 32 of its windows";
    // A new page, and a page that a window in use maps already (never shared).
    for page in [&pages[40], &pages[5]] {
        let message = panic_message(|| drop(quickmap.map(page)));
        assert!(message.starts_with(expected), "{message}");
    }
    assert_eq!(
        quickmap.windows_in_use(0),
        u32::MAX,
        "the held windows stay"
    );
    for (mapping, page) in held.iter().zip(&pages) {
        assert_eq!(
            machine.window_pte(mapping.va()).map(|(pa, _)| pa),
            Some(page.pa)
        );
    }
}

#[test]
fn at_most_one_invalidating_operation_per_32_pairs_over_distinct_pages() {
    let machine = machine();
    let quickmap = machine.quickmap_deferred::<32>();
    let pages: Vec<SimPage> = (0..240)
        .map(|i| SimPage::high_memory(&machine, i))
        .collect();
    // Both CPUs, single pairs and the two pairs of a page copy, over distinct pages.
    for cpu in 0..2 {
        machine.on_cpu(cpu);
        for round in 0..10 {
            for pair in pages.chunks(2) {
                quickmap.copy_page(&pair[0], &pair[1]);
                quickmap.map(&pair[round % 2]).write_u64(0, round as u64);
            }
        }
    }
    let stats = quickmap.total_stats();
    let pairs = stats.window_maps + stats.window_reuses;
    assert_eq!(pairs, 2 * 10 * 120 * 3);
    assert_eq!(stats.invalidations, 0);
    assert!(
        stats.invalidating_operations() * 32 <= pairs,
        "{} invalidating operations for {pairs} pairs",
        stats.invalidating_operations()
    );
    let counters = machine.counters();
    assert_eq!(
        counters.invalidations + counters.full_flushes,
        stats.invalidating_operations(),
        "what the hardware saw"
    );
}

/// A window invalidated at remove (a page that is not write-back) is clean at once and
/// is marked so: a write-combining page mapped again and again never runs the pool
/// dry, so it never costs a full flush.
#[test]
fn windows_invalidated_at_remove_are_taken_again_without_a_flush() {
    let machine = machine();
    let quickmap = machine.quickmap_deferred::<32>();
    let page = SimPage {
        attribute: MemoryAttribute::WriteCombining,
        ..SimPage::high_memory(&machine, 7)
    };
    // A write-back page held throughout keeps window 0, so the loop works in another.
    let held = SimPage::high_memory(&machine, 8);
    let holding = quickmap.map(&held);
    for round in 0..100u64 {
        quickmap.map(&page).write_u64(0, round);
    }
    drop(holding);
    let counters = machine.counters();
    assert_eq!(
        (counters.invalidations, counters.full_flushes),
        (100, 0),
        "one invalidation per remove, and no flush"
    );
    assert_eq!(phys_page(&machine, page.pa)[..8], 99u64.to_le_bytes());
}
