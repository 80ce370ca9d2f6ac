//! Local mappings on the simulated machine: they survive preemption at the same
//! address, keep their thread on its CPU, cost a switch nothing when none is held, and
//! every rule of theirs panics with its name.

mod common;

#[cfg(feature = "contract-checks")]
use common::MigratesAnyway;
use common::{SkipsSwitchIn, SkipsSwitchOut};
use quickmap::sim::{
    SchedError, SimConfig, SimMachine, SimMmu, SimPage, SimPlatform, ThreadId, DIRECT_MAP_BASE,
    LOCAL_BASE, LOCAL_SLOTS,
};
use quickmap::{
    LocalEnterError, LocalMapping, LocalQuickMap, LocalStats, MemoryAttribute, VirtAddr, PAGE_SIZE,
};

fn machine() -> SimMachine {
    SimMachine::new(SimConfig::default())
}

/// A high-memory page that lives as long as the test (simulated memory never goes).
fn high(machine: &SimMachine, index: usize) -> &'static SimPage {
    Box::leak(Box::new(SimPage::high_memory(machine, index)))
}

/// Two threads of CPU 0, spawned (thread 0 keeps running there until a switch).
fn two_threads(machine: &SimMachine) -> (ThreadId, ThreadId) {
    (machine.spawn(0), machine.spawn(0))
}

#[test]
fn two_threads_share_slot_addresses_and_each_reads_its_own_page() {
    let machine = machine();
    let local = machine.local_quickmap();
    let (a, b) = two_threads(&machine);
    let pages: Vec<SimPage> = (0..4).map(|i| SimPage::high_memory(&machine, i)).collect();

    machine.switch_to_with(a, &local).unwrap();
    let a0 = local.map(&pages[0]);
    let a1 = local.map(&pages[1]);
    a0.fill(0, PAGE_SIZE, 0xa0);
    a1.fill(0, PAGE_SIZE, 0xa1);
    machine.switch_to_with(b, &local).unwrap();
    let b0 = local.map(&pages[2]);
    let b1 = local.map(&pages[3]);
    assert_eq!(
        (b0.va(), b1.va()),
        (a0.va(), a1.va()),
        "the same slots of CPU 0"
    );
    b0.fill(0, PAGE_SIZE, 0xb0);
    b1.fill(0, PAGE_SIZE, 0xb1);
    // Back and forth, each always reading its own pages through the same addresses.
    for round in 0..100u8 {
        machine.switch_to_with(a, &local).unwrap();
        assert_eq!(a0.compare(0, &[0xa0; PAGE_SIZE]), Ok(()), "round {round}");
        assert_eq!(a1.compare(PAGE_SIZE - 1, &[0xa1]), Ok(()), "round {round}");
        machine.switch_to_with(b, &local).unwrap();
        assert_eq!(b0.compare(0, &[0xb0; PAGE_SIZE]), Ok(()), "round {round}");
        assert_eq!(b1.compare(0, &[0xb1]), Ok(()), "round {round}");
    }
    drop((b0, b1));
    machine.switch_to_with(a, &local).unwrap();
    // Released in the order made, not LIFO.
    drop(a0);
    drop(a1);
    for slot in 0..LOCAL_SLOTS {
        let va = local.layout().window_va(0, slot);
        assert_eq!(machine.window_pte(va), None);
        assert!(!machine.tlb_holds(0, va), "slot {slot} still cached");
    }
}

#[test]
fn the_slots_are_a_region_of_their_own_with_a_guard_page_after_each() {
    let machine = machine();
    let local = machine.local_quickmap();
    let layout = local.layout();
    assert_eq!(layout.base, VirtAddr(LOCAL_BASE));
    assert_eq!(layout.window_stride, 2 * PAGE_SIZE);
    let pages: Vec<SimPage> = (0..LOCAL_SLOTS)
        .map(|i| SimPage::high_memory(&machine, i))
        .collect();
    let held: Vec<_> = pages.iter().map(|page| local.map(page)).collect();
    for (slot, mapping) in held.iter().enumerate() {
        assert_eq!(mapping.va(), layout.window_va(0, slot));
        assert_eq!(
            machine.window_pte(mapping.va().add(PAGE_SIZE)),
            None,
            "the guard page after slot {slot}"
        );
    }
    // The pinned instance's windows are untouched.
    let quickmap = machine.quickmap::<4>();
    assert_eq!(quickmap.windows_in_use(0), 0);
    let pinned = quickmap.map(&pages[0]);
    assert_ne!(pinned.va(), held[0].va());
}

