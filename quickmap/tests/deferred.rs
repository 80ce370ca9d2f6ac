//! Deferred invalidation on the simulated machine: reuse of a window that still maps
//! the page, one local full flush per pool of windows, and the trade-off (a removed
//! address reaches its page until the flush, and faults after it).

mod common;

use common::{pattern, phys_page};
use quickmap::sim::{SimConfig, SimMachine, SimPage};
use quickmap::{MemoryAttribute, Mmu, VirtAddr, PAGE_SIZE};

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
    let pool: Vec<SimPage> = (0..4)
        .map(|i| SimPage::high_memory(&machine, i))
        .collect();
    let mut addresses = Vec::new();
    for round in 0..50u64 {
        for (index, page) in pool.iter().enumerate() {
            let mapping = quickmap.map(page);
            mapping.write_u64(0, round);
            if round == 0 {
                addresses.push(mapping.va());
            } else {
                assert_eq!(mapping.va(), addresses[index], "page {index} keeps its window");
            }
        }
    }
    let counters = machine.counters();
    assert_eq!(counters.pte_writes, 4, "one entry write per page, then none");
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
    assert_eq!(counters.full_flushes, 3200 / 32 - 1, "the first 32 windows start clean");
    assert_eq!(counters.pte_writes, 3200);
}

#[test]
fn a_removed_window_reaches_its_page_until_the_flush_and_faults_after() {
    let machine = machine();
    let quickmap = machine.quickmap_deferred::<32>();
    let page = SimPage::high_memory(&machine, 0);
    machine.phys_write(page.pa, &pattern(0, 1));
    let va = quickmap.map(&page).va();
    assert_eq!(read_byte(quickmap.mmu(), va), Ok(pattern(0, 1)[0]), "stale until the flush");
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