#[test]
fn a_thread_holding_local_mappings_may_be_preempted_but_not_migrated() {
    let machine = machine();
    let local = machine.local_quickmap();
    let (a, b) = two_threads(&machine);
    let page = SimPage::high_memory(&machine, 0);
    machine.switch_to_with(a, &local).unwrap();
    let mapping = local.map(&page);
    assert_eq!(machine.migration_disabled(a), 1);
    assert_eq!(machine.critical_depth(a), 0, "preemption stays enabled");
    machine.switch_to_with(b, &local).unwrap();
    assert_eq!(
        machine.migrate_with(a, 2, &local),
        Err(SchedError::MigrationDisabled { thread: a, cpu: 0 })
    );
    machine.switch_to_with(a, &local).unwrap();
    let second = local.map(high(&machine, 1));
    assert_eq!(
        machine.migration_disabled(a),
        1,
        "one migrate_disable for all the thread holds"
    );
    drop(mapping);
    assert!(machine.migrate_with(a, 2, &local).is_err());
    drop(second);
    assert_eq!(machine.migration_disabled(a), 0);
    machine.migrate_with(a, 2, &local).unwrap();
    assert_eq!(machine.cpu_of(a), 2);
    // On its new CPU it maps at that CPU's slots.
    let there = local.map(&page);
    assert_eq!(there.va(), local.layout().window_va(2, 0));
}

#[test]
fn a_direct_mapped_write_back_page_takes_no_slot_and_pins_nothing() {
    let machine = machine();
    let local = machine.local_quickmap();
    let low = SimPage::new(3);
    let mapping = local.map(&low);
    assert_eq!(mapping.va(), VirtAddr(DIRECT_MAP_BASE + 3 * PAGE_SIZE));
    let thread = machine.current_thread();
    assert_eq!(machine.local_mappings(thread).held(), 0);
    assert_eq!(machine.migration_disabled(thread), 0);
    // Another attribute takes a slot even inside the direct map.
    let combining = SimPage {
        attribute: MemoryAttribute::WriteCombining,
        ..SimPage::new(4)
    };
    let slot = local.map(&combining);
    assert_eq!(slot.va(), local.layout().window_va(0, 0));
    assert_eq!(
        machine.window_pte(slot.va()),
        Some((combining.pa, MemoryAttribute::WriteCombining))
    );
}

#[test]
fn interrupt_handlers_map_pinned_windows_on_top_of_local_mappings() {
    let machine = machine();
    let local = machine.local_quickmap();
    let quickmap = machine.quickmap::<4>();
    let (page, other) = (
        SimPage::high_memory(&machine, 0),
        SimPage::high_memory(&machine, 1),
    );
    let mapping = local.map(&page);
    mapping.write_u64(0, 7);
    machine.interrupt(|| {
        let pinned = quickmap.map(&other);
        pinned.write_u64(0, 9);
        assert_eq!(mapping.read_u64(0), 7, "the thread's slot stays put");
    });
    assert_eq!(quickmap.windows_in_use(0), 0);
    // The thread may sleep with local mappings (no pinned window is held)...
    quickmap.assert_may_sleep();
    assert_eq!(mapping.read_u64(0), 7);
}

#[test]
#[should_panic(
    expected = "quickmap: sleep while mapped: the thread on CPU 0 would block while holding 1"
)]
fn a_pinned_window_on_top_of_local_mappings_still_forbids_sleep() {
    let machine = machine();
    let local = machine.local_quickmap();
    let quickmap = machine.quickmap::<4>();
    let page = SimPage::high_memory(&machine, 0);
    let _local = local.map(&page);
    let _pinned = quickmap.map(&page);
    quickmap.assert_may_sleep();
}

#[test]
fn switches_between_threads_that_hold_nothing_touch_nothing() {
    let machine = machine();
    let local = machine.local_quickmap();
    let (a, b) = two_threads(&machine);
    let before = machine.counters();
    for _ in 0..10 {
        machine.switch_to_with(a, &local).unwrap();
        machine.switch_to_with(b, &local).unwrap();
    }
    assert_eq!(
        machine.counters(),
        before,
        "no entry written, nothing invalidated"
    );
    assert_eq!(local.total_stats(), LocalStats::default());
}

#[test]
fn each_held_slot_costs_a_switch_one_save_and_one_restore() {
    let machine = machine();
    let local = machine.local_quickmap();
    let (a, b) = two_threads(&machine);
    let pages: Vec<SimPage> = (0..5).map(|i| SimPage::high_memory(&machine, i)).collect();
    machine.switch_to_with(a, &local).unwrap();
    let held_a: Vec<_> = pages[..3].iter().map(|p| local.map(p)).collect();
    machine.switch_to_with(b, &local).unwrap();
    let held_b: Vec<_> = pages[3..].iter().map(|p| local.map(p)).collect();
    let before = (machine.counters(), local.stats(0));
    machine.switch_to_with(a, &local).unwrap(); // out: 2 of b, in: 3 of a
    let (hardware, stats) = (machine.counters(), local.stats(0));
    assert_eq!(hardware.invalidations - before.0.invalidations, 2);
    assert_eq!(hardware.pte_clears - before.0.pte_clears, 2);
    assert_eq!(hardware.pte_writes - before.0.pte_writes, 3);
    assert_eq!(
        LocalStats {
            switch_outs: stats.switch_outs - before.1.switch_outs,
            switch_ins: stats.switch_ins - before.1.switch_ins,
            slots_saved: stats.slots_saved - before.1.slots_saved,
            slots_restored: stats.slots_restored - before.1.slots_restored,
            ..LocalStats::default()
        },
        LocalStats {
            switch_outs: 1,
            switch_ins: 1,
            slots_saved: 2,
            slots_restored: 3,
            ..LocalStats::default()
        }
    );
    drop(held_a);
    machine.switch_to_with(b, &local).unwrap();
    drop(held_b);
    let total = local.total_stats();
    assert_eq!(total.slot_maps, 5);
    assert_eq!(total.slot_removes, 5);
    assert_eq!(
        total.invalidations(),
        total.slot_removes + total.slots_saved
    );
    assert_eq!(total.entry_writes(), total.slot_maps + total.slots_restored);
}

#[test]
fn try_map_reports_a_thread_that_holds_all_its_slots() {
    let machine = machine();
    let local = machine.local_quickmap();
    let pages: Vec<SimPage> = (0..=LOCAL_SLOTS)
        .map(|i| SimPage::high_memory(&machine, i))
        .collect();
    let held: Vec<_> = pages[..LOCAL_SLOTS].iter().map(|p| local.map(p)).collect();
    let error = local.try_map(&pages[LOCAL_SLOTS]).unwrap_err();
    assert_eq!(
        error,
        LocalEnterError {
            cpu: 0,
            capacity: LOCAL_SLOTS
        }
    );
    assert_eq!(
        error.to_string(),
        "quickmap: no free local slot: the thread on CPU 0 already holds all 8 of its local \
         mappings; drop one and try again"
    );
    assert_eq!(local.try_enter(&pages[LOCAL_SLOTS]), Err(error));
    assert_eq!(machine.critical_depth(machine.current_thread()), 0);
    // The lowest free slot is taken next, whichever was dropped.
    let mut held = held;
    let freed = held.remove(5).va();
    assert_eq!(local.map(&pages[LOCAL_SLOTS]).va(), freed);
}

#[test]
fn the_raw_api_enters_and_removes_in_any_order() {
    let machine = machine();
    let local = machine.local_quickmap();
    let (a, b) = two_threads(&machine);
    let pages: Vec<SimPage> = (0..3).map(|i| SimPage::high_memory(&machine, i)).collect();
    machine.switch_to_with(a, &local).unwrap();
    let vas: Vec<VirtAddr> = pages.iter().map(|p| local.enter(p)).collect();
    machine.switch_to_with(b, &local).unwrap();
    machine.switch_to_with(a, &local).unwrap();
    for (va, page) in vas.iter().zip(&pages) {
        assert_eq!(
            machine.window_pte(*va),
            Some((page.pa, MemoryAttribute::WriteBack))
        );
    }
    for &va in [vas[1], vas[0], vas[2]].iter() {
        // SAFETY: entered above by this thread, removed once.
        unsafe { local.remove(va) };
    }
    assert_eq!(machine.local_mappings(a).held(), 0);
    assert_eq!(machine.migration_disabled(a), 0);
    let direct = local.enter(&SimPage::new(1));
    // SAFETY: as above; a direct-map address takes nothing back.
    unsafe { local.remove(direct) };
}

#[test]
fn a_removed_local_mapping_is_gone_from_the_entry_and_the_tlb() {
    let machine = machine();
    let local = machine.local_quickmap();
    let mapping = local.map(high(&machine, 0));
    mapping.write_u64(0, 1);
    let va = mapping.va();
    assert!(machine.tlb_holds(0, va));
    drop(mapping);
    assert_eq!(machine.window_pte(va), None);
    assert!(!machine.tlb_holds(0, va));
}

#[test]
fn exit_is_fine_with_nothing_held() {
    let machine = machine();
    let local = machine.local_quickmap();
    drop(local.map(high(&machine, 0)));
    machine
        .local_mappings(machine.current_thread())
        .check_thread_exit();
}

// The rules, each panic naming its rule.

#[test]
#[should_panic(
    expected = "quickmap: local mappings beyond capacity: the thread on CPU 0 already holds all 8 \
                of its local mappings; drop one before making another (or use `try_map`/`try_enter` \
                where running out is expected)"
)]
fn local_mappings_beyond_capacity() {
    let machine = machine();
    let local = machine.local_quickmap();
    let pages: Vec<SimPage> = (0..=LOCAL_SLOTS)
        .map(|i| SimPage::high_memory(&machine, i))
        .collect();
    let _held: Vec<_> = pages.iter().map(|p| local.map(p)).collect();
}

#[test]
#[should_panic(
    expected = "quickmap: local mapping in an interrupt handler: use map: a local mapping belongs to \
                a thread"
)]
fn local_mapping_in_an_interrupt_handler() {
    let machine = machine();
    let local = machine.local_quickmap();
    // Refused even for a page the direct map serves.
    machine.interrupt(|| drop(local.map(&SimPage::new(1))));
}

#[test]
#[cfg(feature = "contract-checks")]
#[should_panic(
    expected = "quickmap: local remove by another thread: 0xffffc80000000000 is local slot 0 of CPU \
                0, which the calling thread (on CPU 0, holding local slots 0b0) does not hold: it \
                was removed already, or another thread made it; a local mapping is removed once, \
                by the thread that made it (or use `map`, whose guard removes itself)"
)]
fn local_remove_by_another_thread() {
    let machine = machine();
    let local = machine.local_quickmap();
    let (a, b) = two_threads(&machine);
    machine.switch_to_with(a, &local).unwrap();
    let va = local.enter(&SimPage::high_memory(&machine, 0));
    machine.switch_to_with(b, &local).unwrap();
    // SAFETY: deliberately breaks the contract: `va` is thread a's.
    unsafe { local.remove(va) };
}

#[test]
#[cfg(feature = "contract-checks")]
#[should_panic(
    expected = "quickmap: local remove by another thread: 0xffffc80000000000 is local slot 0 of CPU 0, which the calling thread (on CPU 0, holding local slots 0b0)"
)]
fn local_double_remove() {
    let machine = machine();
    let local = machine.local_quickmap();
    let va = local.enter(&SimPage::high_memory(&machine, 0));
    // SAFETY: deliberately breaks the contract: the second remove.
    unsafe {
        local.remove(va);
        local.remove(va);
    }
}

#[test]
#[cfg(feature = "contract-checks")]
#[should_panic(
    expected = "quickmap: local remove by another thread: 0xffffc80000010000 is local slot 0 of CPU \
                1, which the calling thread (on CPU 0"
)]
fn local_remove_of_another_cpus_slot() {
    let machine = machine();
    let local = machine.local_quickmap();
    machine.on_cpu(1);
    let va = local.enter(&SimPage::high_memory(&machine, 0));
    machine.on_cpu(0);
    // SAFETY: deliberately breaks the contract: CPU 1's thread made it.
    unsafe { local.remove(va) };
}

#[test]
#[cfg(feature = "contract-checks")]
#[should_panic(
    expected = "quickmap: remove of a foreign address: 0xffffc80000001000 is inside the local slot \
                region but not the start of a slot"
)]
fn local_remove_of_a_guard_page() {
    let machine = machine();
    let local = machine.local_quickmap();
    let _held = local.map(high(&machine, 0));
    // SAFETY: deliberately breaks the contract: the guard page after slot 0.
    unsafe { local.remove(VirtAddr(LOCAL_BASE + PAGE_SIZE)) };
}

#[test]
#[cfg(feature = "contract-checks")]
#[should_panic(
    expected = "quickmap: remove of a foreign address: 0xffffc00000000000 is neither in the local \
                slot region nor in the direct map"
)]
fn local_remove_of_a_pinned_window() {
    let machine = machine();
    let local = machine.local_quickmap();
    let quickmap = machine.quickmap::<4>();
    let va = quickmap.enter(&SimPage::high_memory(&machine, 0));
    // SAFETY: deliberately breaks the contract: a window of the pinned instance.
    unsafe { local.remove(va) };
}

#[test]
#[should_panic(
    expected = "quickmap: thread exited holding a local mapping: it still holds 2 (local slots 0b11 \
                of CPU 0); drop every local mapping before the thread returns"
)]
fn thread_exited_holding_a_local_mapping() {
    let machine = machine();
    let local = machine.local_quickmap();
    let (a, b) = (
        SimPage::high_memory(&machine, 0),
        SimPage::high_memory(&machine, 1),
    );
    std::mem::forget(local.map(&a));
    let _ = local.enter(&b);
    machine
        .local_mappings(machine.current_thread())
        .check_thread_exit();
}

#[test]
#[cfg(feature = "contract-checks")]
#[should_panic(
    expected = "quickmap: local mappings migrated: a thread holding local slots 0b1 of CPU 0 was \
                switched in on CPU 1; while a thread holds local mappings the kernel must keep it \
                on their CPU (`LocalPlatform::migrate_disable`)"
)]
fn a_platform_that_lets_a_holder_migrate_is_caught_at_switch_in() {
    let machine = machine();
    let local = machine.local_quickmap_with(
        machine.local_config(),
        MigratesAnyway(machine.platform()),
        machine.mmu(),
    );
    let thread = machine.current_thread();
    let page = SimPage::high_memory(&machine, 0);
    let _mapping = local.map(&page);
    machine.migrate_with(thread, 1, &local).unwrap();
}

/// Thread a's local mapping after a scheduler that skips the switch-in hook has
/// switched a out (to b) and back in: its slot was taken down and not put back.
fn resumed_without_switch_in<'q, 'm>(
    machine: &'m SimMachine,
    local: &'q LocalQuickMap<SimPlatform<'m>, SimMmu<'m>, LOCAL_SLOTS>,
) -> LocalMapping<'q, 'static, SimPlatform<'m>, SimMmu<'m>, LOCAL_SLOTS> {
    let broken = SkipsSwitchIn(local);
    let (a, b) = two_threads(machine);
    machine.switch_to_with(a, &broken).unwrap();
    let mapping = local.map(high(machine, 0));
    machine.switch_to_with(b, &broken).unwrap();
    machine.switch_to_with(a, &broken).unwrap();
    mapping
}

#[test]
#[should_panic(expected = "sim: page fault: CPU 0 read 0xffffc80000000000")]
fn a_scheduler_that_skips_switch_in_leaves_the_thread_a_fault() {
    let machine = machine();
    let local = machine.local_quickmap();
    let mapping = resumed_without_switch_in(&machine, &local);
    let _ = mapping.read_u64(0);
}

#[test]
#[should_panic(
    expected = "quickmap: local slot not restored: the running thread faulted at 0xffffc80000000008, \
                local slot 0 of CPU 0, which it holds; the kernel resumed it without calling \
                `switch_in`"
)]
fn the_fault_of_a_skipped_switch_in_is_explained() {
    let machine = machine();
    let local = machine.local_quickmap();
    let mapping = resumed_without_switch_in(&machine, &local);
    // What a kernel's page-fault handler asks when the read faults.
    local.check_fault(mapping.va().add(8));
}

#[test]
#[should_panic(
    expected = "quickmap: local slot not held: the code on CPU 0 faulted at 0xffffc80000002010, local \
                slot 1 of CPU 0, which its thread does not hold (it holds local slots 0b1): an \
                address of a local mapping used after its guard dropped, or by another thread or CPU"
)]
fn a_fault_on_a_slot_not_held_is_explained() {
    let machine = machine();
    let local = machine.local_quickmap();
    let _first = local.map(high(&machine, 0));
    let second = local.map(high(&machine, 1));
    let va = second.va();
    drop(second);
    local.check_fault(va.add(0x10));
}

#[test]
fn faults_outside_the_slots_are_left_to_the_kernel() {
    let machine = machine();
    let local = machine.local_quickmap();
    let _held = local.map(high(&machine, 0));
    for va in [
        LOCAL_BASE + PAGE_SIZE,          // the guard page after slot 0
        LOCAL_BASE - PAGE_SIZE,          // below the region
        DIRECT_MAP_BASE,                 // elsewhere
        LOCAL_BASE + 16 * PAGE_SIZE * 4, // past the last CPU
    ] {
        local.check_fault(VirtAddr(va));
    }
}

#[test]
#[should_panic(expected = "sim: PTE busy")]
fn a_scheduler_that_skips_switch_out_leaves_the_slot_to_the_next_thread() {
    let machine = machine();
    let local = machine.local_quickmap();
    let broken = SkipsSwitchOut(&local);
    let (a, b) = two_threads(&machine);
    machine.switch_to_with(a, &broken).unwrap();
    let _mine = local.map(high(&machine, 0));
    machine.switch_to_with(b, &broken).unwrap();
    let _theirs = local.map(high(&machine, 1));
}

#[test]
#[should_panic(expected = "sim: a switch from thread")]
fn a_switch_without_hooks_while_local_mappings_are_held_is_refused() {
    let machine = machine();
    let local = machine.local_quickmap();
    let (a, b) = two_threads(&machine);
    machine.switch_to_with(a, &local).unwrap();
    let _mapping = local.map(high(&machine, 0));
    let _ = machine.switch_to(b);
}

#[test]
fn copies_between_local_mappings_of_this_thread() {
    let machine = machine();
    let local = machine.local_quickmap();
    let (source, target) = (high(&machine, 0), high(&machine, 1));
    machine.phys_write(source.pa, &common::pattern(1, 3));
    let (from, to) = (local.map(source), local.map(target));
    to.copy_from(&from);
    // The same direct-mapped page twice: one address, nothing to move.
    let low = SimPage::new(5);
    machine.phys_write(low.pa, &common::pattern(5, 1));
    let (once, twice) = (local.map(&low), local.map(&low));
    twice.copy_from(&once);
    drop((from, to, once, twice));
    assert_eq!(
        common::phys_page(&machine, target.pa),
        common::pattern(1, 3)
    );
    assert_eq!(common::phys_page(&machine, low.pa), common::pattern(5, 1));
}
